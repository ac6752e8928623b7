"""dmvpnd's config file: what an operator sees when it is right and when it is wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dmvpn_runtime.cli.dmvpnd import config_reference, main
from dmvpn_runtime.daemon.config import ConfigError, load, parse

GOOD = """\
tunnel: dmvpn0
role: spoke
nbma: {address: 198.51.100.2}
overlay: {ipv4: 10.255.255.2/24, ipv6: "fd00:255::2/64"}
nhs:
  - {proto: 10.255.255.1, nbma: 203.0.113.1}
  - {proto: 10.255.255.9, name: hub2.dmvpn.lab, priority: 2}
protected_prefixes: [10.1.0.0/24]
ipsec: {mode: none}
"""


def test_good_file_gets_defaults(tmp_path: Path) -> None:
    f = tmp_path / "dmvpn0.yaml"
    f.write_text(GOOD)
    cfg = load(str(f))
    assert cfg.tunnel == "dmvpn0"
    assert cfg["holdtime"] == 7200
    assert cfg["unique"] is True
    assert cfg["dataplane"] == "auto"
    assert cfg.control_socket == "/run/dmvpn/dmvpn0.sock"
    assert cfg.event_log == "/var/lib/dmvpn/dmvpn0.events.jsonl"
    assert [n["priority"] for n in cfg["nhs"]] == [0, 2]
    assert str(cfg["nhs"][1]["name"]) == "hub2.dmvpn.lab"


@pytest.mark.parametrize(
    ("change", "key", "expected"),
    [
        ("holdtime: 0", "holdtime", "integer from 1 to 65535"),
        ("holdtime: ten", "holdtime", "integer from 1 to 65535"),
        ("tunnel: a-very-long-tunnel-name", "tunnel", "interface name"),
        ("nbma: {address: 198.51.100.300}", "nbma.address", "IPv4 or IPv6 address"),
        ("protected_prefixes: [10.1.0.1/24]", "protected_prefixes", "no host bits"),
        ("dataplane: fast", "dataplane", "one of auto, kernel, userspace"),
        ("colour: blue", "colour", "a known key"),
        ("authentication: {secret: much-too-long}", "authentication.secret", "at most 8"),
        ("nhs: [{proto: 10.255.255.1}]", "nhs[0]", "exactly one of nbma, name"),
        ("nhs: [{proto: 10.9.9.9, nbma: 203.0.113.1}]", "nhs[0].proto", "inside the overlay"),
        ("nhs: [{proto: 10.255.255.1, nbma: '2001:db8::1'}]", "nhs[0].nbma", "IPv4 address"),
        (
            "policy: {rules: [{from: nope, to: 10.0.0.0/8, action: allow}]}",
            "policy.rules[0].from",
            "a group name or a prefix",
        ),
    ],
)
def test_each_problem_names_file_key_and_expectation(change: str, key: str, expected: str) -> None:
    top = change.split(":", 1)[0]
    text = "\n".join(line for line in GOOD.splitlines() if not line.startswith(top + ":"))
    if top == "nhs":  # drop the indented list too
        text = text.replace("  - {proto: 10.255.255.1, nbma: 203.0.113.1}\n", "")
        text = text.replace("  - {proto: 10.255.255.9, name: hub2.dmvpn.lab, priority: 2}", "")
    with pytest.raises(ConfigError) as err:
        parse(text + "\n" + change + "\n", "/etc/dmvpn/x.yaml")
    messages = [str(p) for p in err.value.problems]
    match = [m for m in messages if m.startswith(f"/etc/dmvpn/x.yaml: {key}: ")]
    assert match, messages
    assert expected in match[0]


def test_all_problems_reported_at_once() -> None:
    text = GOOD.replace("holdtime", "x") + "holdtime: -5\ngre_key: -1\nbogus: 1\n"
    with pytest.raises(ConfigError) as err:
        parse(text, "f.yaml")
    keys = {p.key for p in err.value.problems}
    assert {"holdtime", "gre_key", "bogus"} <= keys


def test_missing_required_sections() -> None:
    with pytest.raises(ConfigError) as err:
        parse("tunnel: t0\nrole: hub\n", "f.yaml")
    keys = {p.key for p in err.value.problems}
    assert {"nbma", "overlay", "ipsec"} <= keys


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse("tunnel: [\n", "f.yaml")
    assert "line" in err.value.problems[0].key


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(str(tmp_path / "absent.yaml"))
    assert "readable file" in str(err.value)


def test_restart_only_changes_detected() -> None:
    a = parse(GOOD, "f")
    b = parse(GOOD.replace("198.51.100.2", "198.51.100.7").replace("holdtime", "x"), "f")
    c = parse(GOOD + "holdtime: 600\n", "f")
    assert a.restart_only_changes(b) == ["nbma.address"]
    assert a.restart_only_changes(c) == []


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + "holdtime: 0\n")
    assert main(["check-config", str(good)]) == 0
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: holdtime: expected an integer from 1 to 65535, got 0" in err
    # The installed console script behaves the same (Ansible's `validate` uses it).
    script = Path(sys.executable).with_name("dmvpnd")
    proc = subprocess.run(
        [script, "check-config", str(bad)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1 and "holdtime" in proc.stderr


def test_register_prefixes_reaches_the_engine(tmp_path: Path) -> None:
    """An operator facing a hub that refuses prefix CIEs (FRR) turns them off."""
    from dmvpn_runtime.daemon.engine_config import engine_config

    f = tmp_path / "dmvpn0.yaml"
    f.write_text(GOOD)
    assert engine_config(load(str(f))).register_prefixes is True
    f.write_text(GOOD + "register_prefixes: false\n")
    config = engine_config(load(str(f)))
    assert config.register_prefixes is False and config.protected  # still answered for


def test_docs_config_reference_is_current() -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "config.md"
    assert config_reference() in doc.read_text(), "regenerate with: dmvpnd config-docs"


def test_docs_examples_are_valid() -> None:
    import re

    doc = (Path(__file__).resolve().parents[3] / "docs" / "config.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        assert parse(block, "docs/config.md").tunnel == "dmvpn0"
