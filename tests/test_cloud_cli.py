"""``hoymiles-bridge cloud ...`` as a process, against the stand-in cloud on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from hoymiles_bridge.cloud import facts
from tests.cloud_standin import PASSWORD, USERNAME, Running, start


@pytest.fixture
async def cloud() -> AsyncIterator[Running]:
    running = await start()
    yield running
    await running.close()


async def cli(
    cloud: Running, tmp_path: Path, *args: str, password: str | None = PASSWORD
) -> tuple[int, str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOYMILES_CLOUD_")}
    env |= {"HOYMILES_CLOUD_BASE_URL": cloud.url, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    if password is not None:
        env |= {"HOYMILES_CLOUD_USERNAME": USERNAME, "HOYMILES_CLOUD_PASSWORD": password}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hoymiles_bridge.cli.main",
        "cloud",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def logins(cloud: Running) -> int:
    return sum(1 for r in cloud.state.requests if r.path == facts.LOGIN)


async def test_login_keeps_the_token_for_the_next_command(cloud: Running, tmp_path: Path) -> None:
    code, out, _ = await cli(cloud, tmp_path, "login")
    assert (code, out.strip()) == (0, "logged in (argon2id)")
    token_file = tmp_path / "cache" / "hoymiles-bridge" / "cloud-token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert USERNAME not in token_file.read_text()
    code, out, _ = await cli(cloud, tmp_path, "stations")
    assert code == 0
    assert out.splitlines()[:4] == [
        "101  Balcony",
        "    DTU DTU001 (id 75460)",
        "    battery inverter 280024370560 (id 3423)",
        "    meter MTR001 (id 9001)",
    ]
    assert logins(cloud) == 1  # the kept token served the second command


async def test_flow_and_station(cloud: Running, tmp_path: Path) -> None:
    code, out, _ = await cli(cloud, tmp_path, "--json", "flow", "101")
    assert code == 0
    flow = json.loads(out)
    assert (flow["soc"], flow["battery"], flow["delay_ms"]) == (53.0, 245.8, 3000)
    code, out, _ = await cli(cloud, tmp_path, "station", "101")
    assert code == 0
    assert "total 125 Wh" in out and "battery 280024370560: SOC 53 %, 22 °C" in out
    code, out, _ = await cli(cloud, tmp_path, "settings", "101")
    assert (code, out.strip()) == (0, "on-grid input power: 800 W")
    code, _, err = await cli(cloud, tmp_path, "station", "999")
    assert code == 2 and "no station 999 in the account (it has 101, 202)" in err


async def test_a_wrong_password_is_one_line(cloud: Running, tmp_path: Path) -> None:
    code, out, err = await cli(cloud, tmp_path, "--no-token-file", "login", password="nope!")
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and "check cloud.username and cloud.password" in err
    assert "nope!" not in err


async def test_the_account_comes_from_the_options_file(cloud: Running, tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    document = {"dtus": [], "cloud": {"username": USERNAME, "password": PASSWORD}}
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    code, out, _ = await cli(
        cloud, tmp_path, "--config", str(config), "--no-token-file", "login", password=None
    )
    assert (code, out.strip()) == (0, "logged in (argon2id)")


async def test_no_account_and_no_password_argument(cloud: Running, tmp_path: Path) -> None:
    code, _, err = await cli(cloud, tmp_path, "login", password=None)
    assert code == 2 and "HOYMILES_CLOUD_PASSWORD" in err
    # There is no option for a password on the command line.
    code, _, err = await cli(cloud, tmp_path, "login", "--password", "x")
    assert code == 2 and "unrecognized arguments: --password x" in err


async def test_writes_need_consent_then_reach_the_station(cloud: Running, tmp_path: Path) -> None:
    code, _, err = await cli(cloud, tmp_path, "grid-charge", "101", "on")
    assert code == 2 and "allow_writes" in err
    assert not any(r.path == facts.SETTING_WRITE for r in cloud.state.requests)
    code, out, _ = await cli(cloud, tmp_path, "grid-charge", "101", "on", "--allow-writes")
    assert code == 0 and "grid charge: on" in out
    assert cloud.state.settings[facts.ACTION_GRID_CHARGE]["enable"] == 1
    config = tmp_path / "bridge.yaml"
    config.write_text(yaml.safe_dump({"dtus": [], "cloud": {"allow_writes": True}}))
    code, out, _ = await cli(
        cloud, tmp_path, "--config", str(config), "on-grid-power", "101", "600"
    )
    assert code == 0 and "on grid power: 600" in out
    assert cloud.state.settings[facts.ACTION_ON_GRID_POWER]["power"] == 600
    code, _, err = await cli(
        cloud, tmp_path, "--config", str(config), "on-grid-power", "101", "99999"
    )
    assert code == 2 and "on-grid input power must be" in err
