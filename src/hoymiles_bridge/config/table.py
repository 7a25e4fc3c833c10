"""The option table: every option of the bridge, described once.

Each :class:`OptionSpec` row gives an option's key, kind, default, bounds and
choices, its field on the web UI's configuration form (label, help text,
section) and whether the add-on has it. :mod:`hoymiles_bridge.config.options`
builds the voluptuous schema, the defaults of the typed options and the form
from these rows; tests/test_option_table.py checks the add-on's config.yaml,
its translations, bridge.example.yaml and DOCS.md against them.

Adding an option means adding its row here and its field to the matching
dataclass in options.py, which refuses to import while the two disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final, Literal

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
NIGHT_POLICIES: Final = ("zero", "unavailable")
#: What the bridge sends to a battery it holds at a setpoint when it stops:
#: ``zero`` (0 W; the firmware falls back to self-consumption within a minute
#: or two) or ``general`` (0 W, then the self-consumption mode at once).
BATTERY_RELEASE_MODES: Final = ("general", "zero")
#: Polls closer than this make the DTU repeat old data and starve the cloud
#: upload (protocol.md 5.2/5.4); newer firmware wants more (see policy.py).
DEFAULT_POLL_INTERVAL: Final = 35
#: Seconds between two live reads of a cloud station (never under 3 s).
DEFAULT_CLOUD_POLL_INTERVAL: Final = 10
#: The power controller's modes (core/controller.py); ``monitor`` sends nothing.
CONTROLLER_MODES: Final = ("off", "monitor", "zero_export", "feed_in_cap")
#: How a grid meter signs its power, and its unit (protocol/meter.py).
METER_SIGNS: Final = ("import_positive", "export_positive")
METER_UNITS: Final = ("W", "kW")

Kind = Literal[
    "int",
    "bool",
    "text",
    "topic",
    "host",
    "port",
    "choice",
    "secret",
    "serial",
    "names",
    "list",
    "section",
]


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One option: what it holds, its default and its field on the form.

    ``key`` is the option's name within its parent; its path is the key
    (``poll_interval``), ``<section>.<key>`` (``mqtt.port``) or, for the
    options of a list's items, ``<list>[].<key>`` (``dtus[].host``).
    ``kind`` says what the option holds:

    * ``int`` - a whole number from ``min`` to ``max`` (``None``: no bound,
      though the schema stops at 2**31 - 1); never true or false, a
      fraction, an infinity or NaN;
    * ``bool`` - true or false;
    * ``text`` - any text, from ``min`` to ``max`` characters when given;
    * ``topic`` - an MQTT topic without wildcards, slashes around it removed;
    * ``host`` - a host name or IP address;
    * ``port`` - a TCP port, 1 to 65535;
    * ``choice`` - one of ``choices`` (``ignore_case``: in any case, kept
      in lower case);
    * ``secret`` - text that is never shown or logged (a password);
    * ``serial`` - an inverter's serial number (the rule of
      :data:`~hoymiles_bridge.protocol.devices.SERIAL_PATTERN`), kept in upper
      case;
    * ``names`` - a list of at most ``count`` texts, each from ``min`` to
      ``max`` characters (the names of PV ports, in port order);
    * ``list`` - a list of at least ``min`` items, each a mapping of the
      options ``fields``; ``item`` names one item in the message when there
      are too few; with ``unique``, no two items have the same value of that
      option (compared after cleaning);
    * ``section`` - a mapping of the options ``fields``.

    ``required`` options have no default. An option left out takes its
    ``default``; ``optional`` ones may also be empty (``None``, their
    default). A list left out is empty, a section left out has every default.

    ``label`` and ``help`` are the option's field on the configuration form,
    in the form section ``section`` (a key of :data:`FORM_SECTIONS`); a
    section kind has no field of its own, its options are the fields.
    ``addon`` says whether the add-on has the option (config.yaml's schema);
    ``restart`` what applies a change: ``bridge`` (a restart of the bridge)
    or ``process`` (the whole process, e.g. the web server's address). The
    options of a list or section take ``section``, ``addon`` and ``restart``
    from it and leave them unset.
    """

    key: str
    kind: Kind
    _: KW_ONLY
    label: str = ""
    help: str = ""
    default: Any = None
    required: bool = False
    optional: bool = False
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()
    ignore_case: bool = False
    item: str = ""
    unique: str = ""
    count: int | None = None
    section: str = ""
    addon: bool = True
    restart: Literal["bridge", "process"] = "bridge"
    fields: tuple[OptionSpec, ...] = ()


