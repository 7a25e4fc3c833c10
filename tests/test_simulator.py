"""The DTU simulator over real loopback TCP, driven by a tiny raw client.

These tests do not use hoymiles_bridge.dtu: they speak frames directly with
the protocol codec, so they check the simulator against the protocol itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf.message import Message

from hoymiles_bridge.errors import FrameError
from hoymiles_bridge.protocol.codec import DecodedFrame, decode_frame, encode_message
from hoymiles_bridge.protocol.crypto import PayloadCipher, is_encrypted_tag
from hoymiles_bridge.protocol.frame import ExtendedHeader, Frame, FrameSplitter
from hoymiles_bridge.protocol.pb import (
    appinfo_pb2,
    autosearch_pb2,
    command_pb2,
    config_pb2,
    devconfig_pb2,
    energy_storage_pb2,
    gateway_pb2,
    gridselftest_pb2,
    heartbeat_pb2,
    history_pb2,
    network_pb2,
    realdata_pb2,
    warn_pb2,
)
from hoymiles_bridge.simulator import (
    DtuSimulator,
    FleetError,
    SimClock,
    SimulatorGroup,
    bundled_fleets,
    default_fleet,
    load_fleet,
)
from hoymiles_bridge.simulator.fleet import parse_fleet
from hoymiles_bridge.simulator.physics import next_local_midnight

ROOT = Path(__file__).resolve().parents[1]
NOON = time.mktime((2024, 6, 21, 12, 0, 0, 0, 0, -1))
LATE_EVENING = time.mktime((2024, 6, 21, 23, 0, 0, 0, 0, -1))
INVERTER = 0x141293320732


class RawClient:
    """Just enough of a client: send one frame, read frames back."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, encrypted: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.cipher: PayloadCipher | None = None
        self.splitter = FrameSplitter(encrypted=is_encrypted_tag if encrypted else None)
        self.pending: list[Frame | FrameError] = []

    @classmethod
    async def connect(cls, sim: DtuSimulator) -> RawClient:
        reader, writer = await asyncio.open_connection(sim.host, sim.port)
        return cls(reader, writer, sim.dtu.encrypt)

    async def send(
        self,
        message: Message,
        seq: int = 1,
        *,
        tag: int | None = None,
        plaintext: bool = False,
        extended: ExtendedHeader | None = None,
    ) -> None:
        cipher = None if plaintext else self.cipher
        frame = encode_message(message, seq, tag=tag, cipher=cipher, extended=extended)
        self.writer.write(frame)
        await self.writer.drain()

    async def item(self, timeout: float = 2.0) -> Frame | FrameError:
        async with asyncio.timeout(timeout):
            while not self.pending:
                data = await self.reader.read(4096)
                if not data:
                    raise EOFError
                self.pending.extend(self.splitter.feed(data))
        return self.pending.pop(0)

    async def frame(self, timeout: float = 2.0) -> Frame:
        while True:
            item = await self.item(timeout)
            if isinstance(item, Frame):
                return item

    async def reply(self, timeout: float = 2.0) -> DecodedFrame:
        return decode_frame(await self.frame(timeout), self.cipher)

    async def request(self, message: Message, seq: int = 1, **kwargs: object) -> DecodedFrame:
        await self.send(message, seq, **kwargs)  # type: ignore[arg-type]
        return await self.reply()

    async def silent(self, seconds: float = 0.3) -> bool:
        try:
            await self.item(seconds)
        except TimeoutError:
            return True
        return False

    async def eof(self, timeout: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while data := await self.reader.read(4096):
                    self.pending.extend(self.splitter.feed(data))
        except ConnectionResetError:
            return True
        return True

    async def app_info(self) -> appinfo_pb2.AppInfoFromDtu:
        reply = await self.request(appinfo_pb2.AppInfoToDtu(time=int(time.time())), plaintext=True)
        assert isinstance(reply.message, appinfo_pb2.AppInfoFromDtu)
        if reply.message.dtu_info.enc_rand:
            self.cipher = PayloadCipher(reply.message.dtu_info.enc_rand)
        return reply.message

    async def real_data(self, cp: int = 0) -> realdata_pb2.RealDataNewFromDtu:
        reply = await self.request(realdata_pb2.RealDataNewToDtu(cp=cp, oft=28800))
        assert reply.tag == 0xA211
        assert isinstance(reply.message, realdata_pb2.RealDataNewFromDtu)
        return reply.message

    async def command(
        self, action: int, data: str = "", targets: tuple[int, ...] = (), tag: int = 0xA305
    ) -> command_pb2.CommandFromDtu:
        message = command_pb2.CommandToDtu(
            action=action, package_nub=1, tid=4242 + action, data=data, mi_to_sn=targets
        )
        reply = await self.request(message, tag=tag)
        assert isinstance(reply.message, command_pb2.CommandFromDtu)
        return reply.message

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@pytest.fixture
def clock() -> SimClock:
    return SimClock(start=NOON)


@pytest.fixture
async def sim(clock: SimClock) -> AsyncIterator[DtuSimulator]:
    async with DtuSimulator(clock=clock) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: DtuSimulator) -> AsyncIterator[RawClient]:
    raw = await RawClient.connect(sim)
    yield raw
    await raw.close()


