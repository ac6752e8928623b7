#!/usr/bin/env bash
# Run `ansible-test sanity` on the collection, offline and without docker.
#
#   scripts/sanity.sh [extra ansible-test sanity arguments, e.g. --test pep8]
#
# ansible-test needs the collection at .../ansible_collections/flexmesh/dmvpn/. This
# script copies the repository's files (tracked plus untracked-but-not-ignored, as git
# lists them) to such a tree *outside* the git checkout. A copy inside the checkout (for
# example under build/) does not work: ansible-test walks up from the collection root,
# finds this repository's .git and asks git for the files, and git ignores build/.
#
# ansible-test makes one virtualenv per sanity test (cached in ~/.ansible/test/venv) and
# bootstraps pip in each with a get-pip script it downloads from the internet. The script
# is seeded here with a stand-in that uses the interpreter's own ensurepip.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV:-$top/.venv}
python_version=3.11
workdir=${SANITY_WORKDIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flexmesh-dmvpn/sanity-$(printf '%s' "$top" | sha256sum | cut -c1-12)}
collection=$workdir/ansible_collections/flexmesh/dmvpn

say() { printf 'sanity: %s\n' "$*"; }

[ -x "$venv/bin/ansible-test" ] || {
  echo "sanity: $venv/bin/ansible-test missing; run scripts/bootstrap.sh first" >&2
  exit 1
}
case $workdir/ in
  "$top"/*)
    echo "sanity: SANITY_WORKDIR must be outside the repository ($top)" >&2
    exit 1
    ;;
esac

# 1. The collection tree, rebuilt on every run so deleted files disappear too.
rm -rf "$collection"
mkdir -p "$collection"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # --cached also lists files deleted from the work tree but not yet from the index.
  git -C "$top" ls-files -z --cached --others --exclude-standard |
    (cd "$top" && while IFS= read -r -d '' f; do
      if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
    done) |
    tar -C "$top" --null --no-recursion -T - -cf - | tar -C "$collection" -xf -
else
  tar -C "$top" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./.bootstrap \
    --exclude=./tests/output --exclude='__pycache__' --exclude='*.egg-info' \
    --exclude='*.so' --exclude='.pytest_cache' --exclude='.hypothesis' --exclude='.ruff_cache' --exclude='.mypy_cache' \
    -cf - . | tar -C "$collection" -xf -
fi
say "collection copied to $collection ($(find "$collection" -type f | wc -l) files)"

# 2. The get-pip stand-in, under the name this ansible-test version looks for.
pip_version=$("$venv/bin/python" - "$python_version" <<'EOF'
import sys, types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version=sys.argv[1]))["pip"])
EOF
)
cache=$HOME/.ansible/test/cache
get_pip=$cache/get_pip_${pip_version//./_}.py
marker='# flexmesh.dmvpn offline get-pip stand-in v1'
if ! grep -qxF "$marker" "$get_pip" 2>/dev/null; then
  mkdir -p "$cache"
  cat >"$get_pip.tmp" <<EOF
$marker
"""Offline stand-in for get-pip.py, seeded by scripts/sanity.sh.

ansible-test runs this with pip's options and the packages it wants (pip==X) inside a
fresh virtualenv. Install the interpreter's bundled pip with ensurepip, then try to move
to the requested pip from the configured package index; keep the bundled one if that fails.
"""
import ensurepip
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
wanted = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
if any(not a.startswith("-") for a in wanted):
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *wanted], check=False)
    if result.returncode:
        print("get-pip stand-in: could not install %s, keeping ensurepip's pip" % wanted)
EOF
  mv "$get_pip.tmp" "$get_pip"
  say "seeded $get_pip"
fi

# 3. Run. Results land in $collection/tests/output, which ansible-test does not scan.
cd "$collection"
say "ansible-test sanity --python $python_version --requirements $*"
start=$(date +%s)
rc=0
PATH=$venv/bin:$PATH "$venv/bin/ansible-test" sanity --python "$python_version" --requirements \
  --color no "$@" || rc=$?
say "finished in $(($(date +%s) - start)) s with exit status $rc; results in $collection/tests/output"
exit $rc
