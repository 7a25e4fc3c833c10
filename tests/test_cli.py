"""The hoymiles-bridge command line: decode contract, dtu commands, plain errors."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hoymiles_bridge.cli.main import main
from hoymiles_bridge.simulator import DtuSimulator, default_fleet

from .conftest import load_vectors

DECODE_KEYS = {"tag", "sequence", "length", "crc_ok", "message", "direction", "payload", "data"}


def _decode(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["decode", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_decode_every_vector(capsys: pytest.CaptureFixture[str]) -> None:
    for vector in load_vectors():
        extra = (
            ["--enc-rand", vector["expect"]["enc_rand"]] if "encrypted" in vector["name"] else []
        )
        code, records, err = _decode(capsys, vector["hex"], *extra)
        assert code == 0, err
        (record,) = records
        assert set(record) == DECODE_KEYS
        assert record["crc_ok"] is True
        assert len(record["tag"]) == 4 and record["tag"] == record["tag"].upper()
        assert record["direction"] in {"to_dtu", "from_dtu"}
        if "tag" in vector.get("expect", {}):
            assert record["tag"] == vector["expect"]["tag"]


def test_decode_app_info_data(capsys: pytest.CaptureFixture[str]) -> None:
    vector = next(v for v in load_vectors() if v["name"].startswith("app_info_reply"))
    _, (record,), _ = _decode(capsys, vector["hex"])
    assert record["message"] == "AppInfoFromDtu" and record["sequence"] == 903
    assert record["data"]["dtu_serial"] == "10F872226797"
    assert record["data"]["dtu_firmware"] == "V00.02.08"
    assert [i["serial"] for i in record["data"]["inverters"]] == vector["expect"]["inverters"]


def test_decode_stdin_lines_and_bad_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    good = load_vectors()[0]["hex"]
    lines = f"{good}\nnot hex at all\n484d\n\n" + json.dumps({"hex": good}) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code = main(["decode"])
    out, err = capsys.readouterr()
    assert code == 1
    assert len(out.splitlines()) == 2
    assert "input 2: the input is not hexadecimal" in err
    assert "input 3:" in err
    assert "Traceback" not in err


def test_decode_bad_crc_reports_crc_ok_false(capsys: pytest.CaptureFixture[str]) -> None:
    code, (record,), _ = _decode(capsys, "484da3030001fffe000a")
    assert code == 0 and record["crc_ok"] is False


@pytest.fixture
async def sim() -> AsyncIterator[DtuSimulator]:
    async with DtuSimulator(default_fleet().dtus[0], port=0) as simulator:
        yield simulator


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hoymiles_bridge.cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_dtu_real_data_json_shape(sim: DtuSimulator) -> None:
    code, out, err = await _cli("dtu", f"127.0.0.1:{sim.port}", "real-data", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {
        "dtu_serial",
        "timestamp",
        "inverters",
        "meters",
        "dtu_power",
        "dtu_energy_daily",
    }
    assert data["dtu_serial"] == "414393320732"
    assert data["inverters"][0]["serial"] == "141293320732"
    assert data["inverters"][0]["model"] == "HMS-800W-2T"


async def test_dtu_commands_readable_and_json(sim: DtuSimulator) -> None:
    address = f"127.0.0.1:{sim.port}"
    for command in ("app-info", "heartbeat", "config", "network-info", "alarms", "is-encrypted"):
        code, out, err = await _cli("dtu", address, command, "--min-spacing", "0")
        assert code == 0, (command, err)
        assert "414393320732" in out or "encrypted" in out
        assert "sim-secret-password" not in out
    code, out, err = await _cli("dtu", address, "limit", "50", "--json", "--min-spacing", "0")
    assert code == 0, err
    assert json.loads(out)["action"] == 8
    assert sim.dtu.inverters[0].limit_permille == 500


async def test_a_limit_under_the_floor_is_clamped_and_said(sim: DtuSimulator) -> None:
    code, _, err = await _cli("dtu", f"127.0.0.1:{sim.port}", "limit", "0", "--min-spacing", "0")
    assert code == 0, err
    assert err.strip() == "note: clamped to 2 %"
    assert sim.dtu.inverters[0].limit_permille == 20


async def test_plain_errors_without_traceback(sim: DtuSimulator) -> None:
    code, _, err = await _cli("dtu", f"127.0.0.1:{sim.port}", "limit", "140")
    assert code == 2 and err.strip() == "error: limit 140 % is outside 0..100 %"
    code, _, err = await _cli("dtu", "127.0.0.1:1", "heartbeat")
    assert code == 1 and "refused the connection" in err and "Traceback" not in err
    code, _, err = await _cli("dtu", "127.0.0.1:99999", "heartbeat")
    assert code == 2 and "port '99999'" in err
    code, _, err = await _cli("dtu", "127.0.0.1", "heartbeat", "--enc-rand", "xyz")
    assert code == 2 and "--enc-rand must be hexadecimal" in err


async def test_demo_runs_the_main_job() -> None:
    """The README's first command: simulator, private Mosquitto, bridge and web server."""
    import re

    import aiohttp

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hoymiles_bridge.cli.main",
        "demo",
        "--web-port",
        "0",
        "--interval",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(40):
            url = None
            while url is None or not any(
                line.startswith("[") and "141293320732" in line for line in seen
            ):
                line = (await proc.stdout.readline()).decode()
                assert line, "\n".join(seen)
                seen.append(line)
                found = re.search(r"Web UI:\s+(http://\S+/)", line)
                if found:
                    url = found.group(1)
            async with aiohttp.ClientSession() as http, http.get(url + "health") as response:
                health = await response.json()
        assert health["mqtt"] is True
        assert health["dtus"][0]["serial"] == "414393320732"
        text = "".join(seen)
        assert "Watch the topics:   mosquitto_sub" in text
        assert "simulated MS-A2 MSA-280024370560 on the broker" in text
        assert " W (today " in seen[-1]
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