def _pv_power(data: realdata_pb2.RealDataNewFromDtu) -> int:
    return sum(pv.p for pv in data.pv_datas)


# --- basics ----------------------------------------------------------------------


async def test_app_info(client: RawClient) -> None:
    await client.send(appinfo_pb2.AppInfoToDtu(time=1), seq=7)
    reply = await client.reply()
    assert reply.tag == 0xA201
    assert reply.sequence == 903  # the DTU's own counter, not the request's 7
    info = reply.message
    assert isinstance(info, appinfo_pb2.AppInfoFromDtu)
    assert info.dtu_sn == "414393320732"
    assert info.device_nub == 1
    assert info.pv_nub == 2
    assert info.dtu_info.dtu_sw == 4097
    assert info.dtu_info.access_model == 1
    assert not info.dtu_info.dfs & (1 << 25)
    assert info.dtu_info.enc_rand == b""
    assert [pv.pv_sn for pv in info.pv_info] == [INVERTER]
    assert (await client.app_info()).dtu_sn == "414393320732"


async def test_real_data_default_fleet(client: RawClient, sim: DtuSimulator) -> None:
    await client.send(realdata_pb2.RealDataNewToDtu(cp=0), seq=12)
    reply = await client.reply()
    assert reply.sequence == 12
    data = reply.message
    assert isinstance(data, realdata_pb2.RealDataNewFromDtu)
    assert data.sn == "414393320732"
    assert (data.ap, data.cp) == (1, 0)
    assert [s.sn for s in data.sgs_datas] == [INVERTER]
    sgs = data.sgs_datas[0]
    assert sgs.link == 1
    assert 0 < sgs.p <= 8000
    assert 2250 <= sgs.v <= 2350
    assert 4998 <= sgs.freq <= 5002
    assert 950 <= sgs.pf <= 1000
    assert [(pv.sn, pv.pi) for pv in data.pv_datas] == [(INVERTER, 1), (INVERTER, 2)]
    for pv in data.pv_datas:
        assert 280 <= pv.v <= 400
        assert pv.et > pv.ed > 0
    assert data.dtu_p == sgs.p
    assert data.dtu_ed == sum(pv.ed for pv in data.pv_datas)
    # Within the 30 s window the same snapshot comes back; afterwards a new one.
    again = await client.real_data()
    assert again.time == data.time
    sim.clock.advance(31)
    fresh = await client.real_data()
    assert fresh.time >= data.time + 31
    legacy = await client.request(realdata_pb2.RealDataToDtu())
    assert legacy.tag == 0xA203
    assert isinstance(legacy.message, realdata_pb2.RealDataNewFromDtu)
    assert legacy.message.sgs_datas[0].sn == INVERTER


