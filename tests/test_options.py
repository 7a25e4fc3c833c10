"""Options: one schema, plain messages naming the key, exit code 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hoymiles_bridge.addon.options import OptionsError, load_options, validate


def test_defaults() -> None:
    options = validate({"dtus": [{"host": "192.168.1.50"}]})
    assert options.dtus[0].port == 10081 and options.dtus[0].name is None
    assert options.poll_interval == 35 and options.min_poll_interval is None
    assert options.base_topic == "solar" and options.discovery is True
    assert options.discovery_prefix == "homeassistant" and options.night_policy == "zero"
    assert options.mqtt.port == 1883 and options.web.port == 8099
    assert options.web.host == "127.0.0.1"


def test_every_problem_named_once() -> None:
    with pytest.raises(OptionsError) as info:
        validate(
            {
                "dtus": [{"host": "bad host", "port": 99999}],
                "poll_interval": "often",
                "night_policy": "dark",
                "base_topic": "solar/#",
                "mqtt": {"tls": "yes"},
                "unknown": 1,
            }
        )
    problems = info.value.problems
    assert problems == sorted(problems)
    joined = "\n".join(problems)
    for key in (
        "dtus[0].host",
        "dtus[0].port",
        "poll_interval",
        "night_policy",
        "base_topic",
        "mqtt.tls",
        "unknown: unknown option",
    ):
        assert key in joined, key
    assert "Traceback" not in joined


def test_missing_dtus_and_not_a_mapping() -> None:
    with pytest.raises(OptionsError, match="dtus: required option is missing"):
        validate({})
    with pytest.raises(OptionsError, match="expected a mapping"):
        validate(["dtus"])
    with pytest.raises(OptionsError, match="at least one DTU"):
        validate({"dtus": []})


def test_yaml_and_json_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "bridge.yaml"
    yaml_file.write_text("dtus:\n  - host: 10.0.0.5\n    name: Roof\nbase_topic: pv\n")
    assert load_options(yaml_file).dtus[0].name == "Roof"
    json_file = tmp_path / "bridge.json"
    json_file.write_text('{"dtus": [{"host": "10.0.0.5"}], "log_level": "DEBUG"}')
    assert load_options(json_file).log_level == "debug"
    bad = tmp_path / "bad.yaml"
    bad.write_text("dtus: [\n")
    with pytest.raises(OptionsError, match="not valid YAML"):
        load_options(bad)
    with pytest.raises(OptionsError, match="no such file"):
        load_options(tmp_path / "missing.yaml")


def test_secrets_not_in_repr() -> None:
    options = validate(
        {"dtus": [{"host": "h"}], "mqtt": {"password": "s3cret"}, "web": {"password": "w3b"}}
    )
    assert "s3cret" not in repr(options) and "w3b" not in repr(options)


def test_run_with_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("dtus:\n  - port: 0\npoll_interval: -3\n")
    result = subprocess.run(
        [sys.executable, "-m", "hoymiles_bridge.cli.main", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: dtus[0].host: required option is missing",
        "error: dtus[0].port: expected a port number from 1 to 65535",
        "error: poll_interval: value must be at least 1",
    ]
