"""The fleet's state and events on a simulated DTU in memory, in virtual time (no sockets)."""

from __future__ import annotations

import dataclasses

import pytest

from hoymiles_bridge.config.options import validate
from hoymiles_bridge.core.events import AlarmsChanged, Event, RealDataReceived
from hoymiles_bridge.core.fleet import MAX_ALARMS_PER_INVERTER, MAX_INVERTERS_PER_DTU, Fleet
from hoymiles_bridge.dtu.session import SessionState
from hoymiles_bridge.mqtt.bridge import MqttBridge
from hoymiles_bridge.mqtt.link import MqttSettings
from hoymiles_bridge.protocol.models import RealData, Warnings

from .fake_dtu import FakeDtu, local_time, run_virtual

NOON = local_time(12.0)


def _fleet(fake: FakeDtu, **options: object) -> Fleet:
    doc: dict[str, object] = {"dtus": [{"host": "fake-dtu", "port": 10081}], **options}
    return Fleet(validate(doc), client_factory=fake.client, clock=fake.wall)


def test_night_zeros_only_inverters_that_were_read() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        fleet = _fleet(fake, night_policy="zero")
        dtu = fleet.dtus[0]
        session = dtu.session
        async with fake.client() as client:
            info = await client.app_info()
            data = await client.real_data()
        session.app_info = info
        await fleet.on_dtu_info(session, info, None, None)
        assert dtu.inverters and all(i.values is None for i in dtu.inverters.values())
        session.state = SessionState.NIGHT
        await fleet.on_state(session)
        # never read: nothing to zero, above all no lifetime total of 0
        assert all(i.values is None for i in dtu.inverters.values())

        session.state = SessionState.CONNECTED
        await fleet.on_real_data(session, data, True)
        inverter = next(iter(dtu.inverters.values()))
        assert inverter.values is not None
        total = inverter.values.values["yieldtotal"]
        assert inverter.values.values["power"] > 0 and total > 0
        session.state = SessionState.NIGHT
        await fleet.on_state(session)
        assert inverter.values is not None
        assert inverter.values.values["power"] == 0
        assert inverter.values.values["yieldtotal"] == total  # totals stay

    run_virtual(main)


def test_alarms_of_unlisted_inverters_make_no_state_and_news_keep_the_dtus_order() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        fleet = _fleet(fake)
        dtu = fleet.dtus[0]
        session = dtu.session
        events: list[Event] = []

        async def listen(event: Event) -> None:
            events.append(event)

        fleet.subscribe(listen)
        inverter = fake.dtu.inverters[0]
        inverter.add_warning(121, fake.clock.now())
        inverter.add_warning(124, fake.clock.now() + 1)
        async with fake.client() as client:
            info = await client.app_info()
            warnings = await client.alarms()
        session.app_info = info
        await fleet.on_dtu_info(session, info, None, None)
        stranger = dataclasses.replace(warnings.warnings[0], inverter_serial="DEADBEEF0001")
        await fleet.on_alarms(
            session, Warnings(warnings.dtu_serial, (*warnings.warnings, stranger))
        )
        assert set(dtu.inverters) == {i.serial for i in info.inverters}
        news = next(e for e in events if isinstance(e, AlarmsChanged)).new
        assert [alarm.code for _, alarm in news] == [121, 124]  # as the DTU listed them
        assert all(serial != "DEADBEEF0001" for serial, _ in news)
        assert not any(isinstance(e, RealDataReceived) for e in events)

    run_virtual(main)


def test_a_dtu_cannot_grow_the_state_without_end() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        fleet = _fleet(fake)
        dtu = fleet.dtus[0]
        session = dtu.session
        fake.dtu.inverters[0].add_warning(121, fake.clock.now())
        async with fake.client() as client:
            info = await client.app_info()
            warnings = await client.alarms()
        one = info.inverters[0]
        many = tuple(
            dataclasses.replace(one, serial=f"{one.serial[:4]}{n:08X}") for n in range(150)
        )
        info = dataclasses.replace(info, inverters=many)
        session.app_info = info
        await fleet.on_dtu_info(session, info, None, None)
        assert len(dtu.inverters) == MAX_INVERTERS_PER_DTU

        # 200 alarms for one inverter, over and over: the newest 50 are kept, and the
        # alarms told about are only those the DTU still lists
        serial = many[0].serial
        template = warnings.warnings[0]
        for round_ in range(3):
            listed = tuple(
                dataclasses.replace(
                    template, inverter_serial=serial, code=121, start=round_ * 1000 + n
                )
                for n in range(200)
            )
            await fleet.on_alarms(session, Warnings(warnings.dtu_serial, listed))
            kept = dtu.inverters[serial].alarms
            assert len(kept) == MAX_ALARMS_PER_INVERTER
            assert min(a.start for a in kept) == round_ * 1000 + 150
            assert len(fleet._alarms_seen[id(dtu)]) == 200

    run_virtual(main)


def test_inverters_past_the_cap_make_no_topics_and_do_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The fleet ignores inverters past MAX_INVERTERS_PER_DTU; the MQTT adapter must too."""

    async def main() -> None:
        fake = FakeDtu(start=NOON)
        fleet = _fleet(fake)
        mqtt = MqttBridge(fleet, MqttSettings())  # not connected: publishes are queued
        dtu = fleet.dtus[0]
        session = dtu.session
        async with fake.client() as client:
            info = await client.app_info()
            data = await client.real_data()
        one = info.inverters[0]
        many = tuple(
            dataclasses.replace(one, serial=f"{one.serial[:4]}{n:08X}") for n in range(150)
        )
        info = dataclasses.replace(info, inverters=many)
        session.app_info = info
        await fleet.on_dtu_info(session, info, None, None)
        kept, dropped = many[0].serial, many[120].serial
        reading = data.inverters[0]
        readings = (
            dataclasses.replace(reading, serial=kept),
            dataclasses.replace(reading, serial=dropped),
        )
        await fleet.on_real_data(session, RealData(data.dtu_serial, data.timestamp, readings), True)
        topics = set(mqtt._published)
        assert f"solar/{kept}/0/power" in topics
        assert not [t for t in topics if f"/{dropped}/" in t]
        assert "A fleet subscriber failed" not in caplog.text

    run_virtual(main)