async def test_real_data_pages_dtu_pro(clock: SimClock) -> None:
    fleet = load_fleet(bundled_fleets()["dtu-pro"])
    spec = fleet.dtus[0]
    assert len(spec.inverters) == 5
    async with DtuSimulator(spec, clock=clock) as sim:
        client = await RawClient.connect(sim)
        info = await client.app_info()
        assert info.dtu_sn == "10F872226797"
        assert info.dtu_info.dtu_sw == 520
        first = await client.real_data(cp=0)
        second = await client.real_data(cp=1)
        await client.close()
    assert (first.ap, first.cp, second.ap, second.cp) == (2, 0, 2, 1)
    assert len(first.sgs_datas) == 3
    assert [t.sn for t in first.tgs_datas] == [0x138212345678]
    assert 3900 <= first.tgs_datas[0].v_ab <= 4060
    assert len(first.pv_datas) == 4 + 2 + 4 + 6
    assert [s.sn for s in second.sgs_datas] == [0x114172607690]
    assert len(second.pv_datas) == 2
    assert first.dtu_p == second.dtu_p > 0
    seen = {s.sn for s in first.sgs_datas} | {s.sn for s in second.sgs_datas}
    assert len(seen | {t.sn for t in first.tgs_datas}) == 5


async def test_performance_mode_and_countdown(clock: SimClock) -> None:
    async with DtuSimulator(clock=clock, countdown_reset=True) as sim:
        client = await RawClient.connect(sim)
        first = await client.real_data()
        clock.advance(20)
        assert (await client.real_data()).time == first.time
        clock.advance(20)  # 40 s after the first, but only 20 s after the last request
        assert (await client.real_data()).time == first.time
        clock.advance(31)
        later = await client.real_data()
        assert later.time > first.time
        assert (await client.command(33)).err_code == 0
        clock.advance(1.5)
        fast = await client.real_data()
        assert fast.time > later.time
        clock.advance(1.5)
        assert (await client.real_data()).time > fast.time
        await client.close()


async def test_energy_counters_grow_and_reset_at_midnight(
    client: RawClient, sim: DtuSimulator
) -> None:
    before = await client.real_data()
    sim.clock.advance(3600)
    after = await client.real_data()
    for old, new in zip(before.pv_datas, after.pv_datas, strict=True):
        assert new.et > old.et
        assert new.ed > old.ed
        assert new.ed - old.ed == pytest.approx(new.et - old.et, abs=2)
    now = sim.clock.now()
    sim.clock.advance(next_local_midnight(now) - now + 1800)  # 00:30 next day
    night = await client.real_data()
    assert night.dtu_p == 0
    assert night.dtu_ed == 0
    for old, new in zip(after.pv_datas, night.pv_datas, strict=True):
        assert new.ed == 0
        assert new.et >= old.et
        assert new.v == 0


# --- commands --------------------------------------------------------------------------


async def test_limit_caps_power(client: RawClient, sim: DtuSimulator) -> None:
    assert (await client.real_data()).sgs_datas[0].p > 800  # more than 80 W at noon
    ack = await client.command(8, "A:100,B:0,C:0\r", targets=(INVERTER,))
    assert (ack.err_code, ack.action, ack.tid) == (0, 8, 4250)
    status = await client.request(command_pb2.CommandStatusToDtu(action=8, tid=4250))
    assert isinstance(status.message, command_pb2.CommandStatusFromDtu)
    assert [s.mi_sn for s in status.message.mi_m_operating_status] == [INVERTER]
    sim.clock.advance(31)
    status = await client.request(command_pb2.CommandStatusToDtu(action=8, tid=4250))
    assert isinstance(status.message, command_pb2.CommandStatusFromDtu)
    assert list(status.message.mi_sns_sucs) == [INVERTER]
    assert not status.message.mi_m_operating_status
    data = await client.real_data()
    assert 0 < data.sgs_datas[0].p <= 800
    assert data.sgs_datas[0].p_lim == 100
    config = await client.request(config_pb2.GetConfigToDtu())
    assert isinstance(config.message, config_pb2.GetConfigFromDtu)
    assert config.message.limit_power_mypower == 100
    assert (await client.command(8, "A:1500,B:0,C:0\r")).err_code == 1
    assert (await client.command(999)).err_code == 1


