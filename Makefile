# AIS: every set-up step the project needs lives here (CI runs `make test` on a
# fresh machine). Targets are idempotent and incremental via stamp files.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build
REPO := $(BUILD)/repo
DEBS := rpm python3-rpm createrepo-c gpg gpg-agent gpgconf busybox-static e2fsprogs zstd udpcast \
        shellcheck iproute2 util-linux sqlite3 lz4 libfuse3-3 qemu-system-x86 \
        dnsmasq-base extlinux chromium chromium-driver
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all setup debs venv packages demo test test-unit test-integration lock test-latest \
        bench-planner bench-cache bench-stream bench-install bench-startup bench-boot bench-fanout bench-updates bench-console bench-tls clean \
        real-site demo-real apt-lists

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
	@# `ais bootenv build` (tests/integration/test_boot.py) and aislab.demo_kernel (make packages) ask apt's
	@# lists for their packages (the kernel .deb, downloaded once into build/test-bootenv/bootenv/debs)
	@ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -q
	@touch $@

# The venv uses a 3.11 interpreter: the `rpm` shim loads Debian's 3.11 bindings.
# Python packages come from requirements.lock only (exact versions, sha256 checked),
# so a fresh machine gets what CI tested; `make lock` refreshes the lock.
LOCK := requirements.lock
PIP_TOOLS := pip-tools==7.6.2
venv: $(VENV)/.done
$(VENV)/.done: pyproject.toml $(LOCK) $(BUILD)/.debs
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "need Python 3.11 (Debian python3-rpm is built for it); set PYTHON=" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -c 'import rpm, pulp, highspy, lxml, zstandard, networkx'
	@touch $@

# Re-resolve pyproject.toml's ranges to the newest versions and write the lock.
lock:
	$(PYTHON) -m venv $(BUILD)/lock-tools
	$(BUILD)/lock-tools/bin/pip install -q $(PIP_TOOLS)
	$(BUILD)/lock-tools/bin/pip-compile -q --generate-hashes --allow-unsafe --extra test --all-build-deps \
	  --strip-extras --no-emit-index-url --no-emit-find-links --upgrade -o $(LOCK) pyproject.toml

# Not in CI: every test against the newest versions pyproject.toml allows, in a
# venv of its own, to see the next breaking release before a fresh machine does.
test-latest: packages
	rm -rf $(BUILD)/venv-latest
	$(PYTHON) -m venv $(BUILD)/venv-latest
	$(BUILD)/venv-latest/bin/pip install -q --upgrade pip setuptools
	$(BUILD)/venv-latest/bin/pip install -q --upgrade --upgrade-strategy eager -e '.[test]'
	$(BUILD)/venv-latest/bin/pip freeze --exclude-editable
	$(BUILD)/venv-latest/bin/python -m pytest -q tests/unit tests/aislab
	$(BUILD)/venv-latest/bin/python -m pytest -q tests/integration

# The demo RPM repository, built by rpmbuild + createrepo_c (incremental). Its kernel package
# ships Debian's kernel and a small initramfs (aislab.demo_kernel; incremental too); the .deb
# goes where the tests' `ais bootenv build --cache build/test-bootenv` keeps it, so it is fetched once.
DEMO_KERNEL := $(BUILD)/demo-kernel
packages: venv
	$(PY) -m aislab.demo_kernel --out $(DEMO_KERNEL) --debs $(BUILD)/test-bootenv/bootenv/debs
	$(PY) -m aislab.demo_repo --specs packages --out $(REPO) --kernel-dir $(DEMO_KERNEL)

# The whole story: validate, calibrate, plan, rebuild, serve, reinstall two hosts.
demo: setup
	$(PY) scripts/demo.py

# The real site: RPMs made from Debian bookworm's own packages (aislab/debsite): the .debs are
# fetched with apt-get download into build/debs (cached, never committed), converted
# incrementally into build/real-repo, and descriptors-real/scd/ is written from the apt lists.
REAL_REPO := $(BUILD)/real-repo
real-site: setup apt-lists
	$(PY) -m aislab.debsite --out $(REAL_REPO) --debs $(BUILD)/debs --descriptors descriptors-real

# The whole story on the real site: plan, rebuild, serve, reinstall two hosts, check them.
demo-real: real-site
	$(PY) scripts/demo_real.py

# The real site's integration test reads the apt lists (tests/integration/test_real_site.py).
apt-lists:
	@ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -q

test: setup apt-lists
	$(PY) -m pytest -q tests/unit tests/aislab
	$(PY) -m pytest -q --durations=15 tests/integration

# The pure tests only (no rpm, no root): seconds, for the edit-test loop.
test-unit: venv
	$(PY) -m pytest -q tests/unit -m "not rpm and not root"

test-integration: setup apt-lists
	$(PY) -m pytest -q --durations=15 tests/integration

# SITE=real runs a benchmark on the real site (make real-site) instead of the demo.
SITE ?= demo
REAL_DEP := $(if $(filter real,$(SITE)),real-site)

# The planner's corpus is Debian's own package metadata (the apt lists).
bench-planner: setup $(REAL_DEP)
	@ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -q
	$(PY) bench/planner.py $(if $(REAL_DEP),--site real)

bench-cache: setup $(REAL_DEP)
	$(PY) bench/cache.py $(if $(REAL_DEP),--site real)

bench-stream: setup
	$(PY) bench/stream.py

bench-install: setup $(REAL_DEP)
	$(PY) bench/install.py $(if $(REAL_DEP),--site real,--scale 8)

# Many clients at once (issue 13): N = 1, 4, 8, 16 clients in namespaces, the server's link at
# 100 Mbit/s; unicast, multicast, BitTorrent, chain, udpcast; on the real site's base image
# (make real-site). FANOUT_IMAGE=tree sends an ext4 of /usr/share instead (no real site needed);
# ARGS="--clients 1,4" and the like go to bench/fanout.py.
FANOUT_IMAGE ?= real
bench-fanout: setup $(if $(filter real,$(FANOUT_IMAGE)),real-site)
	$(PY) bench/fanout.py --image $(FANOUT_IMAGE) $(ARGS)

# Keeping hosts current (issue 14): 20 agents in namespaces, Clumpt's figures beside (docs/updates.md).
bench-updates: setup
	$(PY) bench/updates.py $(ARGS)

# The web console on a large site (issue 15): 10,000 hosts and 100,000 installs, each page (HTML and
# JSON) timed against 1 s (docs/console.md); ARGS="--hosts 2000 --runs 3" or "--json" go to bench/console.py.
bench-console: setup
	$(PY) bench/console.py $(ARGS)

# What TLS costs (docs/server.md, "What TLS costs"): plain HTTP vs HTTPS, run by run, server and client
# in network namespaces, unshaped and at 1 Gbit/s; ARGS="--runs 5" and the like go to bench/tls.py.
bench-tls: setup
	$(PY) bench/tls.py $(ARGS)

bench-startup: setup
	$(PY) bench/startup.py

# Boot to boot under QEMU (TCG): packages only, full image, AIS; kexec vs a firmware stand-in (RUNS=N).
bench-boot: setup
	$(PY) bench/boot.py $(if $(RUNS),--runs $(RUNS))

clean:
	rm -rf $(BUILD) $(VENV) .pytest_cache