#: The configuration form's sections, in order: key, title, what they hold.
FORM_SECTIONS: Final = (
    ("dtus", "DTUs", "The DTUs (or HMS-W inverters) the bridge talks to."),
    (
        "inverters",
        "Inverter names",
        "Names for inverters and their PV ports, shown in Home Assistant and here (optional).",
    ),
    ("polling", "Polling", "How often and how gently the bridge asks the DTUs."),
    (
        "batteries",
        "Batteries",
        "MS-A2 / HiBattery units that publish to the same MQTT broker (optional).",
    ),
    ("mqtt", "MQTT", "The broker. In the add-on, leave the host empty to use the Supervisor's."),
    ("homeassistant", "Home Assistant", "Topics and MQTT discovery."),
    (
        "cloud",
        "Hoymiles cloud",
        "S-Miles stations the bridge cannot reach locally, read from the Hoymiles cloud "
        "(optional).",
    ),
    (
        "controller",
        "Power controller",
        "Zero export and feed-in caps: the batteries' setpoints and the inverters' "
        "non-persistent limits, driven by a grid meter on MQTT (optional).",
    ),
    ("web", "Web", "Where this web UI listens (standalone only)."),
    ("logging", "Logging", ""),
)

#: The help of a password's field.
_KEEP_OR_EMPTY: Final = "Never shown; leave it as it is to keep it, empty it to remove it."

#: A device's optional name (a DTU's, a battery's), as Home Assistant shows it.
_DEVICE_NAME: Final = OptionSpec(
    "name",
    "text",
    label="Name",
    help="Shown in Home Assistant (optional).",
    optional=True,
    min=1,
    max=64,
)