async def test_off_on_and_warnings(client: RawClient, sim: DtuSimulator) -> None:
    assert (await client.command(7, tag=0x2305)).err_code == 0
    sim.clock.advance(31)
    data = await client.real_data()
    assert data.sgs_datas[0].p == 0
    assert data.dtu_p == 0
    assert data.sgs_datas[0].wnum == 1
    warns = await client.request(warn_pb2.WarnToDtu())
    assert isinstance(warns.message, warn_pb2.WarnFromDtu)
    [warning] = warns.message.warns
    assert (warning.pv_sn, warning.code, warning.e_time) == (INVERTER, 124, 0)
    assert (await client.command(6)).err_code == 0
    sim.clock.advance(31)
    assert (await client.real_data()).sgs_datas[0].p > 0
    warns = await client.request(warn_pb2.WarnToDtu())
    assert isinstance(warns.message, warn_pb2.WarnFromDtu)
    assert warns.message.warns[0].e_time >= warns.message.warns[0].s_time > 0


async def test_inverter_restart(client: RawClient, sim: DtuSimulator) -> None:
    assert (await client.command(8195, targets=(INVERTER,), tag=0x2305)).err_code == 0
    sim.clock.advance(31)
    data = await client.real_data()
    assert data.sgs_datas[0].link == 0
    assert data.sgs_datas[0].p == 0
    assert all(pv.et > 0 and pv.p == 0 for pv in data.pv_datas)
    sim.clock.advance(61)
    data = await client.real_data()
    assert data.sgs_datas[0].link == 1
    assert data.sgs_datas[0].p > 0


async def test_dtu_reboot_aborts_and_rotates_enc_rand() -> None:
    clock = SimClock(speed=100, start=NOON)  # the 10 sim-second refusal is 0.1 s
    async with DtuSimulator(clock=clock, encrypt=True) as sim:
        client = await RawClient.connect(sim)
        old_key = (await client.app_info()).dtu_info.enc_rand
        assert (await client.command(33)).err_code == 0
        assert (await client.command(8, "A:500,B:0,C:0\r")).err_code == 0
        ack = await client.command(1, tag=0x2305)
        assert ack.err_code == 0
        assert await client.eof(2.0)
        await client.close()
        for _ in range(50):
            try:
                client = await RawClient.connect(sim)
                break
            except OSError:
                await asyncio.sleep(0.05)
        info = await client.app_info()
        assert info.dtu_info.enc_rand != old_key
        assert len(info.dtu_info.enc_rand) == 16
        config = await client.request(config_pb2.GetConfigToDtu())
        assert isinstance(config.message, config_pb2.GetConfigFromDtu)
        assert config.message.limit_power_mypower == 0  # the real quirk
        assert sim.dtu.inverters[0].limit_permille == 500  # the inverter keeps it
        assert not sim.dtu.performance_mode
        assert sim.reboots_total == 1
        await client.close()


# --- encryption ------------------------------------------------------------------------


async def test_encryption_round_trip_and_plaintext_ignored(clock: SimClock) -> None:
    async with DtuSimulator(clock=clock, encrypt=True) as sim:
        client = await RawClient.connect(sim)
        info = await client.app_info()
        assert info.dtu_info.dfs & (1 << 25)
        assert info.dtu_info.enc_rand == sim.dtu.enc_rand
        # A plaintext real-data request gets no answer at all.
        await client.send(realdata_pb2.RealDataNewToDtu(), plaintext=True)
        assert await client.silent(0.3)
        await client.close()

        client = await RawClient.connect(sim)
        await client.app_info()
        await client.send(realdata_pb2.RealDataNewToDtu(), seq=5)
        frame = await client.frame()
        assert frame.encrypted
        assert frame.tag == 0xA211
        assert frame.sequence == 5
        data = decode_frame(frame, client.cipher).message
        assert isinstance(data, realdata_pb2.RealDataNewFromDtu)
        assert data.sn == sim.dtu.serial
        # The heartbeat request stays plaintext; its reply is encrypted.
        await client.send(heartbeat_pb2.HeartbeatToDtu(), plaintext=True)
        reply_frame = await client.frame()
        assert reply_frame.tag == 0xA202
        assert reply_frame.encrypted
        decode_frame(reply_frame, client.cipher)
        # A wrongly keyed request gets no answer either.
        client.cipher = PayloadCipher(bytes(16))
        await client.send(realdata_pb2.RealDataNewToDtu())
        assert await client.silent(0.3)
        await client.close()


