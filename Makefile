# flexmesh.dmvpn — developer entry points. `make help` lists them.
#
# Every target that needs tools runs scripts/bootstrap.sh first; it is idempotent and
# quick when nothing changed.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

TOP     := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
VENV    ?= $(TOP)/.venv
PY      := $(VENV)/bin/python
# The shared NHRP test vectors; CI has shared/ as a sibling of the clone.
VECTORS ?= $(abspath $(TOP)/../shared/nhrp-vectors)
PYTEST_ARGS ?=

# Set by `make test` for its sub-makes so bootstrap runs once per `make test`.
BOOTSTRAPPED ?=

.PHONY: help bootstrap demo demo-clean demo-codec lint unit unit-native native native-lib sanity test fuzz-long bench bench-engine test-kernel clean distclean

help:
	@echo 'flexmesh.dmvpn make targets:'
	@echo '  demo         bootstrap, then a DMVPN mesh in namespaces, Phase 3 step by step (stays up)'
	@echo '  demo-clean   take the demo mesh down'
	@echo '  demo-codec   decode the shared NHRP vectors readably'
	@echo '  test         bootstrap, then lint + unit + unit-native + sanity (what .ci/run runs)'
	@echo '  bootstrap    apt packages, .venv, dmvpn_runtime (idempotent)'
	@echo '  lint         ruff check + ruff format --check + mypy (the NHRP core)'
	@echo '  unit         pytest dmvpn_runtime/tests -m "not slow"'
	@echo '  unit-native  the protocol core compiled (out of tree), and its tests run against it'
	@echo '  native       compile the protocol core with mypyc, in place (optional; faster)'
	@echo '  sanity       ansible-test sanity, offline, no docker (scripts/sanity.sh)'
	@echo '  fuzz-long    the long hypothesis fuzz run of the codec'
	@echo '  bench        codec benchmark (JSON)'
	@echo '  bench-engine engine benchmark, 10,000 spokes, on the compiled core (JSON, --check)'
	@echo '  test-kernel  tests on a stock Debian kernel under QEMU'
	@echo '  clean        remove caches and build output (keeps .venv); distclean also .venv'
	@echo 'variables: VECTORS=$(VECTORS)  PYTEST_ARGS=...'

bootstrap:
ifeq ($(BOOTSTRAPPED),)
	@bash $(TOP)/scripts/bootstrap.sh
endif

# The mesh: the default lab (2 hubs, 3 spokes, one behind NAT) with Phase 3 shown
# step by step; it stays up (make demo-clean takes it down).
demo: bootstrap
	$(PY) -m dmvpn_runtime.lab.demo --name demo --replace

demo-clean: bootstrap
	$(VENV)/bin/dmvpn-lab down --name demo

# The codec alone: the shared NHRP vectors, decoded readably.
demo-codec: bootstrap
	@test -d "$(VECTORS)" || { echo "demo: vectors not found at $(VECTORS) (set VECTORS=DIR)" >&2; exit 1; }
	@echo '== $(VECTORS)/synthetic_nhrp_frr_style.pcap'
	$(VENV)/bin/dmvpnctl decode --pretty $(VECTORS)/synthetic_nhrp_frr_style.pcap
	@echo '== $(VECTORS)/vectors.hex.txt'
	$(VENV)/bin/dmvpnctl decode --pretty --vectors $(VECTORS)/vectors.hex.txt

lint: bootstrap
	cd $(TOP) && $(VENV)/bin/ruff check dmvpn_runtime plugins tests
	cd $(TOP) && $(VENV)/bin/ruff format --check dmvpn_runtime plugins tests
	cd $(TOP)/dmvpn_runtime && $(VENV)/bin/mypy

