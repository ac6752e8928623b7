"""Thin wrappers over the system tools the lab uses: ip, nsenter, unshare, mount, nft.

Everything here acts on a name or path it is given; nothing here chooses what to touch.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import CommandError

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


class CommandLog:
    """Appends every command the lab runs (and failures) to a log file, if one is set."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path

    def write(self, line: str) -> None:
        if self.path is None:
            return
        try:
            with self.path.open("a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        except OSError:
            pass


NULL_LOG = CommandLog()


def run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    log: CommandLog = NULL_LOG,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    log.write("$ " + " ".join(argv) + (" <<EOF\n" + input + "EOF" if input else ""))
    proc = subprocess.run(
        list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        log.write(f"  exit {proc.returncode}: {proc.stderr.strip()}")
        if check:
            raise CommandError(argv, proc.returncode, proc.stderr, input or "")
    return proc


# --------------------------------------------------------------------------- namespaces


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def list_netns() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def netns_exists(name: str) -> bool:
    return netns_path(name).exists()


def netns_pids(name: str) -> list[int]:
    if not netns_exists(name):
        return []
    proc = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def ip_batch(netns: str | None, commands: Iterable[str], log: CommandLog = NULL_LOG) -> None:
    text = "".join(c + "\n" for c in commands)
    if not text:
        return
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    run(argv, input=text, log=log)


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    return ["nsenter", f"--net={netns_path(netns)}", "--", *argv]


def sysctl(netns: str, settings: dict[str, str | int], log: CommandLog = NULL_LOG) -> None:
    args = [f"{k}={v}" for k, v in settings.items()]
    run(in_netns(netns, ["sysctl", "-q", "-w", *args]), log=log)


# --------------------------------------------------------------------------- mounts


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount in this process's mount namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _sep, right = line.partition(" - ")
            fields = left.split()
            out.append((_unescape(fields[4]), right.split()[0] if right else ""))
    return out


def mounts_under(directory: Path) -> list[str]:
    prefix = str(directory).rstrip("/")
    found = [m for m, _kind in mounts() if m == prefix or m.startswith(prefix + "/")]
    return sorted(set(found), key=lambda m: (-m.count("/"), m))


def is_mount_point(path: Path) -> bool:
    return str(path) in {m for m, _kind in mounts()}


def umount(path: str | Path) -> int:
    """Unmount; fall back to a lazy unmount. Returns 0 or the errno of the last attempt."""
    raw = os.fsencode(str(path))
    if _libc.umount2(raw, 0) == 0:
        return 0
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return err
    if _libc.umount2(raw, MNT_DETACH) == 0:
        return 0
    return ctypes.get_errno()


def make_private_bind(path: Path, log: CommandLog = NULL_LOG) -> None:
    """``mount --bind P P; mount --make-private P`` (once), so ``unshare --mount=P/x`` works."""
    if not is_mount_point(path):
        run(["mount", "--bind", str(path), str(path)], log=log)
    run(["mount", "--make-private", str(path)], log=log)


# --------------------------------------------------------------------------- processes


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def pid_in_netns(pid: int, netns: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(netns_path(netns)).st_ino
    except OSError:
        return False


def _reap(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def kill_pids(pids: Iterable[int], grace: float = 2.0) -> list[int]:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the pids signalled."""
    pids = [p for p in set(pids) if p != os.getpid()]
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while True:
        _reap(signalled)
        left = [p for p in signalled if pid_alive(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while left and time.monotonic() < deadline:
        _reap(left)
        left = [p for p in left if pid_alive(p)]
        time.sleep(0.01)
    return signalled