#: Every option, in the order of the options documents and of
#: :class:`~hoymiles_bridge.config.options.Options`.
OPTIONS: Final[tuple[OptionSpec, ...]] = (
    OptionSpec(
        "dtus",
        "list",
        label="DTUs",
        help="None yet: the bridge waits in setup mode with only the web UI.",
        required=True,
        min=0,
        item="DTU",
        section="dtus",
        fields=(
            OptionSpec(
                "host",
                "host",
                label="Host",
                help="IP address or host name of the DTU.",
                required=True,
            ),
            OptionSpec("port", "port", label="Port", help="The DTU's TCP port.", default=10081),
            _DEVICE_NAME,
        ),
    ),
    OptionSpec(
        "inverters",
        "list",
        label="Inverters",
        help="Name an inverter by its serial number; inverters not listed keep their model name.",
        item="inverter",
        unique="serial",
        section="inverters",
        fields=(
            OptionSpec(
                "serial",
                "serial",
                label="Serial",
                help="The inverter's serial number (12 hex digits, on its label).",
                required=True,
            ),
            OptionSpec(
                "name",
                "text",
                label="Name",
                help="Shown instead of the model (optional).",
                optional=True,
                min=1,
                max=64,
            ),
            OptionSpec(
                "ports",
                "names",
                label="PV port names",
                help="In port order; a port without a name is Port 1, Port 2, ...",
                default=(),
                min=1,
                max=32,
                count=6,
            ),
        ),
    ),
    OptionSpec(
        "poll_interval",
        "int",
        label="Poll interval (s)",
        help="Seconds between two real-data polls of a DTU.",
        default=DEFAULT_POLL_INTERVAL,
        min=1,
        max=3600,
        section="polling",
    ),
    OptionSpec(
        "min_poll_interval",
        "int",
        label="Minimum poll interval (s)",
        help="Empty: 35 s, or 120 s on DTU firmware V01.01.00+. Lower it only if your DTU copes.",
        optional=True,
        min=1,
        max=3600,
        section="polling",
    ),
    OptionSpec(
        "cloud_pause",
        "bool",
        label="Pause during cloud uploads",
        help="Do not poll in the DTU's cloud-upload slots, so the S-Miles app keeps its data.",
        default=False,
        section="polling",
    ),
    OptionSpec(
        "release_socket_after",
        "int",
        label="Release the connection after (s)",
        help="Close the connection between polls when the interval is this long (0 = never).",
        default=60,
        min=0,
        max=86400,
        section="polling",
    ),
    OptionSpec(
        "performance_mode",
        "bool",
        label="Performance mode",
        help="Ask the DTU for fresh data on every poll.",
        default=False,
        section="polling",
    ),
    OptionSpec(
        "night_policy",
        "choice",
        label="At night",
        help="zero: 0 W and totals kept; unavailable: entities unavailable while the DTU is off.",
        default="zero",
        choices=NIGHT_POLICIES,
        section="polling",
    ),
    OptionSpec(
        "frozen_after",
        "int",
        label="Frozen after (polls)",
        help="Polls with the same DTU timestamp before the data counts as frozen.",
        default=10,
        min=2,
        section="polling",
    ),
    OptionSpec(
        "limit_interval",
        "int",
        label="Limit interval (s)",
        help="Seconds between two power-limit writes to an inverter.",
        default=30,
        min=0,
        max=3600,
        section="polling",
    ),
    OptionSpec(
        "batteries",
        "list",
        label="Batteries",
        help="Name batteries by their MQTT id (dev_id, e.g. MSA-280024370560).",
        item="battery",
        unique="dev_id",
        section="batteries",
        fields=(
            OptionSpec(
                "dev_id",
                "text",
                label="Battery id",
                help="The battery's MQTT id: client prefix, dash, serial (MSA-2800...).",
                required=True,
                min=1,
                max=64,
            ),
            _DEVICE_NAME,
        ),
    ),
    OptionSpec(
        "batteries_auto",
        "bool",
        label="Adopt every battery",
        help="Adopt every MS-A2 / HiBattery found on the broker; off: only the ones listed.",
        default=True,
        section="batteries",
    ),
    OptionSpec(
        "battery_release_mode",
        "choice",
        label="When the bridge stops",
        help="A battery held at a setpoint gets 0 W; general: also self-consumption at once.",
        default="general",
        choices=BATTERY_RELEASE_MODES,
        section="batteries",
    ),
    OptionSpec(
        "mqtt",
        "section",
        section="mqtt",
        fields=(
            OptionSpec(
                "host",
                "host",
                label="Broker host",
                help="Empty: the Supervisor's broker (add-on) or 127.0.0.1 (standalone).",
                optional=True,
            ),
            OptionSpec("port", "port", label="Broker port", default=1883),
            OptionSpec("username", "text", label="User name", optional=True),
            OptionSpec("password", "secret", label="Password", help=_KEEP_OR_EMPTY, optional=True),
            OptionSpec("tls", "bool", label="TLS", help="Connect with TLS.", default=False),
            OptionSpec(
                "qos",
                "int",
                label="Value QoS",
                help="Of the value topics: 0 (the default) or 1 (the broker acknowledges each).",
                default=0,
                min=0,
                max=1,
            ),
        ),
    ),
    OptionSpec(
        "base_topic",
        "topic",
        label="Base topic",
        help="Root of every topic, e.g. solar.",
        default="solar",
        section="homeassistant",
    ),
    OptionSpec(
        "discovery",
        "bool",
        label="MQTT discovery",
        help="Announce the devices to Home Assistant.",
        default=True,
        section="homeassistant",
    ),
    OptionSpec(
        "discovery_prefix",
        "topic",
        label="Discovery prefix",
        help="As set in Home Assistant's MQTT integration.",
        default="homeassistant",
        section="homeassistant",
    ),
    OptionSpec(
        "opendtu_topics",
        "bool",
        label="OpenDTU topics",
        help="One topic per value, as OpenDTU has them (Home Assistant reads the JSON either way).",
        default=True,
        section="homeassistant",
    ),
    OptionSpec(
        "publish_interval",
        "int",
        label="Publish interval (s)",
        help="Republish every value this often (0 = only when it changes; OpenDTU: 5).",
        default=0,
        min=0,
        max=3600,
        section="homeassistant",
    ),
    OptionSpec(
        "cloud",
        "section",
        section="cloud",
        fields=(
            OptionSpec(
                "username",
                "text",
                label="User name",
                help="The S-Miles account's e-mail address. Empty: the cloud is not used.",
                optional=True,
                min=1,
                max=128,
            ),
            OptionSpec("password", "secret", label="Password", help=_KEEP_OR_EMPTY, optional=True),
            OptionSpec(
                "poll_interval",
                "int",
                label="Poll interval (s)",
                help="Seconds between two live reads of a station; the cloud's own pace wins "
                "when it is slower.",
                default=DEFAULT_CLOUD_POLL_INTERVAL,
                min=3,
                max=3600,
            ),
            OptionSpec(
                "stations",
                "text",
                label="Stations",
                help="Station ids, separated by commas. Empty: every station of the account.",
                optional=True,
                min=1,
                max=256,
            ),
            OptionSpec(
                "allow_writes",
                "bool",
                label="Allow writes",
                help="Let the bridge change settings in the cloud (grid charging, on-grid power).",
                default=False,
            ),
            OptionSpec(
                "base_url",
                "text",
                label="Base URL (advanced)",
                help="For tests: send every cloud request to this URL instead of Hoymiles' hosts.",
                optional=True,
                min=1,
                max=256,
            ),
        ),
    ),
    OptionSpec(
        "controller",
        "section",
        section="controller",
        fields=(
            OptionSpec(
                "mode",
                "choice",
                label="Mode",
                help="off; monitor (computes and shows, sends nothing); zero_export; "
                "feed_in_cap. Also switchable at run time.",
                default="monitor",
                choices=CONTROLLER_MODES,
                ignore_case=True,
            ),
            OptionSpec(
                "meter_topic",
                "topic",
                label="Meter topic",
                help="The MQTT topic of the grid meter's power. Empty: no meter "
                "(only feed_in_cap runs, on the inverters' own power).",
                optional=True,
            ),
            OptionSpec(
                "meter_json_path",
                "text",
                label="Meter JSON path",
                help="Where the power is in a JSON payload, e.g. total_act_power (Shelly Pro "
                "3EM) or SML.Power (Tasmota). Empty: the payload is a number.",
                optional=True,
                min=1,
                max=128,
            ),
            OptionSpec(
                "meter_sign",
                "choice",
                label="Meter sign",
                help="import_positive: the meter shows power drawn from the grid as positive.",
                default="import_positive",
                choices=METER_SIGNS,
            ),
            OptionSpec(
                "meter_unit",
                "choice",
                label="Meter unit",
                help="W or kW.",
                default="W",
                choices=METER_UNITS,
            ),
            OptionSpec(
                "target",
                "int",
                label="Grid target (W)",
                help="The grid power to keep, W (import positive; 0: zero export).",
                default=0,
                min=-100000,
                max=100000,
            ),
            OptionSpec(
                "import_bias",
                "int",
                label="Import bias (W)",
                help="Added to the target so small swings import rather than export.",
                default=0,
                min=0,
                max=1000,
            ),
            OptionSpec(
                "max_feed_in",
                "int",
                label="Maximum feed-in (W)",
                help="A cap on the inverters' total AC power, W (e.g. 800). Empty: no cap.",
                optional=True,
                min=0,
                max=100000,
            ),
            OptionSpec(
                "meter_timeout",
                "int",
                label="Meter timeout (s)",
                help="Readings older than this count as missing: the batteries go to 0 W.",
                default=10,
                min=2,
                max=600,
            ),
        ),
    ),
    OptionSpec(
        "log_level",
        "choice",
        label="Log level",
        default="info",
        choices=LOG_LEVELS,
        ignore_case=True,
        section="logging",
    ),
    OptionSpec(
        "web",
        "section",
        section="web",
        addon=False,
        restart="process",
        fields=(
            OptionSpec(
                "host",
                "host",
                label="Listen on",
                help="127.0.0.1 keeps the UI on this machine.",
                default="127.0.0.1",
            ),
            OptionSpec("port", "port", label="Port", default=8099),
            OptionSpec(
                "username",
                "text",
                label="User name",
                help="Basic auth: the web UI asks for it whenever it is set.",
                optional=True,
            ),
            OptionSpec("password", "secret", label="Password", help=_KEEP_OR_EMPTY, optional=True),
        ),
    ),
)


