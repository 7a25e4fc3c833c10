"""The command registry, limit pacing and the fleet's dispatch: no sockets, no broker."""

from __future__ import annotations

import pytest

from hoymiles_bridge.cli.main import main as cli_main
from hoymiles_bridge.config.options import validate
from hoymiles_bridge.core.commands import (
    BY_NAME,
    COMMANDS,
    CommandError,
    CommandOutcome,
    CommandRequest,
    Target,
    ValueKind,
    check,
    commands_for,
    lookup,
    outcome_for,
)
from hoymiles_bridge.core.events import CommandStatus, Event
from hoymiles_bridge.core.fleet import Fleet
from hoymiles_bridge.core.limits import (
    Decision,
    LimitPacer,
    limit_range,
    limit_request,
    shown_limit,
)
from hoymiles_bridge.core.state import InverterDevice
from hoymiles_bridge.errors import (
    DtuConnectionError,
    DtuRejectedError,
    DtuTimeoutError,
    InvalidArgumentError,
)
from hoymiles_bridge.mqtt.topics import DTU_COMMANDS, INVERTER_COMMANDS
from hoymiles_bridge.protocol.actions import MIN_LIMIT_PERCENT


def _request(name: str, payload: bytes, *, target: Target | None = None, retained: bool = False):
    return CommandRequest(target, "116180000001", name, payload, retained=retained)


def _inverter(rated: int) -> InverterDevice:
    return InverterDevice(
        serial="116180000001",
        model="HMS-800W-2T",
        firmware="",
        hardware="",
        name=None,
        ports=2,
        rated_power=rated,
        dtu_serial="414393320732",
        supports_nonpersistent=True,
    )


# --- the registry ------------------------------------------------------------------


def test_names_entities_and_cli_forms_are_unique() -> None:
    assert len(BY_NAME) == len(COMMANDS)
    keys = [e.key for spec in COMMANDS for e in spec.entities]
    assert len(keys) == len(set(keys))
    forms = [f.name for spec in COMMANDS for f in spec.cli]
    forms += [a for spec in COMMANDS for f in spec.cli for a in f.aliases]
    assert len(forms) == len(set(forms))
    # Every command has an entity, except a battery's TOU plans and plan reads
    # (JSON documents and answers: MQTT, the web API and the CLI only).
    without = {s.name for s in COMMANDS if not s.entities}
    assert without == {"tou_day_plan", "tou_week_plan", "tou_get"}
    assert all(spec.confirm for spec in COMMANDS if spec.danger)


def test_mqtt_entities_are_generated_from_the_registry() -> None:
    for target, fields in ((Target.INVERTER, INVERTER_COMMANDS), (Target.DTU, DTU_COMMANDS)):
        expected = [(e.key, s.name) for s in commands_for(target) for e in s.entities]
        assert [(f.key, f.topic) for f in fields] == expected


@pytest.mark.parametrize("name", ["no_such_command", "", "limit", "RESTART"])
def test_an_unknown_name_is_refused(name: str) -> None:
    with pytest.raises(CommandError, match="unknown command"):
        check(_request(name, b"1"))