# pytest's exit status is passed through as is: 5 ("no tests collected") fails too.
unit: bootstrap
	cd $(TOP) && $(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

# The protocol core (codec and engine) compiled with mypyc: dmvpn_runtime/setup.py,
# dmvpn_runtime.native. `native` builds in place, where Python finds the compiled modules
# before the source (`make clean` removes them); `unit-native` builds into build/native
# and runs the core's tests against that build (and one mesh of daemons), requiring every
# core module compiled.
NATIVE_BUILD := $(TOP)/build/native
NATIVE_TESTS := dmvpn_runtime/tests/unit dmvpn_runtime/tests/simulation dmvpn_runtime/tests/conformance
# and one mesh of real dmvpnd daemons in namespaces, which inherit PYTHONPATH: Phase 3 end
# to end, checking that each daemon reports the compiled core
NATIVE_MESH_TEST := dmvpn_runtime/tests/integration/mesh/test_phase3.py::test_first_packets_cross_the_hub_then_a_shortcut_takes_over

native: bootstrap
	cd $(TOP)/dmvpn_runtime && DMVPN_NATIVE=1 $(PY) setup.py -q build_ext --inplace
	cd $(TOP)/dmvpn_runtime && $(PY) -m dmvpn_runtime.native | tail -1

# The compiled core built afresh into build/native/lib, every core module required.
native-lib: bootstrap
	rm -rf $(NATIVE_BUILD)
	cd $(TOP)/dmvpn_runtime && DMVPN_NATIVE=1 $(PY) setup.py -q build \
	  --build-base $(NATIVE_BUILD)/tmp --build-lib $(NATIVE_BUILD)/lib
	cd $(TOP) && PYTHONPATH=$(NATIVE_BUILD)/lib $(PY) -m dmvpn_runtime.native --require \
	  > $(NATIVE_BUILD)/native.txt || { cat $(NATIVE_BUILD)/native.txt; exit 1; }
	tail -1 $(NATIVE_BUILD)/native.txt

unit-native: native-lib
	cd $(TOP) && PYTHONPATH=$(NATIVE_BUILD)/lib $(PY) -m pytest -m 'not slow' $(NATIVE_TESTS) $(PYTEST_ARGS)
	cd $(TOP) && PYTHONPATH=$(NATIVE_BUILD)/lib $(PY) -m pytest $(NATIVE_MESH_TEST) $(PYTEST_ARGS)

sanity: bootstrap
	bash $(TOP)/scripts/sanity.sh

# Runs every step even when one fails, prints a summary, fails if any step failed.
test: bootstrap
	@failed=0; summary=''; \
	for step in lint unit unit-native sanity; do \
	  echo "==== make $$step"; start=$$(date +%s); \
	  if $(MAKE) --no-print-directory -C $(TOP) $$step BOOTSTRAPPED=1; then res=PASS; else res=FAIL; failed=1; fi; \
	  summary+=$$(printf '  %-7s %-16s %4ss' "$$step" "$$res" "$$(( $$(date +%s) - start ))")$$'\n'; \
	done; \
	printf '==== make test summary\n%s' "$$summary"; \
	if [ $$failed -ne 0 ]; then echo '==== make test: FAILED'; exit 1; fi; \
	echo '==== make test: all passed'

fuzz-long: bootstrap
	cd $(TOP) && $(PY) -m pytest dmvpn_runtime/tests/conformance/test_fuzz.py \
	  --hypothesis-profile=long --hypothesis-show-statistics --timeout=0 $(PYTEST_ARGS)

bench: bootstrap
	cd $(TOP) && $(PY) -m dmvpn_runtime.bench codec --json

# The engine benchmark of issue 3 on the compiled core (docs/benchmarks.md, engine): five
# runs, medians judged against the targets.
bench-engine: native-lib
	cd $(TOP) && PYTHONPATH=$(NATIVE_BUILD)/lib $(PY) -m dmvpn_runtime.bench engine \
	  --spokes 10000 --repeat 5 --check --json

test-kernel:
	@test -f $(TOP)/dmvpn_runtime/tests/vm/run.sh || { echo 'no kernel tests yet (dmvpn_runtime/tests/vm/run.sh is missing)' >&2; exit 1; }
	bash $(TOP)/scripts/bootstrap.sh kernel
	PATH=$(VENV)/bin:$$PATH bash $(TOP)/dmvpn_runtime/tests/vm/run.sh

clean:
	rm -rf $(TOP)/build $(TOP)/tests/output $(TOP)/.pytest_cache $(TOP)/.ruff_cache $(TOP)/dmvpn_runtime/.mypy_cache \
	  $(TOP)/.hypothesis $(TOP)/dmvpn_runtime/build $(TOP)/dmvpn_runtime/dist \
	  $(TOP)/flexmesh-dmvpn-*.tar.gz
	rm -rf "$${XDG_CACHE_HOME:-$$HOME/.cache}/flexmesh-dmvpn"
	find $(TOP) -path $(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find $(TOP)/dmvpn_runtime/src -name '*.so' -delete  # make native's compiled core

distclean: clean
	rm -rf $(VENV)
