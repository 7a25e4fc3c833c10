"""Where the options are saved: the options file (atomic, with a backup) and the Supervisor."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hoymiles_bridge.addon.config_store import SupervisorConfigStore
from hoymiles_bridge.addon.supervisor import SupervisorClient
from hoymiles_bridge.config import store as config_store
from hoymiles_bridge.config.options import OptionsError, validate
from hoymiles_bridge.config.store import (
    ConfigStoreError,
    FileConfigStore,
    ReadOnlyConfigStore,
    masked_values,
    merge_secrets,
    prepare,
)
from hoymiles_bridge.protocol.secrets import MASK

ADDON_DIR = Path(__file__).resolve().parents[1] / "addon"
if str(ADDON_DIR) not in sys.path:
    sys.path.insert(0, str(ADDON_DIR))

from supervisor_standin import MqttService, SupervisorStandin  # noqa: E402

TOKEN = "ef01" * 28
MQTT_SECRET = "mqtt-secret-42"
WEB_SECRET = "web-secret-43"
ORIGINAL_YAML = f"""# my bridge
dtus:
  - host: 192.0.2.10
    name: Roof
poll_interval: 35
mqtt:
  host: broker.lan
  username: solar
  password: {MQTT_SECRET}
web:
  username: admin
  password: {WEB_SECRET}
"""


def _form(path: Path) -> dict[str, Any]:
    """What the page would send back unchanged: the masked form values."""
    return masked_values(yaml.safe_load(path.read_text()), addon=False)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


async def test_yaml_file_saved_atomically_with_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(ORIGINAL_YAML)
    path.chmod(0o640)
    store = FileConfigStore(path)
    form = _form(path)
    assert form["mqtt"]["password"] == MASK and form["web"]["password"] == MASK
    assert MQTT_SECRET not in json.dumps(form) and WEB_SECRET not in json.dumps(form)
    form["poll_interval"] = 60
    options = await store.save(form)
    assert options.poll_interval == 60
    saved = yaml.safe_load(path.read_text())
    assert saved["poll_interval"] == 60
    # masked secrets keep the stored values
    assert saved["mqtt"]["password"] == MQTT_SECRET and saved["web"]["password"] == WEB_SECRET
    assert saved["dtus"] == [{"host": "192.0.2.10", "port": 10081, "name": "Roof"}]
    assert "min_poll_interval" not in saved  # empty options are left out
    assert (tmp_path / "bridge.yaml.bak").read_text() == ORIGINAL_YAML
    assert _mode(path) == 0o600  # it holds passwords: no longer group-readable
    assert _leftovers(tmp_path) == []
    # a second save backs up the first one
    first = path.read_text()
    form = _form(path)
    form["mqtt"]["password"] = ""  # an empty secret removes it
    form["web"]["password"] = "new-web-pw"
    await store.save(form)
    saved = yaml.safe_load(path.read_text())
    assert "password" not in saved["mqtt"] and saved["web"]["password"] == "new-web-pw"
    assert (tmp_path / "bridge.yaml.bak").read_text() == first


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
async def test_the_file_and_its_backup_are_readable_by_their_owner_only(
    tmp_path: Path, suffix: str
) -> None:
    """A saved options file and its backup may hold passwords: both end up 0600."""
    path = tmp_path / f"bridge{suffix}"
    original = {"dtus": [{"host": "192.0.2.10"}], "mqtt": {"password": MQTT_SECRET}}
    path.write_text(json.dumps(original) if suffix == ".json" else yaml.safe_dump(original))
    path.chmod(0o644)
    bak = tmp_path / f"bridge{suffix}.bak"
    bak.write_text("old: secrets\n")
    bak.chmod(0o666)
    store = FileConfigStore(path)
    form = _form(path)
    form["poll_interval"] = 60
    await store.save(form)
    assert _mode(path) == 0o600 and _mode(bak) == 0o600
    assert MQTT_SECRET in path.read_text() and MQTT_SECRET in bak.read_text()
    # a save that removes the secret still keeps the backup (the old secret) private
    form = _form(path)
    form["mqtt"]["password"] = ""
    await store.save(form)
    assert MQTT_SECRET not in path.read_text() and MQTT_SECRET in bak.read_text()
    assert _mode(path) == 0o600 and _mode(bak) == 0o600
    assert _leftovers(tmp_path) == []


async def test_the_backup_is_never_readable_by_others_while_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backup's temporary copy is 0600 from its first byte, not only once it is done."""
    path = tmp_path / "bridge.yaml"
    path.write_text(ORIGINAL_YAML)
    path.chmod(0o644)
    modes: list[int] = []
    real_replace = os.replace

    def watching_replace(src: Any, dst: Any) -> None:
        modes.append(_mode(Path(src)))
        real_replace(src, dst)

    monkeypatch.setattr(config_store.os, "replace", watching_replace)
    form = _form(path)
    form["poll_interval"] = 60
    await FileConfigStore(path).save(form)
    assert modes == [0o600, 0o600]  # the backup, then the file


