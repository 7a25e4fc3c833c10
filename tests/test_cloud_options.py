"""The cloud options in the configuration store: the password stays with its account and URL."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hoymiles_bridge.config.options import OptionsError
from hoymiles_bridge.config.store import masked_values, prepare
from hoymiles_bridge.protocol.secrets import MASK

SECRET = "cloud-secret-0815"
STORED: dict[str, Any] = {
    "dtus": [],
    "cloud": {"username": "me@example.com", "password": SECRET, "poll_interval": 10},
}


def _form(**cloud: Any) -> dict[str, Any]:
    form = copy.deepcopy(masked_values(STORED, addon=True))
    form["cloud"].update(cloud)
    return form


def test_the_cloud_password_is_masked_on_the_form() -> None:
    assert masked_values(STORED, addon=True)["cloud"]["password"] == MASK


@pytest.mark.parametrize(
    "change", [{"username": "other@example.com"}, {"base_url": "http://192.0.2.66:8080"}]
)
def test_a_kept_cloud_password_does_not_go_elsewhere(change: dict[str, Any]) -> None:
    with pytest.raises(OptionsError) as caught:
        prepare(_form(**change), STORED)
    assert "cloud.password" in caught.value.fields
    assert "enter the password again" in caught.value.fields["cloud.password"]
    assert SECRET not in str(caught.value)
    _, options = prepare(_form(**change, password="typed again"), STORED)
    assert options.cloud.password == "typed again"


def test_other_cloud_changes_keep_the_password() -> None:
    _, options = prepare(_form(poll_interval=30, stations="101", allow_writes=True), STORED)
    assert options.cloud.password == SECRET and options.cloud.stations == "101"
