"""``dmvpnctl decode`` and ``encode``: in-process through main(), and as the console script."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dmvpn_runtime.capture import (
    LINKTYPE_ETHERNET,
    ethernet,
    gre,
    gre_ipv4,
    ipv4,
    ipv6,
    write_pcap,
    write_pcapng,
)
from dmvpn_runtime.cli import dmvpnctl
from dmvpn_runtime.nhrp.wire import decode

REG = bytes.fromhex(
    "00010800000000000001005cc4bc0034010304000404800200000001c63364020affff020affff0100ff"
    "000000001c200000000080040000800500008003000000090014002000000000000004000400cb007101"
    "0affff0180000000"
)
TI = bytes.fromhex(
    "0001080000000000000100449e940000010804000404000000000000cb0071010affff010a020014"
    "4500001c000700003f0167ba0a01000a0a0200140800f7ff00000000"
)
BAD = bytearray(REG)
BAD[12] ^= 0xFF  # checksum
BAD = bytes(BAD)
DMVPNCTL = Path(sys.executable).with_name("dmvpnctl")


def run(argv, stdin: bytes | str = b"", capsys=None, monkeypatch=None):
    data = stdin.encode() if isinstance(stdin, str) else stdin
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    status = dmvpnctl.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def ctl(capsys, monkeypatch):
    return lambda argv, stdin=b"": run(argv, stdin, capsys, monkeypatch)


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def write(path: Path, frames, linktype=101, ng=False) -> str:
    with open(path, "wb") as f:
        (write_pcapng if ng else write_pcap)(f, frames, linktype)
    return str(path)


# --- decode ------------------------------------------------------------------------------


def test_decode_hex_argument(ctl):
    status, out, err = ctl(["decode", REG.hex()])
    assert (status, err) == (0, "")
    [obj] = lines(out)
    assert obj["type"] == "registration_request" and obj["request_id"] == 1
    assert obj["extensions"][3]["cies"][0]["client_nbma"] == "203.0.113.1"


def test_decode_hex_arguments_with_separators(ctl):
    spaced = " ".join(REG.hex()[i : i + 2] for i in range(0, len(REG) * 2, 2))
    status, out, _err = ctl(["decode", spaced, "0x" + TI.hex().upper()])
    assert status == 0
    assert [o["type"] for o in lines(out)] == ["registration_request", "traffic_indication"]


def test_decode_stdin_lines(ctl):
    stdin = f"# a comment\n\n{REG.hex()}\n{TI.hex()}\n"
    status, out, err = ctl(["decode"], stdin)
    assert (status, err) == (0, "")
    assert [o["type"] for o in lines(out)] == ["registration_request", "traffic_indication"]


def test_decode_bad_packet_among_good_ones(ctl):
    status, out, err = ctl(["decode"], f"{REG.hex()}\n{BAD.hex()}\n{TI.hex()}\n")
    assert status == 1
    assert len(lines(out)) == 2
    assert err.startswith("error: packet 2: bad_checksum at offset 12: ")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("zz", "error: packet 1: invalid_hex: "),
        (REG[:10].hex(), "error: packet 1: truncated at offset 10: "),
        ("02" * 40, "error: packet 1: unsupported_version at offset 16: "),
    ],
)
def test_decode_errors_are_one_line(ctl, text, expected):
    status, out, err = ctl(["decode", text])
    assert (status, out) == (1, "")
    assert err.startswith(expected) and err.count("\n") == 1


@pytest.mark.parametrize("ng", [False, True], ids=["pcap", "pcapng"])
def test_decode_capture_file(ctl, tmp_path, ng):
    path = write(tmp_path / ("x.pcapng" if ng else "x.pcap"), [gre_ipv4(REG), gre_ipv4(TI)], ng=ng)
    status, out, err = ctl(["decode", path])
    assert (status, err) == (0, "")
    assert [o["type"] for o in lines(out)] == ["registration_request", "traffic_indication"]
    status, out2, _err = ctl(["decode", "--pcap", path])
    assert (status, out2) == (0, out)


def test_decode_capture_on_stdin(ctl, tmp_path):
    path = write(tmp_path / "x.pcap", [gre_ipv4(REG)])
    status, out, _err = ctl(["decode"], Path(path).read_bytes())
    assert status == 0 and lines(out)[0]["type"] == "registration_request"


def test_decode_ethernet_ipv6_capture(ctl, tmp_path):
    frames = [
        ethernet(gre_ipv4(REG), vlans=(10,)),
        ethernet(ipv6(gre(TI, seq=1)), ethertype=0x86DD),
    ]
    path = write(tmp_path / "eth.pcapng", frames, LINKTYPE_ETHERNET, ng=True)
    status, out, err = ctl(["decode", path])
    assert (status, err) == (0, "")
    assert [o["type"] for o in lines(out)] == ["registration_request", "traffic_indication"]


def test_decode_capture_keeps_going_after_a_bad_packet(ctl, tmp_path):
    frames = [
        gre_ipv4(REG),
        gre_ipv4(BAD),
        ipv4(b"\x00" * 8, proto=17),  # UDP: not NHRP, noted
        ipv4(gre(b"", key=None)[:3]),  # GRE cut short: an error
        gre_ipv4(TI),
    ]
    path = write(tmp_path / "mixed.pcap", frames)
    status, out, err = ctl(["decode", path])
    assert status == 1
    assert [o["type"] for o in lines(out)] == ["registration_request", "traffic_indication"]
    messages = err.splitlines()
    assert messages[0].startswith("error: packet 2: bad_checksum at offset 12: ")
    assert messages[1].startswith("note: packet 3: skipped, not_gre")
    assert messages[2].startswith("error: packet 4: truncated at offset ")
    assert len(messages) == 3


def test_decode_missing_and_non_capture_files(ctl, tmp_path):
    status, _out, err = ctl(["decode", str(tmp_path / "nope.pcap")])
    assert status == 1 and err.startswith("error: cannot read ")
    text = tmp_path / "notes.pcap"
    text.write_text("hello")
    status, _out, err = ctl(["decode", str(text)])
    assert status == 1 and "not a pcap or pcapng file" in err


def test_decode_vectors_and_pretty(ctl, tmp_path):
    vectors = tmp_path / "vectors.hex.txt"
    vectors.write_text(f"registration_request {len(REG)} {REG.hex()}\nti {len(TI)} {TI.hex()}\n")
    status, out, err = ctl(["decode", "--vectors", str(vectors)])
    assert (status, err) == (0, "")
    assert len(lines(out)) == 2
    status, out, err = ctl(["decode", "--pretty", "--vectors", str(vectors)])
    assert (status, err) == (0, "")
    assert out.startswith("vector registration_request: registration_request, 92 octets;")
    assert "request id 1, flags unique,nat" in out
    assert "vector ti: traffic_indication, 68 octets;" in out
    assert "data packet 10.1.0.10 > 10.2.0.20 protocol 1 (ICMP)" in out
    assert '\n  "type": "registration_request",\n' in out  # indented JSON follows
    vectors.write_text(f"short 91 {REG.hex()}\n")
    status, _out, err = ctl(["decode", "--vectors", str(vectors)])
    assert status == 1 and "length 91 but 92 octets" in err


# --- encode ------------------------------------------------------------------------------


def test_encode_argument_and_stdin(ctl):
    obj = json.dumps({"type": "purge_request", "request_id": 5, "flags": ["no_reply"]})
    status, out, err = ctl(["encode", obj])
    assert (status, err) == (0, "")
    assert decode(bytes.fromhex(out.strip())).request_id == 5
    status, out2, _err = ctl(["encode"], obj + "\n\n" + obj + "\n")
    assert status == 0 and out2 == out * 2


def test_decode_then_encode_is_byte_exact(ctl, tmp_path):
    path = write(tmp_path / "x.pcap", [gre_ipv4(REG), gre_ipv4(TI)])
    _status, json_lines, _err = ctl(["decode", path])
    status, out, err = ctl(["encode"], json_lines)
    assert (status, err) == (0, "")
    assert out.split() == [REG.hex(), TI.hex()]


def test_encode_errors(ctl):
    good = json.dumps({"type": "purge_reply"})
    stdin = "\n".join(
        [
            "{not json",
            json.dumps({"type": "purge_reply", "hop_count": 300}),
            good,
            json.dumps({"type": "purge_reply", "extensions": [{"type": 4}]}),
        ]
    )
    status, out, err = ctl(["encode"], stdin)
    assert status == 1
    assert len(out.split()) == 1
    messages = err.splitlines()
    assert messages[0].startswith("error: packet 1: invalid_json: ")
    assert (
        messages[1]
        == "error: packet 2: invalid_field: hop_count: expected an integer 0..255, got 300"
    )
    assert messages[2].startswith("error: packet 4: missing_end at offset ")


def test_encode_writes_a_pcap(ctl, tmp_path):
    pcap = tmp_path / "out.pcap"
    status, _out, _err = ctl(["encode", "--pcap", str(pcap), json.dumps({"type": "purge_reply"})])
    assert status == 0
    status, out, _err = ctl(["decode", str(pcap)])
    assert status == 0 and lines(out)[0]["type"] == "purge_reply"


# --- the parser --------------------------------------------------------------------------


def test_subcommand_table_is_open_for_more(ctl, monkeypatch):
    seen = {}

    def add_arguments(p):
        p.add_argument("what")

    def run_show(args):
        seen["what"] = args.what
        return 3

    table = dict(dmvpnctl.SUBCOMMANDS)
    table["show"] = dmvpnctl.Subcommand(add_arguments, run_show, "show daemon state")
    monkeypatch.setattr(dmvpnctl, "SUBCOMMANDS", table)
    assert ctl(["show", "cache"])[0] == 3
    assert seen == {"what": "cache"}


def test_usage_errors_exit_2(ctl):
    with pytest.raises(SystemExit) as info:
        dmvpnctl.main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        dmvpnctl.main(["frobnicate"])
    assert info.value.code == 2


# --- the console script ------------------------------------------------------------------


def script(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    assert DMVPNCTL.is_file(), f"{DMVPNCTL} missing: pip install -e dmvpn_runtime"
    return subprocess.run(
        [str(DMVPNCTL), *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def test_console_script_hex_stdin_and_pcap(tmp_path):
    r = script("decode", REG.hex())
    assert r.returncode == 0 and json.loads(r.stdout)["type"] == "registration_request"
    r = script("decode", stdin=(TI.hex() + "\n").encode())
    assert r.returncode == 0 and json.loads(r.stdout)["traffic_code"] == 0
    path = write(tmp_path / "v6.pcap", [ipv6(gre(REG))])
    r = script("decode", path)
    assert r.returncode == 0 and json.loads(r.stdout)["src_nbma"] == "198.51.100.2"
    r = script("encode", stdin=r.stdout)
    assert r.returncode == 0 and r.stdout.decode().strip() == REG.hex()


def test_console_script_bad_packet_exit_status():
    r = script("decode", BAD.hex(), REG.hex())
    assert r.returncode == 1
    assert r.stderr.decode().startswith("error: packet 1: bad_checksum at offset 12:")
    assert len(r.stdout.splitlines()) == 1


def test_console_script_help_lists_subcommands():
    r = script("--help")
    assert r.returncode == 0
    assert b"decode" in r.stdout and b"encode" in r.stdout


def test_decode_dash_reads_stdin(ctl, tmp_path):
    status, out, _err = ctl(["decode", "-"], REG.hex() + "\n")
    assert status == 0 and lines(out)[0]["request_id"] == 1
    path = write(tmp_path / "x.pcap", [gre_ipv4(TI)])
    status, out, _err = ctl(["decode", "-"], Path(path).read_bytes())
    assert status == 0 and lines(out)[0]["type"] == "traffic_indication"


def test_daemon_subcommands_are_registered(ctl, tmp_path):
    assert {"decode", "encode", "show", "clear"} <= set(dmvpnctl.SUBCOMMANDS)
    status, _out, err = ctl(["show", "nhs", "-s", str(tmp_path / "none.sock")])
    assert status == 3 and err.startswith("error: no dmvpnd answers on ")