async def test_bad_values_are_refused_and_nothing_is_touched(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(ORIGINAL_YAML)
    store = FileConfigStore(path)
    form = _form(path)
    form["poll_interval"] = 0
    form["mqtt"]["port"] = 70000
    form["dtus"].append({"host": "", "port": 10081, "name": None})
    with pytest.raises(OptionsError) as caught:
        await store.save(form)
    assert caught.value.fields == {
        "dtus[1].host": "expected a host name or IP address",
        "mqtt.port": "expected a port number from 1 to 65535",
        "poll_interval": "value must be at least 1",
    }
    assert MQTT_SECRET not in str(caught.value)
    assert path.read_text() == ORIGINAL_YAML
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bridge.yaml"]
    with pytest.raises(OptionsError):
        await store.save({"dtus": [{"port": 1}]})
    assert path.read_text() == ORIGINAL_YAML


async def test_a_failed_write_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(ORIGINAL_YAML)
    store = FileConfigStore(path)
    form = _form(path)
    form["poll_interval"] = 90
    real_replace = os.replace

    def failing_replace(src: Any, dst: Any) -> None:
        if Path(dst) == path:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(config_store.os, "replace", failing_replace)
    with pytest.raises(ConfigStoreError) as caught:
        await store.save(form)
    assert caught.value.status == 500
    assert str(path) in caught.value.message and "No space left" in caught.value.message
    assert path.read_text() == ORIGINAL_YAML
    assert _leftovers(tmp_path) == []


async def test_json_files_and_new_files(tmp_path: Path) -> None:
    path = tmp_path / "bridge.json"
    path.write_text(json.dumps({"dtus": [{"host": "192.0.2.10"}], "log_level": "info"}))
    store = FileConfigStore(path)
    form = _form(path)
    form["log_level"] = "DEBUG"
    await store.save(form)
    saved = json.loads(path.read_text())
    assert saved["log_level"] == "debug" and saved["dtus"][0]["host"] == "192.0.2.10"
    assert (tmp_path / "bridge.json.bak").exists()
    # a file that does not exist yet is created, readable by its owner only (passwords)
    fresh = FileConfigStore(tmp_path / "new.yaml")
    assert await fresh.load() == {}
    await fresh.save({"dtus": [{"host": "192.0.2.20"}], "mqtt": {"password": "pw"}})
    assert (tmp_path / "new.yaml").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "new.yaml.bak").exists()
    assert validate(yaml.safe_load((tmp_path / "new.yaml").read_text())).mqtt.password == "pw"


async def test_an_unreadable_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("dtus: [\n")
    store = FileConfigStore(path)
    with pytest.raises(ConfigStoreError, match="not valid YAML") as caught:
        await store.save({"dtus": [{"host": "192.0.2.1"}]})
    assert caught.value.status == 409
    assert path.read_text() == "dtus: [\n"
    with pytest.raises(ConfigStoreError, match="cannot restart"):
        await store.restart()
    assert not store.can_restart


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("huge.yaml", "dtus:\n  - host: 192.0.2.1\npoll_interval: " + "9" * 5000 + "\n"),
        ("huge.json", '{"dtus": [{"host": "192.0.2.1"}], "poll_interval": ' + "9" * 5000 + "}"),
        ("deep.yaml", "[" * 100_000),
        ("deep.json", "[" * 100_000),
    ],
)
async def test_a_file_with_unreadable_values_is_not_overwritten(
    tmp_path: Path, name: str, text: str
) -> None:
    """A number with thousands of digits or nesting too deep: a 409, not a traceback."""
    path = tmp_path / name
    path.write_text(text)
    store = FileConfigStore(path)
    kind = "JSON" if name.endswith(".json") else "YAML"
    with pytest.raises(ConfigStoreError, match=f"not valid {kind}") as caught:
        await store.load()
    assert caught.value.status == 409
    with pytest.raises(ConfigStoreError, match="nothing was changed"):
        await store.save({"dtus": [{"host": "192.0.2.1"}]})
    assert path.read_text() == text


