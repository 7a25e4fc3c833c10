"""DtuClient against the simulator over real loopback TCP: every command, encryption, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hoymiles_bridge.dtu.client import DtuClient
from hoymiles_bridge.dtu.connection import FrameEvent
from hoymiles_bridge.errors import (
    DtuConnectionError,
    DtuDisplacedError,
    DtuRejectedError,
    DtuTimeoutError,
    InvalidArgumentError,
)
from hoymiles_bridge.protocol.models import AppInfo, RealData
from hoymiles_bridge.protocol.registry import Direction
from hoymiles_bridge.simulator import (
    DtuSimulator,
    SimClock,
    default_fleet,
    load_fleet,
    resolve_fleet,
)
from hoymiles_bridge.simulator.fleet import parse_fleet

from .interop_helpers import noon_today

INVERTER = "141293320732"


def _client(sim: DtuSimulator, **kwargs: object) -> DtuClient:
    options: dict[str, object] = {"min_spacing": 0.0, "request_timeout": 1.0}
    options.update(kwargs)
    return DtuClient(sim.host, sim.port, **options)  # type: ignore[arg-type]


@pytest.fixture
async def sim() -> AsyncIterator[DtuSimulator]:
    async with DtuSimulator(default_fleet().dtus[0], port=0) as simulator:
        yield simulator


@pytest.fixture
async def dtu(sim: DtuSimulator) -> AsyncIterator[DtuClient]:
    async with _client(sim) as client:
        yield client


async def _fresh(dtu: DtuClient, sim: DtuSimulator) -> RealData:
    """Real data after the simulator refreshed its snapshot."""
    sim.clock.advance(31)
    return await dtu.real_data()


async def test_app_info_and_plaintext_detection(dtu: DtuClient, sim: DtuSimulator) -> None:
    info = await dtu.app_info()
    assert isinstance(info, AppInfo)
    assert info.dtu_serial == sim.dtu.serial == "414393320732"
    assert info.dtu_model == "DTUBI"
    assert [i.serial for i in info.inverters] == [INVERTER]
    assert info.inverters[0].model == "HMS-800W-2T"
    assert info.encrypted is False and dtu.encrypted is False


async def test_real_data_model(dtu: DtuClient) -> None:
    data = await dtu.real_data()
    assert data.dtu_serial == "414393320732"
    (inv,) = data.inverters
    assert inv.serial == INVERTER and inv.model == "HMS-800W-2T"
    assert len(inv.ports) == 2 and [p.port for p in inv.ports] == [1, 2]
    assert 200 < inv.voltage < 260 and 49 < inv.frequency < 51
    assert 0 <= inv.power <= 800 and 0 <= inv.power_factor <= 1
    assert data.dtu_power == pytest.approx(inv.power, abs=0.2)
    assert set(data.to_dict()) == {
        "dtu_serial",
        "timestamp",
        "inverters",
        "meters",
        "dtu_power",
        "dtu_energy_daily",
    }
    assert set(inv.to_dict()) == {
        "serial",
        "model",
        "voltage",
        "current",
        "power",
        "reactive_power",
        "frequency",
        "power_factor",
        "temperature",
        "warning_count",
        "link_status",
        "ports",
    }
    assert set(inv.ports[0].to_dict()) == {
        "port",
        "voltage",
        "current",
        "power",
        "energy_total",
        "energy_daily",
        "error_code",
    }


async def test_one_session_for_many_requests(dtu: DtuClient, sim: DtuSimulator) -> None:
    for _ in range(5):
        await dtu.heartbeat()
        await dtu.real_data()
    assert sim.connections_total == 1
    assert dtu.reconnects == 0


async def test_pagination_merges_all_inverters() -> None:
    fleet = load_fleet(resolve_fleet("dtu-pro"))
    async with DtuSimulator(fleet.dtus[0], port=0) as sim, _client(sim) as dtu:
        data = await dtu.real_data()
        legacy = await dtu.real_data_legacy()
    expected = {inv.serial for inv in fleet.dtus[0].inverters}
    assert {i.serial for i in data.inverters} == expected
    assert {i.serial for i in legacy.inverters} == expected
    assert len(expected) >= 5
    hmt = next(i for i in data.inverters if i.phases)
    assert len(hmt.phases) == 3 and hmt.model.startswith("HMT")


async def test_reads(dtu: DtuClient) -> None:
    hb = await dtu.heartbeat()
    assert hb.dtu_serial == "414393320732"
    config = await dtu.get_config()
    assert config.power_limit == 100.0 and config.server_port == 10081
    assert "sim-secret-password" not in str(config.to_dict())
    assert "sim-secret-password" not in repr(config)
    net = await dtu.network_info()
    assert net.dtu_serial == "414393320732"
    hist = await dtu.history_power()
    assert hist.step_seconds > 0 and hist.samples
    energy = await dtu.history_energy()
    assert energy is not None
    found = await dtu.auto_search()
    assert [f"{sn:012X}" for sn in found.mi_sn] == [INVERTER]
    gpst = await dtu.grid_self_test()
    assert gpst.dtu_sn == "414393320732"
    profile = await dtu.grid_profile(INVERTER)
    assert profile.data and profile.rule_type == 1
    put = await dtu.dev_config_put(INVERTER, profile.data)
    assert list(put.mi_to_sn) == [int(INVERTER, 16)]
    gw = await dtu.gateway_info()
    assert gw is not None
    es = await dtu.es_registry("414393320732")
    assert es is not None


async def test_set_config(dtu: DtuClient, sim: DtuSimulator) -> None:
    await dtu.set_config(server_send_time=5)
    assert (await dtu.get_config()).cloud_upload_minutes == 5
    with pytest.raises(InvalidArgumentError):
        await dtu.set_config(no_such_field=1)


async def test_power_limit_caps_power(dtu: DtuClient, sim: DtuSimulator) -> None:
    ack = await dtu.set_power_limit(10)
    assert ack.err_code == 0 and ack.action == 8
    status = await dtu.wait_command(ack, interval=0.05, timeout=5)
    assert status.done
    assert sim.dtu.inverters[0].limit_permille == 100
    data = await _fresh(dtu, sim)
    assert data.inverters[0].power <= 80.5
    assert (await dtu.get_config()).power_limit == 10.0
    with pytest.raises(InvalidArgumentError):
        await dtu.set_power_limit(140)
    with pytest.raises(InvalidArgumentError):
        await dtu.set_power_limit(1)


async def test_power_limit_watts_converts_to_percent(dtu: DtuClient, sim: DtuSimulator) -> None:
    await dtu.set_power_limit_watts(400, INVERTER)
    assert sim.dtu.inverters[0].limit_permille == 500
    with pytest.raises(InvalidArgumentError):
        await dtu.set_power_limit_watts(5000, INVERTER)


async def test_off_on_restart(dtu: DtuClient, sim: DtuSimulator) -> None:
    await dtu.inverter_off(INVERTER)
    data = await _fresh(dtu, sim)
    assert data.inverters[0].power == 0
    assert sim.dtu.inverters[0].on is False
    await dtu.inverter_on()
    assert sim.dtu.inverters[0].on is True
    await dtu.inverter_restart(INVERTER)
    data = await _fresh(dtu, sim)
    assert data.inverters[0].link_status == 0
    sim.clock.advance(120)
    assert (await dtu.real_data()).inverters[0].link_status == 1


async def test_alarms_after_remote_shutdown(dtu: DtuClient, sim: DtuSimulator) -> None:
    before = (await dtu.real_data()).inverters[0].warning_count
    await dtu.inverter_off()
    alarms = await dtu.alarms()
    assert alarms.dtu_serial == "414393320732"
    assert any(w.inverter_serial == INVERTER and w.end is None for w in alarms.warnings)
    assert (await _fresh(dtu, sim)).inverters[0].warning_count > before
    assert set(alarms.to_dict()["warnings"][0]) == {"inverter_serial", "code", "start", "end"}


async def test_performance_mode_and_unknown_action(dtu: DtuClient, sim: DtuSimulator) -> None:
    await dtu.performance_mode()
    assert sim.dtu.performance_mode is True
    with pytest.raises(DtuRejectedError):
        await dtu._command(9999)


async def test_dtu_reboot_drops_session_and_client_recovers(
    dtu: DtuClient, sim: DtuSimulator
) -> None:
    await dtu.performance_mode()
    await dtu.reboot_dtu()
    assert not dtu.connected
    for _ in range(100):
        if sim.dtu.boot_count:
            break
        await asyncio.sleep(0.05)
    assert sim.dtu.boot_count == 1 and sim.dtu.performance_mode is False
    dtu.retries = 5
    dtu.connect_timeout = 1.0
    for _ in range(100):  # the DTU refuses connections while it boots
        try:
            data = await dtu.real_data()
            break
        except DtuConnectionError:
            await asyncio.sleep(0.1)
    assert data.inverters[0].serial == INVERTER


async def test_encrypted_dtu_is_detected_and_survives_reboot() -> None:
    async with DtuSimulator(default_fleet().dtus[0], port=0, encrypt=True) as sim:
        events: list[FrameEvent] = []
        async with _client(sim, on_frame=events.append) as dtu:
            data = await dtu.real_data()  # detects encryption on its own
            assert dtu.encrypted is True and data.inverters[0].serial == INVERTER
            assert any(e.frame is not None and e.frame.encrypted for e in events)
            old = sim.dtu.enc_rand
            await dtu.reboot_dtu()
            for _ in range(100):
                if sim.dtu.enc_rand != old:
                    break
                await asyncio.sleep(0.05)
            assert sim.dtu.enc_rand != old
            dtu.retries = 5
            for _ in range(100):
                try:
                    data = await dtu.real_data()
                    break
                except DtuConnectionError:
                    await asyncio.sleep(0.1)
            assert data.inverters[0].serial == INVERTER
            config = await dtu.get_config()
            assert config.server_port == 10081


async def test_encrypted_dtu_with_given_enc_rand() -> None:
    async with DtuSimulator(default_fleet().dtus[0], port=0, encrypt=True) as sim:
        async with _client(sim, enc_rand=sim.dtu.enc_rand) as dtu:
            assert (await dtu.heartbeat()).dtu_serial == "414393320732"
        async with _client(sim, detect_encryption=False, retries=0, request_timeout=0.5) as dtu:
            with pytest.raises(DtuTimeoutError):  # plaintext requests get no answer
                await dtu.real_data()


async def test_displaced_by_second_client(sim: DtuSimulator) -> None:
    async with _client(sim) as first, _client(sim) as second:
        await first.heartbeat()
        conn = first.connection
        assert conn is not None
        await second.heartbeat()  # the DTU closes the first session
        await asyncio.wait_for(conn.wait_closed(), 5)
        assert isinstance(conn.close_error, DtuDisplacedError)
        assert sim.displaced_total >= 1
        # the first client reconnects on its next request
        assert (await first.heartbeat()).dtu_serial == "414393320732"
        assert first.reconnects == 1


async def test_frame_observer_sees_both_directions(sim: DtuSimulator) -> None:
    events: list[FrameEvent] = []
    async with _client(sim, on_frame=events.append) as dtu:
        await dtu.heartbeat()
    directions = [e.direction for e in events]
    assert directions == [Direction.TO_DTU, Direction.FROM_DTU]
    assert events[1].decoded is not None and events[1].decoded.name == "HeartbeatFromDtu"


# --- faults -------------------------------------------------------------------


async def test_fault_delay_gives_timeout_not_hang(sim: DtuSimulator) -> None:
    sim.faults.delay = 2.0
    async with _client(sim, request_timeout=0.3, retries=1) as dtu:
        with pytest.raises(DtuTimeoutError):
            await dtu.heartbeat()
        sim.faults.clear()
        # the late replies of the timed-out requests are discarded as stale
        await asyncio.sleep(2.2)
        hb = await dtu.heartbeat()
        assert hb.dtu_serial == "414393320732"


@pytest.mark.parametrize(
    "fault",
    [
        "drop_replies",
        "truncate_replies",
        "corrupt_crc",
        "garbage_before",
        "wrong_sequence",
        "close_mid_frame",
        "stale_reply",
    ],
)
async def test_fault_recovers_transparently(sim: DtuSimulator, fault: str) -> None:
    async with _client(sim, request_timeout=0.5, retries=2) as dtu:
        reference = await dtu.real_data()
        setattr(sim.faults, fault, 1)
        data = await dtu.real_data()
        assert data.inverters[0].serial == INVERTER
        assert data.dtu_serial == reference.dtu_serial
        hb = await dtu.heartbeat()
        assert hb.dtu_serial == "414393320732"


async def test_stale_reply_is_never_delivered(sim: DtuSimulator) -> None:
    async with _client(sim) as dtu:
        first = await dtu.real_data()
        sim.clock.advance(31)
        sim.faults.stale_reply = 1
        second = await dtu.real_data()
        assert second.timestamp > first.timestamp  # the fresh reply, not the stale copy
        assert dtu.connection is not None and dtu.connection.stale_replies == 1


async def test_refused_connections_are_typed(sim: DtuSimulator) -> None:
    sim.faults.refuse_connections = True
    async with _client(sim, retries=0) as dtu:
        with pytest.raises(DtuConnectionError):
            await dtu.heartbeat()
        sim.faults.refuse_connections = False
        assert (await dtu.heartbeat()).dtu_serial == "414393320732"


async def test_nothing_listening_is_typed() -> None:
    async with DtuClient("127.0.0.1", 1, connect_timeout=1.0, retries=0) as dtu:
        with pytest.raises(DtuConnectionError):
            await dtu.heartbeat()


async def test_temporary_limit_needs_new_firmware(dtu: DtuClient, sim: DtuSimulator) -> None:
    # the default fleet runs DTU firmware V01.00.01, which refuses action 211
    with pytest.raises(DtuRejectedError):
        await dtu.set_power_limit_temporary(300)
    with pytest.raises(InvalidArgumentError):
        await dtu.set_power_limit_temporary(0)


async def test_temporary_limit_caps_power_until_restart() -> None:
    fleet = parse_fleet(
        {
            "dtus": [
                {
                    "serial": "414393320732",
                    "firmware": "V01.01.01",
                    "inverters": [{"serial": INVERTER}],
                }
            ]
        }
    )
    clock = SimClock(start=noon_today())
    async with DtuSimulator(fleet.dtus[0], port=0, clock=clock) as sim, _client(sim) as dtu:
        await dtu.set_power_limit_temporary(50.5)
        inverter = sim.dtu.inverters[0]
        assert inverter.temporary_limit_w == 50.5 and inverter.limit_permille == 1000
        assert (await _fresh(dtu, sim)).inverters[0].power <= 50.6
        await dtu.inverter_restart(INVERTER)
        assert inverter.temporary_limit_w is None
