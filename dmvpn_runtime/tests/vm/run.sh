#!/usr/bin/env bash
# Run the `vm` tests (dmvpn_runtime/tests/vm/) inside a stock Debian kernel under QEMU.
#
#   dmvpn_runtime/tests/vm/run.sh [PYTEST ARGS...]      (make test-kernel calls it)
#
# This machine's kernel has no GRE and no ESP; the newest /boot/vmlinuz-* (Debian's
# linux-image-amd64, installed by `scripts/bootstrap.sh kernel`) has both. virtme-ng
# boots it with the machine's root file system read-only (plus a writable overlay on
# /etc/netns for the lab's hosts files) and one writable directory;
# inner.sh runs pytest there and leaves its exit status, junit XML and log in that
# directory. The console is not parsed (QEMU garbles it with carriage returns): the
# result comes from the files only, and this script exits with pytest's status.
#
# Environment: VNG_TIMEOUT (seconds, default 1200) bounds the whole VM run;
# KDP_KEEP=1 keeps the result directory; KDP_KERNEL picks another kernel image.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
venv=${VENV:-$top/.venv}
export PATH="$venv/bin:$PATH"

say() { printf 'test-kernel: %s\n' "$*"; }
die() {
  printf 'test-kernel: error: %s\n' "$*" >&2
  exit 2
}

command -v vng >/dev/null || die "vng not found in $venv/bin (pip install virtme-ng; make bootstrap)"
command -v virtme-run >/dev/null || die "virtme-run not on PATH (it comes with virtme-ng)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (scripts/bootstrap.sh kernel)"
[ -x "$venv/bin/python" ] || die "no virtualenv at $venv (make bootstrap)"

kernel=${KDP_KERNEL:-}
if [ -z "$kernel" ]; then
  kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
  [ -n "$kernel" ] || die "no /boot/vmlinuz-* (scripts/bootstrap.sh kernel installs linux-image-amd64)"
  kernel=/boot/$kernel
fi
[ -r "$kernel" ] || die "cannot read kernel image $kernel"

# The VM shares /tmp read-only (as an overlay); results go to a --rwdir directory.
# /etc/netns gets a writable overlay (the lab writes each node's hosts file there; the
# host's copy is untouched); /run is a fresh tmpfs in the VM anyway. The mount points
# the lab binds (/etc/dmvpn, /var/lib/dmvpn, ...) must exist on the machine: the root
# file system is read-only in the VM.
out=$(mktemp -d "${TMPDIR:-/tmp}/kdp-vm.XXXXXX")
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  if [ "${KDP_KEEP:-0}" = 1 ]; then
    say "results kept in $out"
  else
    rm -rf "$out"
  fi
}
trap cleanup EXIT

# Pytest arguments travel through a file: the --exec command line stays simple.
printf '%s\n' "$@" >"$out/pytest-args"
timeout=${VNG_TIMEOUT:-1200}
say "booting $kernel (QEMU without KVM, 2 CPUs, 2 GiB); results in $out"
start=$(date +%s)
set +e
timeout --kill-after=30 "$timeout" \
  vng --run "$kernel" --disable-kvm --memory 2G --cpus 2 --rwdir "$out" \
  --overlay-rwdir /etc/netns \
  --exec "sh $top/dmvpn_runtime/tests/vm/inner.sh $out $top $venv" \
  </dev/null >"$out/console.log" 2>&1
vng_status=$?
set -e
wall=$(($(date +%s) - start))

if [ -s "$out/pytest.log" ]; then
  cat "$out/pytest.log"
fi
if [ ! -s "$out/exit-status" ]; then
  say "the VM produced no result (vng exit $vng_status after ${wall}s); console tail:"
  tr -d '\r' <"$out/console.log" | tail -n 40 >&2 || true
  if [ -s "$out/inner.log" ]; then
    say "inner.sh log:"
    tail -n 40 "$out/inner.log" >&2
  fi
  exit 2
fi
status=$(cat "$out/exit-status")
summary=$(cat "$out/summary" 2>/dev/null || echo 'no junit summary')
say "kernel $(cat "$out/uname" 2>/dev/null || echo '?'): $summary"
say "wall time ${wall}s (boot + tests; pytest alone $(cat "$out/pytest-seconds" 2>/dev/null || echo '?')s), pytest exit status $status"
exit "$status"
