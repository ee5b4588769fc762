# AIS: every set-up step the project needs lives here (CI runs `make test` on a
# fresh machine). Targets are idempotent and incremental via stamp files.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build
REPO := $(BUILD)/repo
DEBS := rpm python3-rpm createrepo-c busybox-static e2fsprogs zstd udpcast \
        shellcheck iproute2 util-linux sqlite3 lz4 libfuse3-3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all setup debs venv packages demo test test-unit test-integration \
        bench-planner bench-cache bench-stream bench-install clean

all: test

setup: venv packages

# Debian packages: installed only when one is missing, so a warm machine skips apt.
debs: $(BUILD)/.debs
$(BUILD)/.debs: Makefile
	@mkdir -p $(BUILD)
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	@touch $@

# The venv uses a 3.11 interpreter: the `rpm` shim loads Debian's 3.11 bindings.
venv: $(VENV)/.done
$(VENV)/.done: pyproject.toml $(BUILD)/.debs
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "need Python 3.11 (Debian python3-rpm is built for it); set PYTHON=" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -c 'import rpm, pulp, highspy, lxml, zstandard, networkx' 
	@touch $@

# The demo RPM repository, built by rpmbuild + createrepo_c (incremental).
packages: venv
	$(PY) -m ais.repo.build --specs packages --out $(REPO)

# The whole story: validate, calibrate, plan, rebuild, serve, reinstall two hosts.
demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest -q tests/unit
	$(PY) -m pytest -q tests/integration

test-unit: setup
	$(PY) -m pytest -q tests/unit

test-integration: setup
	$(PY) -m pytest -q tests/integration

# The planner's corpus is Debian's own package metadata (the apt lists).
bench-planner: setup
	@ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -q
	$(PY) bench/planner.py

bench-cache: setup
	$(PY) bench/cache.py

bench-stream: setup
	$(PY) bench/stream.py

bench-install: setup
	$(PY) bench/install.py --scale 8

clean:
	rm -rf $(BUILD) $(VENV) .pytest_cache