def test_a_command_of_the_other_target_is_unknown() -> None:
    with pytest.raises(CommandError, match="unknown command 'restart'"):
        lookup("restart", Target.DTU)
    with pytest.raises(CommandError, match="unknown command 'reboot'"):
        check(_request("reboot", b"1", target=Target.INVERTER))


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("limit_persistent_relative", b"nan", "not a finite number"),
        ("limit_persistent_relative", b"inf", "not a finite number"),
        ("limit_persistent_relative", b"-1", "outside 0..100 %"),
        ("limit_persistent_relative", b"100.5", "outside 0..100 %"),
        ("limit_persistent_absolute", b"-0.5", "must be 0 W or more"),
        ("limit_nonpersistent_absolute", b"-5", "must be 0 W or more"),
        ("power", b"2", "is not 0 or 1"),
        ("restart", b"0", "send 1 to restart"),
        ("restart", b"", "payload is empty"),
        ("restart", b"\xff", "payload is not text"),
        ("restart", b"1" * 33, "longer than 32 bytes"),
    ],
)
def test_bad_values_are_refused_with_one_sentence(name: str, payload: bytes, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        check(_request(name, payload))


def test_values_are_read_by_kind() -> None:
    assert check(_request("power", b" ON ")).value == 1.0  # type: ignore[union-attr]
    assert check(_request("power", b"off")).value == 0.0  # type: ignore[union-attr]
    assert check(_request("restart", b"PRESS")).value == 1.0  # type: ignore[union-attr]
    limit = check(_request("limit_persistent_relative", b"2"))
    assert limit is not None and limit.value == MIN_LIMIT_PERCENT
    # OpenDTU's ranges: 0 % and 0 W are accepted (and clamped when converted)
    for name in ("limit_persistent_relative", "limit_nonpersistent_absolute"):
        zero = check(_request(name, b"0"))
        assert zero is not None and zero.value == 0.0
    assert {s.value for s in COMMANDS} == set(ValueKind)


def test_retained_one_shots_are_ignored_and_persistent_limits_are_not() -> None:
    for spec in COMMANDS:
        payload = b"50" if spec.value is ValueKind.NUMBER else b"1"
        command = check(_request(spec.name, payload, retained=True))
        assert (command is None) == spec.ignore_retained, spec.name
    assert not BY_NAME["limit_persistent_relative"].ignore_retained
    assert BY_NAME["limit_nonpersistent_absolute"].ignore_retained


def test_errors_map_to_one_outcome_everywhere() -> None:
    assert outcome_for(InvalidArgumentError("x")) == CommandOutcome("refused", "x")
    assert outcome_for(DtuRejectedError("no", code=3)).status == "failed"
    for error in (DtuConnectionError("gone"), DtuTimeoutError("slow")):
        outcome = outcome_for(error)
        assert outcome.status == "failed" and outcome.message.startswith("the DTU did not take")
    assert CommandOutcome("refused", "bad").text == "failed: bad"
    assert CommandOutcome("pending").text == "pending"
    assert CommandOutcome("ok", "unchanged").text == "ok"
    assert CommandOutcome("ok", note="clamped to 2 %").text == "ok: clamped to 2 %"
    with pytest.raises(KeyError):
        outcome_for(KeyError("a bug is not an outcome"))


# --- limits ------------------------------------------------------------------------


def test_limit_conversion_clamps_to_the_floor_and_the_rating() -> None:
    inverter = _inverter(800)

    def value(name: str, payload: bytes, rated: int = 800) -> tuple[float, str]:
        command = check(_request(name, payload))
        assert command is not None
        return limit_request(command, _inverter(rated))

    assert value("limit_persistent_relative", b"55.5") == (55.5, "")
    assert value("limit_persistent_relative", b"0") == (MIN_LIMIT_PERCENT, "clamped to 2 %")
    assert value("limit_persistent_relative", b"1.9") == (MIN_LIMIT_PERCENT, "clamped to 2 %")
    assert value("limit_persistent_absolute", b"400") == (50.0, "")
    assert value("limit_persistent_absolute", b"1") == (MIN_LIMIT_PERCENT, "clamped to 16 W (2 %)")
    assert value("limit_persistent_absolute", b"801") == (
        100.0,
        "clamped to 800 W (the rated power)",
    )
    assert value("limit_nonpersistent_relative", b"25") == (200.0, "")
    assert value("limit_nonpersistent_relative", b"0") == (16.0, "clamped to 2 %")
    assert value("limit_nonpersistent_absolute", b"123.4") == (123.4, "")
    assert value("limit_nonpersistent_absolute", b"0") == (16.0, "clamped to 16 W (2 %)")
    # an unknown rated power: W limits stay within 2 % .. 100 % of the largest inverter
    assert value("limit_nonpersistent_absolute", b"0", 0) == (45.0, "clamped to 45 W (2 %)")
    assert value("limit_nonpersistent_absolute", b"9000", 0) == (
        2250.0,
        "clamped to 2250 W (the largest inverter's)",
    )
    unknown = check(_request("limit_persistent_absolute", b"100"))
    assert unknown is not None
    with pytest.raises(CommandError, match="rated power is unknown; use the % limit"):
        limit_request(unknown, _inverter(0))
    assert inverter.rated_power == 800


def test_limit_ranges_match_what_the_registry_accepts_and_the_states_fit() -> None:
    for spec in commands_for(Target.INVERTER):
        if spec.limit is None:
            continue
        low, high, _step = limit_range(spec, 800)
        for edge in (low, high):
            assert check(_request(spec.name, f"{edge:g}".encode())) is not None
        if spec.limit.relative:
            assert (low, high) == (0.0, 100.0)
            with pytest.raises(CommandError):
                check(_request(spec.name, b"100.1"))
        else:
            assert (low, high) == (0.0, 800)
    # what the state topics carry stays inside those ranges, whatever the DTU says
    assert shown_limit(150.0, 800) == (100.0, 800.0)
    assert shown_limit(-3.0, 800) == (0.0, 0.0)
    assert shown_limit(2.0, 800) == (2.0, 16.0)
    assert shown_limit(50.0, 0) == (50.0, None)


def test_pacer_lets_one_write_through_per_interval_and_the_latest_wins() -> None:
    pacer = LimitPacer(10.0)
    assert pacer.offer(50.0, now=0.0) is Decision.SEND
    pacer.sent(50.0, 0.0)
    assert pacer.offer(50.0, now=1.0) is Decision.UNCHANGED
    assert pacer.offer(60.0, now=1.0) is Decision.PENDING
    assert pacer.offer(70.0, now=2.0) is Decision.PENDING and pacer.pending == 70.0
    assert pacer.due == 10.0
    assert pacer.offer(80.0, now=10.0) is Decision.SEND and pacer.pending is None
    pacer.sent(80.0, 10.0)
    pacer.failed()
    assert pacer.offer(80.0, now=25.0) is Decision.SEND  # a failed value may be retried


# --- the fleet's dispatch (not running: nothing is sent) ------------------------------


async def test_the_fleet_refuses_unknown_commands_before_any_dtu() -> None:
    fleet = Fleet(validate({"dtus": [{"host": "127.0.0.1", "port": 9}]}))
    events: list[Event] = []

    async def listen(event: Event) -> None:
        events.append(event)

    fleet.subscribe(listen)
    for request in (
        CommandRequest(Target.DTU, "", "bogus", b"1"),
        CommandRequest(Target.INVERTER, "116180000001", "bogus", b"1"),
        CommandRequest(Target.DTU, "", "restart", b"1"),
    ):
        outcome = await fleet.submit(request)
        assert outcome is not None and outcome.status == "refused"
        assert outcome.text == f"failed: unknown command {request.name!r}"
    assert [type(e) for e in events] == [CommandStatus] * 3
    assert all(isinstance(e, CommandStatus) and e.final for e in events)
    # refusals are not DTU failures, and no session ever ran a command
    assert fleet.commands_failed == 0 and fleet.commands_done == 0
    assert fleet.dtus[0].session.client.connection is None
    # a known command for an unknown inverter is refused the same way
    outcome = await fleet.submit(CommandRequest(Target.INVERTER, "DEADBEEF0001", "restart", b"1"))
    assert outcome == CommandOutcome("refused", "no inverter DEADBEEF0001 is known")
    assert fleet.commands_failed == 1


def test_the_cli_exits_2_for_an_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["dtu", "127.0.0.1:9", "explode"])
    assert exited.value.code == 2
    assert "invalid choice: 'explode'" in capsys.readouterr().err


def test_the_cli_refuses_a_nan_limit(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["dtu", "127.0.0.1:9", "limit", "nan", "--timeout", "0.2"])
    assert code == 2
    assert "'nan' is not a finite number" in capsys.readouterr().err


def test_every_cli_form_of_the_registry_is_a_subcommand() -> None:
    from hoymiles_bridge.cli.dtu import COMMANDS as CLI

    names = [c.name for c in CLI]
    assert len(names) == len(set(names))
    for spec in COMMANDS:
        for form in spec.cli:
            assert form.name in names, form.name


@pytest.mark.parametrize(
    "args",
    [
        ["limit", "nan", "--watts", "--serial", "116180000001"],
        ["limit", "inf"],
        ["limit", "1e999", "--watts", "--serial", "116180000001"],
        ["limit-temporary", "nan"],
    ],
)
def test_the_cli_never_sends_a_non_finite_limit(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`limit nan --watts` used to send a 2 % persistent limit (issue #10)."""
    assert cli_main(["dtu", "127.0.0.1:9", *args, "--timeout", "0.2"]) == 2
    assert "not a finite number" in capsys.readouterr().err