# --- connections and faults ---------------------------------------------------------------


async def test_one_client_at_a_time(sim: DtuSimulator) -> None:
    first = await RawClient.connect(sim)
    await first.app_info()
    second = await RawClient.connect(sim)
    assert await first.eof(2.0)
    assert (await second.app_info()).dtu_sn == sim.dtu.serial
    assert sim.displaced_total == 1
    assert sim.connections_total == 2
    await first.close()
    await second.close()


async def test_malformed_input_is_ignored(client: RawClient) -> None:
    client.writer.write(b"\x00garbage HM\xff\xff\x00\x01\x00\x00\x00\x03 more junk")
    client.writer.write(encode_message(realdata_pb2.RealDataNewToDtu(), 1, tag=0xA399))
    await client.send(heartbeat_pb2.HeartbeatToDtu(), seq=3)
    reply = await client.reply()
    assert (reply.tag, reply.sequence) == (0xA202, 3)


async def test_fault_drop_and_delay(client: RawClient, sim: DtuSimulator) -> None:
    sim.faults.drop_replies = 1
    await client.send(heartbeat_pb2.HeartbeatToDtu())
    assert await client.silent(0.3)
    sim.faults.delay = 0.3
    started = time.monotonic()
    await client.request(heartbeat_pb2.HeartbeatToDtu())
    assert time.monotonic() - started >= 0.25
    sim.faults.clear()
    assert not sim.faults.armed


async def test_fault_truncate(client: RawClient, sim: DtuSimulator) -> None:
    sim.faults.truncate_replies = 1
    await client.send(realdata_pb2.RealDataNewToDtu())
    assert await client.silent(0.3)
    assert client.splitter.pending > 0
    assert sim.faults.truncate_replies == 0


async def test_fault_corrupt_crc_and_garbage(client: RawClient, sim: DtuSimulator) -> None:
    sim.faults.corrupt_crc = 1
    await client.send(heartbeat_pb2.HeartbeatToDtu())
    item = await client.item()
    assert isinstance(item, FrameError)
    sim.faults.garbage_before = 1
    await client.send(heartbeat_pb2.HeartbeatToDtu(), seq=9)
    first = await client.item()
    assert isinstance(first, FrameError)  # the skipped garbage
    reply = await client.reply()
    assert (reply.tag, reply.sequence) == (0xA202, 9)


async def test_fault_wrong_sequence(client: RawClient, sim: DtuSimulator) -> None:
    sim.faults.wrong_sequence = 1
    reply = await client.request(heartbeat_pb2.HeartbeatToDtu(), seq=65000)
    assert reply.sequence == (65000 + 1000) % 65536
    reply = await client.request(heartbeat_pb2.HeartbeatToDtu(), seq=10)
    assert reply.sequence == 10


async def test_fault_close_mid_frame(client: RawClient, sim: DtuSimulator) -> None:
    sim.faults.close_mid_frame = 1
    await client.send(realdata_pb2.RealDataNewToDtu())
    assert await client.eof(2.0)
    assert client.splitter.pending > 0


async def test_fault_stale_reply(client: RawClient, sim: DtuSimulator) -> None:
    await client.request(heartbeat_pb2.HeartbeatToDtu(), seq=1)
    sim.faults.stale_reply = 1
    await client.send(heartbeat_pb2.HeartbeatToDtu(), seq=2)
    stale = await client.reply()
    fresh = await client.reply()
    assert (stale.tag, stale.sequence) == (0xA202, 1)
    assert (fresh.tag, fresh.sequence) == (0xA202, 2)


async def test_fault_refuse_connections(client: RawClient, sim: DtuSimulator) -> None:
    await client.app_info()
    sim.faults.refuse_connections = True
    other = await RawClient.connect(sim)
    assert await other.eof(2.0)
    await other.close()
    # The existing connection is unaffected.
    assert (await client.app_info()).dtu_sn == sim.dtu.serial
    assert sim.displaced_total == 0


