"""dmvpnctl: the operator's command line.

Subcommands are registered in :data:`SUBCOMMANDS` (name -> add_arguments, run, help).
``decode`` and ``encode`` work offline on NHRP packets; ``show ...`` and ``clear ...``
(``cli/ctl_daemon.py``) talk to a ``dmvpnd`` control socket.

Exit status of decode/encode: 0 when every packet was handled, 1 when any packet (or
input) was bad -- the others are still processed -- and 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from ..capture import CaptureError, NotNhrp, gre_ipv4, is_capture, read_frames, write_pcap
from ..ippacket import ip_header
from ..nhrp.wire import CodecError, ErrorCode, Packet, PacketType, decode, encode
from ..nhrp.wire.jsonform import (
    JsonFormError,
    extension_name,
    flag_names,
    packet_from_json,
    packet_to_json,
)
from . import ctl_daemon


class Subcommand(NamedTuple):
    """One ``dmvpnctl NAME``: fills its parser, then runs with the parsed arguments."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    help: str


# --- shared input handling -------------------------------------------------------------

_HEX_NOISE = re.compile(r"[\s:.\-]")
_CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


@dataclass
class _Item:
    """One packet to decode: its number (for messages) and octets, or why there are none."""

    number: int
    data: bytes | None = None
    error: str | None = None  # "<reason> at offset X: detail" or "<reason>: detail"
    label: str = ""  # for --pretty: where the packet came from
    skip: str | None = None  # not NHRP: noted, not an error


def _parse_hex(text: str) -> bytes:
    text = _HEX_NOISE.sub("", text)
    if text[:2].lower() == "0x":
        text = text[2:]
    return bytes.fromhex(text)


def _stdin_bytes() -> bytes:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return buffer.read()
    return sys.stdin.read().encode("utf-8", "surrogateescape")


def _hex_items(lines: list[str], first: int) -> Iterator[_Item]:
    number = first
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            yield _Item(number, _parse_hex(text), label=f"packet {number}")
        except ValueError as exc:
            yield _Item(number, error=f"invalid_hex: {exc}")
        number += 1


def _capture_items(data: bytes, name: str) -> Iterator[_Item]:
    try:
        frames = read_frames(data)
        for frame in frames:
            if isinstance(frame.error, NotNhrp):
                yield _Item(frame.index, skip=str(frame.error))
            elif frame.error is not None:
                yield _Item(frame.index, error=str(frame.error))
            else:
                where = f"frame {frame.index} of {os.path.basename(name)}"
                if frame.src is not None:
                    where += f", {frame.src} > {frame.dst}"
                if frame.gre_key is not None:
                    where += f", GRE key {frame.gre_key}"
                yield _Item(frame.index, frame.nhrp, label=where)
    except CaptureError as exc:
        yield _Item(0, error=f"{name}: {exc}")


def _vector_items(text: str) -> Iterator[_Item]:
    """The shared vectors format: ``name length hex`` per line."""
    number = 0
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        number += 1
        if len(fields) != 3 or not fields[1].isdigit():
            yield _Item(number, error="invalid_vector: expected 'name length hex'")
            continue
        name, length, hex_text = fields[0], int(fields[1]), fields[2]
        try:
            data = _parse_hex(hex_text)
        except ValueError as exc:
            yield _Item(number, error=f"invalid_hex: {exc} (vector {name})")
            continue
        if len(data) != length:
            yield _Item(
                number,
                error=f"invalid_vector: length {length} but {len(data)} octets (vector {name})",
            )
            continue
        yield _Item(number, data, label=f"vector {name}")


def _read_file(path: str) -> bytes:
    if path == "-":
        return _stdin_bytes()
    with open(path, "rb") as f:
        return f.read()


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


# --- decode ---------------------------------------------------------------------------


def _decode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="HEX|FILE",
        help="NHRP packets in hex, or pcap/pcapng files; - or none: stdin (hex or a capture)",
    )
    p.add_argument(
        "--pcap",
        action="append",
        default=[],
        metavar="FILE",
        help="a pcap or pcapng file ('-' for stdin); may be repeated",
    )
    p.add_argument(
        "--vectors",
        action="append",
        default=[],
        metavar="FILE",
        help="a file of 'name length hex' lines (the shared NHRP vectors format)",
    )
    p.add_argument(
        "--pretty",
        action="store_true",
        help="a readable summary line, then indented JSON, per packet",
    )


def _capture_file(path: str) -> Iterator[_Item]:
    try:
        data = _read_file(path)
    except OSError as exc:
        yield _Item(0, error=f"cannot read {path}: {exc.strerror}")
        return
    if not is_capture(data):
        yield _Item(0, error=f"{path}: not a pcap or pcapng file")
        return
    yield from _capture_items(data, "stdin" if path == "-" else path)


def _decode_items(args: argparse.Namespace) -> Iterator[_Item]:
    number = 0  # hex packets given as arguments are numbered in order
    for arg in args.inputs:
        if arg == "-":
            yield from _stdin_items()
        elif arg.lower().endswith(_CAPTURE_SUFFIXES) or os.path.isfile(arg):
            yield from _capture_file(arg)
        else:
            number += 1
            yield from _hex_items([arg], number)
    for path in args.pcap:
        yield from _capture_file(path)
    for path in args.vectors:
        try:
            text = _read_file(path).decode("utf-8", "replace")
        except OSError as exc:
            yield _Item(0, error=f"cannot read {path}: {exc.strerror}")
            continue
        yield from _vector_items(text)
    if not args.inputs and not args.pcap and not args.vectors:
        yield from _stdin_items()