def walk(
    specs: tuple[OptionSpec, ...] = OPTIONS, prefix: str = ""
) -> Iterator[tuple[str, OptionSpec]]:
    """``(path, spec)`` of every option, each followed by the options it holds."""
    for spec in specs:
        path = prefix + spec.key
        yield path, spec
        yield from walk(spec.fields, f"{path}[]." if spec.kind == "list" else f"{path}.")


def option(path: str) -> OptionSpec:
    """The row of the option at ``path`` (``log_level``, ``mqtt.port``, ``dtus[].host``).

    Raises :class:`KeyError` for a path the table does not have.
    """
    for found, spec in walk():
        if found == path:
            return spec
    raise KeyError(path)


#: The paths of the options that hold secrets (never shown, never logged).
SECRET_KEYS: Final = tuple(path for path, spec in walk() if spec.kind == "secret")


__all__ = [
    "BATTERY_RELEASE_MODES",
    "CONTROLLER_MODES",
    "DEFAULT_CLOUD_POLL_INTERVAL",
    "DEFAULT_POLL_INTERVAL",
    "FORM_SECTIONS",
    "LOG_LEVELS",
    "METER_SIGNS",
    "METER_UNITS",
    "NIGHT_POLICIES",
    "OPTIONS",
    "SECRET_KEYS",
    "Kind",
    "OptionSpec",
    "option",
    "walk",
]