async def test_night_off_refuses_connections() -> None:
    clock = SimClock(start=LATE_EVENING)
    async with DtuSimulator(clock=clock, night_off=True) as sim:
        assert not sim.listening
        with pytest.raises(ConnectionRefusedError):
            await RawClient.connect(sim)
    async with DtuSimulator(clock=SimClock(start=LATE_EVENING)) as sim:
        client = await RawClient.connect(sim)
        assert (await client.real_data()).dtu_p == 0  # reachable at night, 0 W
        await client.close()


async def test_pushes_heartbeat() -> None:
    spec = default_fleet().dtus[0]
    pushing = type(spec)(**{**{f: getattr(spec, f) for f in spec.__slots__}, "pushes": True})
    async with DtuSimulator(pushing, clock=SimClock(speed=600, start=NOON)) as sim:
        client = await RawClient.connect(sim)
        frame = await client.frame(timeout=2.0)
        assert frame.tag == 0x2202
        message = decode_frame(frame).message
        assert isinstance(message, heartbeat_pb2.HeartbeatFromDtu)
        assert message.dtu_sn == sim.dtu.serial
        await client.close()


# --- other messages ------------------------------------------------------------------------


async def test_gateway_info_extended_header(client: RawClient, sim: DtuSimulator) -> None:
    await client.send(
        gateway_pb2.GatewayInfoToDtu(time=1), seq=4, extended=ExtendedHeader(serial=0)
    )
    frame = await client.frame()
    assert frame.tag == 0xDA01
    assert frame.extended is not None
    assert frame.extended.serial_hex == sim.dtu.serial
    message = decode_frame(frame).message
    assert isinstance(message, gateway_pb2.GatewayInfoFromDtu)
    assert message.serial_number == sim.dtu.spec.serial_int


@pytest.mark.parametrize(
    ("request_message", "reply_tag"),
    [
        (autosearch_pb2.AutoSearchToDtu(), 0xA213),
        (gridselftest_pb2.GridSelfTestToDtu(), 0xA212),
        (devconfig_pb2.DevConfigFetchToDtu(tid=5, rule_type=1), 0xA207),
        (devconfig_pb2.DevConfigPutToDtu(tid=5), 0xA208),
        (network_pb2.NetworkInfoToDtu(), 0xA214),
        (history_pb2.HistEnergyToDtu(), 0xA216),
        (gateway_pb2.GatewayNetInfoToDtu(), 0xDA06),
        (energy_storage_pb2.EsRegistryToDtu(), 0xC202),
        (energy_storage_pb2.EsDataToDtu(), 0xC203),
    ],
)
async def test_every_request_is_answered(
    client: RawClient, request_message: Message, reply_tag: int
) -> None:
    reply = await client.request(request_message, seq=77)
    assert (reply.tag, reply.sequence) == (reply_tag, 77)
    assert reply.message is not None
    if isinstance(reply.message, autosearch_pb2.AutoSearchFromDtu):
        assert list(reply.message.mi_sn) == [INVERTER]
    if isinstance(reply.message, devconfig_pb2.DevConfigFetchFromDtu):
        assert reply.message.data
        assert reply.message.tid == 5


async def test_history_power_pages(client: RawClient) -> None:
    first = await client.request(history_pb2.HistPowerToDtu(cp=0))
    assert isinstance(first.message, history_pb2.HistPowerFromDtu)
    page0 = first.message
    assert page0.step_time == 300
    assert page0.ap == 4  # 12:00 -> 145 samples, 40 per page
    assert len(page0.p) == 40
    assert page0.abs_time_start == int(NOON - 12 * 3600)
    last = await client.request(history_pb2.HistPowerToDtu(cp=3))
    assert isinstance(last.message, history_pb2.HistPowerFromDtu)
    assert len(last.message.p) == 145 - 120
    assert max(last.message.p) > 0
    assert page0.ed > 0


async def test_set_config_applies(client: RawClient) -> None:
    reply = await client.request(
        config_pb2.SetConfigToDtu(wifi_ssid="Other", wifi_passward="pw", serverport=10082)
    )
    assert isinstance(reply.message, config_pb2.SetConfigFromDtu)
    assert reply.message.err_code == 0
    config = await client.request(config_pb2.GetConfigToDtu())
    assert isinstance(config.message, config_pb2.GetConfigFromDtu)
    assert (config.message.wifi_ssid, config.message.wifi_passward) == ("Other", "pw")
    assert config.message.serverport == 10082
    assert config.message.server_domain_name == "dataeu.hoymiles.com"


