#!/bin/sh
# Runs inside the VM (see run.sh): load the modules, run pytest -m vm, leave results.
#   inner.sh OUT_DIR REPO_TOP VENV
# The root file system (and so the repository) is read-only here; only OUT_DIR is
# writable, so pytest runs without its cache and Python writes no bytecode.
out=$1
top=$2
venv=$3
exec >"$out/inner.log" 2>&1
echo "inner.sh: $(uname -r), $(nproc) CPUs"
uname -r >"$out/uname"

for module in ip_gre nf_tables nft_log nfnetlink_log bridge veth; do
  modprobe "$module" || echo "inner.sh: modprobe $module failed"
done

export DMVPN_IN_VM=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export PATH="$venv/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export TMPDIR=/tmp HOME=/tmp
cd "$top" || exit 2

set --
while IFS= read -r arg; do
  [ -n "$arg" ] && set -- "$@" "$arg"
done <"$out/pytest-args"

start=$(date +%s)
"$venv/bin/python" -m pytest -m vm -p no:cacheprovider \
  --junitxml="$out/junit.xml" -o junit_family=xunit2 -o junit_suite_name=kernel-vm \
  "$@" dmvpn_runtime/tests/vm/ >"$out/pytest.log" 2>&1
status=$?
echo $(($(date +%s) - start)) >"$out/pytest-seconds"

"$venv/bin/python" - "$out/junit.xml" >"$out/summary" <<'PY' || echo "no junit XML" >"$out/summary"
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
print(f"{passed} passed, {total['failures']} failed, {total['errors']} errors, "
      f"{total['skipped']} skipped of {total['tests']}")
PY
echo "$status" >"$out/exit-status"
sync
echo "inner.sh: pytest exit status $status"
