#!/usr/bin/env bash
# Prepare this machine for flexmesh.dmvpn development, idempotently.
#
#   scripts/bootstrap.sh           base stage: Debian packages + .venv + dmvpn_runtime
#   scripts/bootstrap.sh kernel    base stage, then the packages for the VM kernel tests
#
# Debian 12, as root (or with password-less sudo). Safe to run again and again: Debian
# packages are installed only when missing, and the virtualenv is rebuilt only when
# requirements/constraints.txt, requirements/dev.txt or dmvpn_runtime/pyproject.toml
# changed since the last successful run. Works without a terminal (CI).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"

stage=${1:-base}
case $stage in
  base | kernel) ;;
  *)
    echo "usage: $0 [base|kernel]" >&2
    exit 2
    ;;
esac

say() { printf 'bootstrap: %s\n' "$*"; }
die() {
  printf 'bootstrap: error: %s\n' "$*" >&2
  exit 1
}

# What the project needs from Debian (see platform-notes).
base_packages=(
  python3-venv           # the virtualenv
  tshark                 # the external oracle for the NHRP codec
  charon-systemd strongswan-swanctl libcharon-extra-plugins
  libstrongswan-extra-plugins strongswan-pki   # IPsec, userspace ESP (kernel-libipsec)
  iproute2 nftables iputils-ping tcpdump       # namespaces, links, filters, probes
  frr                    # reference NHRP/routing implementation for interop tests
  shellcheck             # used by the shellcheck test of ansible-test sanity
  gcc python3-dev        # make native: mypyc compiles the protocol core to C
)
kernel_packages=(
  qemu-system-x86 busybox-static linux-image-amd64   # stock kernel under QEMU (virtme-ng)
)

export DEBIAN_FRONTEND=noninteractive
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n env DEBIAN_FRONTEND=noninteractive "$@"
  else
    die "need root to run: $* (run as root, or configure password-less sudo)"
  fi
}

missing_packages() {
  local p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || printf '%s\n' "$p"
  done
}

apt_updated=0
ensure_packages() {
  local label=$1
  shift
  local missing
  mapfile -t missing < <(missing_packages "$@")
  if [ ${#missing[@]} -eq 0 ]; then
    if [ "$label" = base ]; then
      say "apt packages present, skipping"
    else
      say "apt packages for $label present, skipping"
    fi
    return
  fi
  say "installing ${#missing[@]} missing apt package(s) ($label): ${missing[*]}"
  if [ $apt_updated -eq 0 ]; then
    as_root apt-get update -q
    apt_updated=1
  fi
  # Do not start the packaged daemons (charon, frr) in the root namespace: the project
  # starts its own instances inside network namespaces. Debian's maintainer scripts
  # honour /usr/sbin/policy-rc.d; put one in place only for this install if none exists.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e $policy ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    own_policy=1
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ $own_policy -eq 1 ]; then
    as_root rm -f $policy
    trap - EXIT
  fi
  mapfile -t missing < <(missing_packages "$@")
  [ ${#missing[@]} -eq 0 ] || die "still missing after apt-get install: ${missing[*]}"
}

find_python() {
  if [ -x /usr/bin/python3.11 ]; then
    echo /usr/bin/python3.11
  elif command -v python3.11 >/dev/null 2>&1; then
    command -v python3.11
  else
    die "python3.11 not found (Debian 12: apt-get install python3)"
  fi
}

venv=$top/.venv
stamp=$venv/.bootstrap-stamp
inputs=(requirements/constraints.txt requirements/dev.txt dmvpn_runtime/pyproject.toml)

ensure_venv() {
  local python want have=''
  python=$(find_python)
  want=$({
    "$python" -c 'import sys; print(sys.version)'
    sha256sum "${inputs[@]}"
  } | sha256sum | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    [ -f "$stamp" ] && have=$(cat "$stamp")
  else
    if [ -e "$venv" ]; then
      say "virtualenv at .venv is not a working Python 3.11 one, recreating it"
      rm -rf "$venv"
    fi
    say "creating virtualenv .venv from $python"
    "$python" -m venv "$venv"
  fi
  if [ "$have" = "$want" ]; then
    say "venv up to date, skipping"
    return
  fi
  say "installing Python requirements into .venv (pinned by requirements/constraints.txt)"
  rm -f "$stamp"
  "$venv/bin/python" -m pip install -q -c requirements/constraints.txt \
    -r requirements/dev.txt -e ./dmvpn_runtime
  "$venv/bin/python" -m pip check
  echo "$want" >"$stamp"
  say "venv ready: $("$venv/bin/python" -c 'import ansible, sys; print("Python", sys.version.split()[0] + ", ansible-core", ansible.__version__)')"
}

ensure_packages base "${base_packages[@]}"
ensure_venv
if [ "$stage" = kernel ]; then
  ensure_packages kernel "${kernel_packages[@]}"
  ls /boot/vmlinuz-* >/dev/null 2>&1 || die "no /boot/vmlinuz-* after installing linux-image-amd64"
fi