async def test_group_serves_consecutive_ports(clock: SimClock) -> None:
    doc = json.loads(bundled_fleets()["dtu-pro"].read_text())
    doc["dtus"].append({"serial": "414393320733", "inverters": [{"serial": "141293320733"}]})
    async with SimulatorGroup(parse_fleet(doc), clock=clock) as group:
        ports = [sim.port for sim in group.simulators]
        assert len(set(ports)) == 2
        for sim in group.simulators:
            client = await RawClient.connect(sim)
            assert (await client.app_info()).dtu_sn == sim.dtu.serial
            await client.close()


# --- fleets and CLI --------------------------------------------------------------------------


def test_default_fleet_matches_bundled_file() -> None:
    assert load_fleet(bundled_fleets()["hms-800w-2t"]) == default_fleet()
    spec = default_fleet().dtus[0]
    assert (spec.serial, spec.model, spec.firmware_version) == (
        "414393320732",
        "DTUBI",
        "V01.00.01",
    )
    assert spec.inverters[0].rated_power == 800


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"dtus": []}, "dtus:"),
        ({"dtus": [{"inverters": [{"serial": "141293320732"}]}]}, "dtus[0].serial:"),
        (
            {"dtus": [{"serial": "414393320732", "inverters": [{"serial": "XYZ"}]}]},
            'dtus[0].inverters[0].serial: "XYZ" is not 12 hex digits',
        ),
        (
            {
                "dtus": [
                    {
                        "serial": "414393320732",
                        "inverters": [{"serial": "141293320732"}, {"serial": "14129332073G"}],
                    }
                ]
            },
            "dtus[0].inverters[1].serial:",
        ),
        (
            {
                "dtus": [
                    {
                        "serial": "414393320732",
                        "inverters": [{"serial": "141293320732", "phases": 2}],
                    }
                ]
            },
            "dtus[0].inverters[0].phases:",
        ),
        (
            {"dtus": [{"serial": "414393320732", "inverters": [{"serial": "999993320732"}]}]},
            "dtus[0].inverters[0].ports:",
        ),
        (
            {
                "dtus": [
                    {
                        "serial": "414393320732",
                        "firmware": "1.0",
                        "inverters": [{"serial": "141293320732"}],
                    }
                ]
            },
            "dtus[0].firmware:",
        ),
        (
            {
                "dtus": [
                    {
                        "serial": "414393320732",
                        "colour": 1,
                        "inverters": [{"serial": "141293320732"}],
                    }
                ]
            },
            "dtus[0].colour: unknown field",
        ),
        ({"dtus": [{"serial": "414393320732", "inverters": []}]}, "dtus[0].inverters:"),
    ],
)
def test_fleet_errors_name_the_field(doc: object, expected: str) -> None:
    with pytest.raises(FleetError) as info:
        parse_fleet(doc)
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


def test_fleet_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="does not exist"):
        load_fleet(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    with pytest.raises(FleetError, match="not valid JSON"):
        load_fleet(broken)
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            {
                "dtus": [
                    {
                        "serial": "10f872226797",
                        "firmware": "V00.02.08",
                        "inverters": [{"serial": "116172207281"}],
                    }
                ]
            }
        )
    )
    spec = load_fleet(good).dtus[0]
    assert (spec.serial, spec.model, spec.firmware) == ("10F872226797", "DTU-Pro", 520)
    assert (spec.inverters[0].ports, spec.inverters[0].rated_power) == (4, 1500)


def test_simulate_help_via_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hoymiles_bridge.cli.main", "simulate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for option in (
        "--listen",
        "--fleet",
        "--encrypt",
        "--speed",
        "--night-off",
        "--countdown-reset",
    ):
        assert option in result.stdout


def test_simulate_bad_fleet_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"dtus": [{"serial": "414393320732", "inverters": [{"serial": "XYZ"}]}]})
    )
    result = subprocess.run(
        [sys.executable, "-m", "hoymiles_bridge.cli.main", "simulate", "--fleet", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "dtus[0].inverters[0].serial" in result.stderr
    assert "Traceback" not in result.stderr