def _stdin_items() -> Iterator[_Item]:
    """Standard input: a capture file, or hex packets one per line."""
    data = _stdin_bytes()
    if is_capture(data):
        yield from _capture_items(data, "stdin")
    else:
        yield from _hex_items(data.decode("utf-8", "replace").splitlines(), 1)


def _decode_run(args: argparse.Namespace) -> int:
    status = 0
    for item in _decode_items(args):
        if item.skip is not None:
            print(f"note: packet {item.number}: skipped, {item.skip}", file=sys.stderr)
            continue
        if item.error is not None:
            _error(f"packet {item.number}: {item.error}" if item.number else item.error)
            status = 1
            continue
        assert item.data is not None
        try:
            packet = decode(item.data)
        except CodecError as exc:
            _error(f"packet {item.number}: {exc}")
            status = 1
            continue
        obj = packet_to_json(packet)
        if args.pretty:
            size = int.from_bytes(item.data[10:12], "big")
            print(f"{item.label or f'packet {item.number}'}: {summary(packet, size)}")
            print(json.dumps(obj, indent=2))
        else:
            print(json.dumps(obj))
    return status


# --- encode ---------------------------------------------------------------------------


def _encode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="JSON",
        help="packets as JSON objects (default: one object per line on stdin)",
    )
    p.add_argument(
        "--pcap",
        metavar="FILE",
        help="also write the packets to FILE as a pcap (raw IPv4, GRE key 42), e.g. for tshark",
    )


def _encode_run(args: argparse.Namespace) -> int:
    if args.inputs:
        lines = list(args.inputs)
    else:
        lines = _stdin_bytes().decode("utf-8", "replace").splitlines()
    status, number, wire = 0, 0, []
    for line in lines:
        if not line.strip():
            continue
        number += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            _error(f"packet {number}: invalid_json: {exc}")
            status = 1
            continue
        try:
            data = encode(packet_from_json(obj))
        except JsonFormError as exc:
            _error(f"packet {number}: {exc.reason.value}: {exc}")
            status = 1
            continue
        except CodecError as exc:
            _error(f"packet {number}: {exc}")
            status = 1
            continue
        wire.append(data)
        print(data.hex())
    if args.pcap:
        try:
            with open(args.pcap, "wb") as f:
                write_pcap(f, (gre_ipv4(w) for w in wire))
        except OSError as exc:
            _error(f"cannot write {args.pcap}: {exc.strerror}")
            status = 1
    return status


# --- summaries -------------------------------------------------------------------------


def _inner_ip(payload: bytes) -> str:
    """A few words about the start of the data packet a Traffic Indication carries."""
    header = ip_header(payload)
    if header is None:
        return f"{len(payload)} octets"
    src, dst, proto = header
    name = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 58: "ICMPv6"}.get(proto, "")
    return f"{src} > {dst} protocol {proto}{f' ({name})' if name else ''}, {len(payload)} octets"


def summary(packet: Packet, size: int | None = None) -> str:
    """One readable line about a packet."""
    ptype = PacketType(packet.type)
    parts = [ptype.json_name + (f", {size} octets" if size is not None else "")]
    if ptype <= PacketType.PURGE_REPLY:
        flags = ",".join(flag_names(ptype, packet.flags)) or "none"
        parts.append(f"request id {packet.request_id}, flags {flags}")
    parts.append(
        f"src {packet.src_nbma or '-'} ({packet.src_proto or '-'}) dst {packet.dst_proto or '-'}"
    )
    if ptype <= PacketType.PURGE_REPLY:
        cies = "; ".join(
            f"code {c.code} prefix {c.prefix_length} hold {c.holding_time}s"
            + (f" {c.client_nbma or '-'} ({c.client_proto or '-'})" if c.client_proto else "")
            for c in packet.cies
        )
        parts.append(f"{len(packet.cies)} CIE" + (f" [{cies}]" if cies else ""))
    elif ptype == PacketType.ERROR_INDICATION:
        try:
            code = ErrorCode(packet.error_code).name.lower()
        except ValueError:
            code = "unknown"
        parts.append(f"error {packet.error_code} ({code}) at offset {packet.error_offset}")
    else:
        code = "redirect" if packet.traffic_code == 0 else "unknown"
        parts.append(f"traffic code {packet.traffic_code} ({code})")
        parts.append(f"data packet {_inner_ip(bytes(packet.payload))}")
    if packet.extensions:
        parts.append("extensions " + ", ".join(extension_name(e) for e in packet.extensions))
    return "; ".join(parts)


# --- the command -----------------------------------------------------------------------

SUBCOMMANDS: dict[str, Subcommand] = {
    "decode": Subcommand(
        _decode_arguments,
        _decode_run,
        "NHRP packets (hex, pcap, pcapng, vectors) to JSON, one object per line",
    ),
    "encode": Subcommand(
        _encode_arguments, _encode_run, "JSON packets (one object per line) to hex"
    ),
    # The daemon's subcommands (cli/ctl_daemon.py): they talk to a dmvpnd control socket.
    "show": Subcommand(ctl_daemon.add_show, ctl_daemon.run_show, "show a running dmvpnd's state"),
    "clear": Subcommand(
        ctl_daemon.add_clear, ctl_daemon.run_clear, "clear NHRP cache or shortcuts"
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmvpnctl", description="flexmesh.dmvpn control and NHRP packet tool"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_arguments, run, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args._run(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `dmvpnctl decode ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