async def test_symlinked_file_keeps_its_link(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text(ORIGINAL_YAML)
    link = tmp_path / "bridge.yaml"
    link.symlink_to(real)
    store = FileConfigStore(link)
    form = _form(link)
    form["poll_interval"] = 45
    await store.save(form)
    assert link.is_symlink()
    assert yaml.safe_load(real.read_text())["poll_interval"] == 45


def test_merge_secrets() -> None:
    stored = {"mqtt": {"password": "old"}, "web": {"password": "w"}}
    merged = merge_secrets(
        {"mqtt": {"password": MASK}, "web": {"password": ""}, "dtus": []}, stored
    )
    assert merged["mqtt"]["password"] == "old" and merged["web"]["password"] is None
    assert merge_secrets({"mqtt": {"password": MASK}}, {})["mqtt"]["password"] is None
    values = masked_values({"mqtt": {"password": ""}}, addon=True)
    assert values["mqtt"]["password"] == ""


# --- a new broker needs the MQTT password again --------------------------------------

PASSWORD_AGAIN = {"mqtt.password": "enter the password again to change the broker"}
STORED_BROKER: dict[str, Any] = {
    "dtus": [{"host": "192.0.2.10"}],
    "mqtt": {"host": "broker.lan", "port": 1883, "username": "solar", "password": MQTT_SECRET},
    "web": {"username": "admin", "password": WEB_SECRET},
}


def _masked(stored: dict[str, Any], **mqtt: Any) -> dict[str, Any]:
    """The form the page sends for ``stored``, with the ``mqtt`` fields changed."""
    form = masked_values(stored, addon=False)
    form["mqtt"].update(mqtt)
    return form


@pytest.mark.parametrize(
    "change",
    [
        {"host": "evil.example"},
        {"host": "192.0.2.66"},
        {"host": None},  # the Supervisor's broker (add-on) or localhost (standalone)
        {"port": 8883},
        {"port": "1884"},
        {"tls": True},
        {"host": "evil.example", "port": 1884, "tls": True},
    ],
    ids=lambda change: ",".join(f"{k}={v}" for k, v in change.items()),
)
def test_a_kept_password_does_not_go_to_another_broker(change: dict[str, Any]) -> None:
    """Host, port or TLS changed with the password left masked: refused on the password."""
    with pytest.raises(OptionsError) as caught:
        prepare(_masked(STORED_BROKER, **change), STORED_BROKER)
    assert caught.value.fields == PASSWORD_AGAIN
    assert caught.value.sentence() == (
        "The option mqtt.password is invalid: enter the password again to change the broker."
    )
    assert MQTT_SECRET not in str(caught.value)
    # typed again (or a new one), or emptied: saved as given
    clean, options = prepare(_masked(STORED_BROKER, **change, password="typed"), STORED_BROKER)
    assert options.mqtt.password == "typed" and clean["mqtt"]["password"] == "typed"
    _, options = prepare(_masked(STORED_BROKER, **change, password=""), STORED_BROKER)
    assert options.mqtt.password is None


def test_the_same_broker_keeps_the_password() -> None:
    # the same broker written otherwise, and changes of anything but the broker
    for form in (
        _masked(STORED_BROKER),
        _masked(STORED_BROKER, host=" broker.lan ", port="1883", tls=False),
        _masked(STORED_BROKER, username="someone-else"),
        {**_masked(STORED_BROKER), "poll_interval": 60},
    ):
        _, options = prepare(form, STORED_BROKER)
        assert options.mqtt.password == MQTT_SECRET
    # defaults stored implicitly are the same broker as written out
    stored = {"dtus": [{"host": "192.0.2.10"}], "mqtt": {"password": MQTT_SECRET}}
    _, options = prepare(_masked(stored, host=None, port=1883, tls=False), stored)
    assert options.mqtt.password == MQTT_SECRET
    # without a stored password there is nothing to keep: a new broker is fine
    stored = {"dtus": [{"host": "192.0.2.10"}], "mqtt": {"host": "broker.lan"}}
    _, options = prepare(_masked(stored, host="other.lan", password=MASK), stored)
    assert options.mqtt.host == "other.lan" and options.mqtt.password is None


def test_the_web_server_moves_with_its_password() -> None:
    """The web password is only checked, never sent: web.host and web.port may change."""
    form = masked_values(STORED_BROKER, addon=False)
    form["web"].update(host="0.0.0.0", port=18099)
    _, options = prepare(form, STORED_BROKER)
    assert options.web.password == WEB_SECRET and options.mqtt.password == MQTT_SECRET


def test_a_new_broker_and_other_problems_are_reported_together() -> None:
    form = _masked(STORED_BROKER, host="evil.example")
    form["poll_interval"] = 0
    with pytest.raises(OptionsError) as caught:
        prepare(form, STORED_BROKER)
    assert caught.value.fields == {**PASSWORD_AGAIN, "poll_interval": "value must be at least 1"}
    assert caught.value.problems == sorted(caught.value.problems)
    # an invalid broker field says so itself; it does not count as a new broker
    with pytest.raises(OptionsError) as caught:
        prepare(_masked(STORED_BROKER, port="x"), STORED_BROKER)
    assert caught.value.fields == {"mqtt.port": "expected a whole number"}
    # a stored broker that is invalid: any valid one is a new one
    broken = {**STORED_BROKER, "mqtt": {**STORED_BROKER["mqtt"], "port": "x"}}
    with pytest.raises(OptionsError) as caught:
        prepare(_masked(broken, port=1883), broken)
    assert caught.value.fields == PASSWORD_AGAIN


async def test_the_file_store_refuses_a_new_broker_with_the_old_password(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(ORIGINAL_YAML)
    store = FileConfigStore(path)
    form = _form(path)
    form["mqtt"]["host"] = "evil.example"
    with pytest.raises(OptionsError) as caught:
        await store.save(form)
    assert caught.value.fields == PASSWORD_AGAIN
    assert path.read_text() == ORIGINAL_YAML and not path.with_name("bridge.yaml.bak").exists()
    form["mqtt"]["password"] = "for-the-new-broker"
    await store.save(form)
    saved = yaml.safe_load(path.read_text())
    assert saved["mqtt"]["host"] == "evil.example"
    assert saved["mqtt"]["password"] == "for-the-new-broker"


async def test_read_only_store() -> None:
    options = validate({"dtus": [{"host": "192.0.2.1"}], "mqtt": {"password": "pw"}})
    store = ReadOnlyConfigStore(lambda: options)
    loaded = await store.load()
    assert loaded["dtus"] == [{"host": "192.0.2.1", "port": 10081, "name": None}]
    with pytest.raises(ConfigStoreError, match="--config") as caught:
        await store.save({"dtus": [{"host": "192.0.2.2"}]})
    assert caught.value.status == 409
    with pytest.raises(OptionsError):
        await store.save({"dtus": [{"port": 1}]})
    assert not store.can_save and not store.can_restart


async def test_supervisor_store_saves_and_restarts() -> None:
    stored = {
        "dtus": [{"host": "192.0.2.10", "port": 10081}],
        "poll_interval": 35,
        "mqtt": {"host": "broker.lan", "password": MQTT_SECRET},
    }
    async with SupervisorStandin(TOKEN, MqttService("127.0.0.1", 1883), options=stored) as standin:
        store = SupervisorConfigStore(SupervisorClient(standin.url, TOKEN))
        try:
            form = masked_values(await store.load(), addon=True)
            assert "web" not in form and form["mqtt"]["password"] == MASK
            form["poll_interval"] = 60
            await store.save(form)
            assert standin.options["poll_interval"] == 60
            assert standin.options["mqtt"] == {
                "host": "broker.lan",
                "port": 1883,
                "password": MQTT_SECRET,
                "tls": False,
                "qos": 0,
            }
            assert "web" not in standin.options and "min_poll_interval" not in standin.options
            # a new broker with the stored password never reaches the Supervisor
            moved = {**form, "mqtt": {**form["mqtt"], "host": "evil.example"}}
            with pytest.raises(OptionsError) as moved_caught:
                await store.save(moved)
            assert set(moved_caught.value.fields) == {"mqtt.password"}
            assert len(standin.saved) == 1
            # invalid options never reach the Supervisor
            form["poll_interval"] = 0
            with pytest.raises(OptionsError):
                await store.save(form)
            assert len(standin.saved) == 1
            # the Supervisor's refusal, with any secret it echoes masked
            form["poll_interval"] = 61
            standin.refuse_options = f"Invalid value {MQTT_SECRET} for option 'password'"
            with pytest.raises(ConfigStoreError) as caught:
                await store.save(form)
            assert caught.value.status == 502
            assert caught.value.message.startswith("The Supervisor refused the options:")
            assert MQTT_SECRET not in caught.value.message and MASK in caught.value.message
            assert standin.options["poll_interval"] == 60
            await store.restart()
            assert standin.restarts == 1
            assert standin.requests["/addons/self/restart"] == 1
        finally:
            await store.close()
    # the Supervisor is gone
    store = SupervisorConfigStore(SupervisorClient(standin.url, TOKEN, request_timeout=2))
    try:
        with pytest.raises(ConfigStoreError, match="did not answer") as gone:
            await store.restart()
    finally:
        await store.close()
    assert gone.value.status == 502
