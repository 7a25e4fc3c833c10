"""Interoperability: the PyPI client hoymiles-wifi (its own CLI) against our simulator.

hoymiles-wifi opens one connection per request to port 10081, reads the reply
with a single read and parses it with its own protobuf classes, so these tests
check that our simulator speaks the protocol the way real DTUs do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hoymiles_bridge.simulator import DtuSimulator, SimClock, default_fleet

from .interop_helpers import HOST, PORT, hoymiles_wifi, json_tail, noon_today

pytestmark = pytest.mark.interop

DTU_SERIAL = "414393320732"
INVERTER = "141293320732"
INVERTER_INT = str(int(INVERTER, 16))


async def _sim(encrypt: bool) -> DtuSimulator:
    return DtuSimulator(
        default_fleet().dtus[0],
        host=HOST,
        port=PORT,
        encrypt=encrypt,
        clock=SimClock(start=noon_today()),
    )


@pytest.fixture
async def plain() -> AsyncIterator[DtuSimulator]:
    async with await _sim(False) as sim:
        yield sim


@pytest.fixture
async def encrypted() -> AsyncIterator[DtuSimulator]:
    async with await _sim(True) as sim:
        yield sim


def _sgs_power(data: dict[str, object]) -> float:
    sgs = data["sgsData"]
    assert isinstance(sgs, list)
    return float(sgs[0].get("activePower", 0)) / 10


async def _reads(extra: tuple[str, ...], sim: DtuSimulator) -> None:
    code, out, err = await hoymiles_wifi(*extra, "--as-json", "get-real-data-new")
    assert code == 0, err
    data = json_tail(out)
    assert data["deviceSerialNumber"] == DTU_SERIAL
    sgs = data["sgsData"][0]
    assert int(sgs["serialNumber"]) == int(INVERTER, 16)
    assert 2000 < sgs["voltage"] < 2600
    assert len(data["pvData"]) == 2
    expected = sim.dtu.snapshot().inverters[0]
    assert _sgs_power(data) == pytest.approx(expected.power, abs=0.11)

    code, out, err = await hoymiles_wifi(*extra, "--as-json", "get-config")
    assert code == 0, err
    config = json_tail(out)
    assert config.get("serverport", config.get("serverPort")) == 10081

    code, out, err = await hoymiles_wifi(*extra, "--as-json", "network-info")
    assert code == 0, err
    assert DTU_SERIAL in out

    code, out, err = await hoymiles_wifi(*extra, "--as-json", "app-information-data")
    assert code == 0, err
    info = json_tail(out)
    assert info["dtuSerialNumber"] == DTU_SERIAL
    assert INVERTER_INT in out

    code, out, err = await hoymiles_wifi(*extra, "--as-json", "heartbeat")
    assert code == 0, err
    assert DTU_SERIAL in out


async def test_reads_plaintext(plain: DtuSimulator) -> None:
    await _reads((), plain)


async def test_reads_encrypted_with_enc_rand(encrypted: DtuSimulator) -> None:
    code, out, err = await hoymiles_wifi("--as-json", "is-encrypted")
    assert code == 0, err
    found = json_tail(out)
    assert found["is_encrypted"] is True
    assert found["enc_rand"] == encrypted.dtu.enc_rand.hex()
    await _reads(("--enc-rand", found["enc_rand"]), encrypted)


async def test_is_encrypted_plaintext(plain: DtuSimulator) -> None:
    code, out, err = await hoymiles_wifi("--as-json", "is-encrypted")
    assert code == 0, err
    assert json_tail(out)["is_encrypted"] is False


async def test_power_limit_then_real_data_shows_cap(plain: DtuSimulator) -> None:
    code, out, err = await hoymiles_wifi(
        "--as-json", "--power-limit", "50", "--disable-interactive", "set-power-limit"
    )
    assert code == 0, err
    assert plain.dtu.inverters[0].limit_permille == 500
    plain.clock.advance(31)  # the DTU refreshes its data every 30 s
    code, out, err = await hoymiles_wifi("--as-json", "get-real-data-new")
    assert code == 0, err
    assert _sgs_power(json_tail(out)) <= 400.0


async def test_turn_off_and_on(plain: DtuSimulator) -> None:
    code, out, err = await hoymiles_wifi("--as-json", "turn-off-inverter", stdin=f"{INVERTER}\ny\n")
    assert code == 0, err
    assert plain.dtu.inverters[0].on is False
    plain.clock.advance(31)
    code, out, err = await hoymiles_wifi("--as-json", "get-real-data-new")
    assert code == 0, err
    assert _sgs_power(json_tail(out)) == 0
    code, out, err = await hoymiles_wifi("--as-json", "turn-on-inverter", stdin=f"{INVERTER}\ny\n")
    assert code == 0, err
    assert plain.dtu.inverters[0].on is True


async def test_alarm_list(plain: DtuSimulator) -> None:
    code, out, err = await hoymiles_wifi("--as-json", "get-alarm-list")
    assert code == 0, err
    assert DTU_SERIAL in out


async def test_restart_dtu(plain: DtuSimulator) -> None:
    code, out, err = await hoymiles_wifi("--as-json", "restart-dtu", stdin="y\n")
    assert code == 0, err
    assert DTU_SERIAL in out
