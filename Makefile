# Everything a fresh Debian machine needs, installed by `make setup`.
# libcap-dev: python-prctl builds against it. util-linux: unshare, for the
# namespace tests. procps: ps/pkill. iproute2: ip, for looking at network
# namespaces. openssl: the test and VM certificates. The bootable image:
# qemu-system-x86 (TCG), linux-image-amd64 (the kernel and its modules),
# busybox-static (the guest's shell and tools), e2fsprogs (mkfs.ext4 -d), cpio
# (reads the image back in a test), lz4 (the image's compression; zstd to
# compare, bench/compression.py). python3: the system's, for the tests run
# as an unprivileged user (the venv's may live where only root can read).
# The Debian image (make distro, tests/test_debian.py): mmdebstrap builds the
# root from this machine's apt sources; openssh-client logs in to its sshd.
# tini: `vigil run` is tested beside it, same input, same result.
APT_PACKAGES := libcap-dev util-linux procps iproute2 openssl qemu-system-x86 \
	linux-image-amd64 busybox-static e2fsprogs cpio python3 mmdebstrap openssh-client tini lz4 zstd
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test soak run run-host image deb wheel distro run-distro bench bench-quick \
	bench-setup lint check clean

setup: $(VENV)/.installed bytecode

$(VENV)/.installed: pyproject.toml Makefile setup.py vigil/_sys_build.py vigil/_spawn.c
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

# PYTHONDONTWRITEBYTECODE=1 is set on these machines: without compiled
# bytecode every start compiles every module again (start50 178 ms, not 142).
# Run by every `make setup` (so by test, image, bench): only what changed.
.PHONY: bytecode
bytecode: $(VENV)/.installed
	$(PY) -m compileall -q vigil vigilctl >/dev/null

test: setup image distro
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Ten minutes of chaos against the invariants (make test runs one minute).
SOAK_SECONDS ?= 600
soak: setup
	$(PY) -m tests.soak $(SOAK_SECONDS)

# The bootable image (initramfs and ext4 root disk), rebuilt when vigil,
# the units or the builder change (build.py compares a digest of its inputs).
image: setup
	$(PY) initramfs/build.py --out build --if-stale

# vigil for Debian: build/vigil_VERSION_amd64.deb (docs/debian.md), and the
# wheel for pip users (python -m build, in an isolated environment).
deb: setup
	$(PY) packaging/build_deb.py --out build

wheel: setup
	$(PY) -m pip install -q build
	$(PY) -m build --wheel --outdir build .

# A stock Debian bookworm root with the .deb installed: build/debian.ext4,
# rebuilt when the .deb, the builder or the apt sources change (the
# mmdebstrap base is cached in build/ apart from that).
distro: setup image
	$(PY) initramfs/distro.py --out build --if-stale

# Boots it with vigil as PID 1 (INIT=/lib/systemd/systemd for its own
# systemd): on a terminal its serial login, otherwise status and poweroff.
INIT ?= /usr/sbin/vigil
run-distro: setup distro
	$(PY) qemu/run.py --flavour debian --init $(INIT)

# The demo: boots the VM. On a terminal, its console (log in as root; Ctrl-A X
# or `poweroff` leaves); otherwise boot, status from the host, poweroff.
run: setup image
	$(PY) qemu/run.py

# The same demo without a VM: the daemon on units/demo on this machine.
DEMO_SOCK := /tmp/vigil-demo-$(shell id -u)/control.sock
run-host: setup
	@$(VENV)/bin/vigil check units/demo
	@rm -rf $(dir $(DEMO_SOCK)); $(VENV)/bin/vigil --units units/demo --socket $(DEMO_SOCK) & \
	pid=$$!; \
	for i in $$(seq 100); do $(VENV)/bin/vigilctl --socket $(DEMO_SOCK) ping >/dev/null 2>&1 && break; sleep 0.1; done; \
	$(VENV)/bin/vigilctl --socket $(DEMO_SOCK) start app >/dev/null; \
	echo; echo '$$ vigilctl status'; $(VENV)/bin/vigilctl --socket $(DEMO_SOCK) status; \
	echo; echo '$$ vigilctl logs -n 6'; $(VENV)/bin/vigilctl --socket $(DEMO_SOCK) logs -n 6; \
	echo; echo '$$ vigilctl shutdown'; $(VENV)/bin/vigilctl --socket $(DEMO_SOCK) shutdown; \
	wait $$pid

# Side by side with the peers, each as PID 1 of a PID namespace: results in
# bench/results/, the table and chart in docs/benchmarks.md. Installing the
# peers must not start them on this machine: policy-rc.d refuses it.
BENCH_PEERS := supervisor runit s6 tini dumb-init catatonit systemd
bench-setup: setup image
	@missing=$$(for p in $(BENCH_PEERS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing; status=$$?; rm -f /usr/sbin/policy-rc.d; \
		exit $$status; \
	fi
	$(PY) -m pip install -q -e '.[test,bench]' --config-settings editable_mode=compat
	$(PY) -m compileall -q vigil vigilctl

bench: bench-setup
	$(PY) bench/measure.py --runs 5
	$(PY) bench/report.py bench/results/latest.json
	$(PY) bench/logs.py --size 1G --json bench/results/logs.json --markdown

bench-quick: bench-setup
	$(PY) bench/measure.py --quick
	$(PY) bench/report.py bench/results/quick.json

lint: setup
	$(VENV)/bin/ruff check vigil vigilctl tests initramfs qemu bench packaging
	$(VENV)/bin/mypy vigil vigilctl initramfs/build.py initramfs/tree.py initramfs/distro.py qemu/run.py \
		packaging/build_deb.py packaging/convert_debian.py bench/measure.py bench/report.py \
		bench/peers.py bench/debian.py bench/logs.py

clean:
	rm -rf $(VENV) build *.egg-info

# Mutation testing (mutmut) of the engine's pure modules, vigil/engine/states.py,
# vigil/model/graph.py and vigil/engine/manager.py, against their fast process-free tests:
# ~6 minutes on 2 cores, not part of `make test`. Every surviving mutant must be killed by a test or
# listed as equivalent in tests/mutation_gate.py (docs/testing.md).
.PHONY: mutate
mutate: setup
	$(PY) -m pip install -q -e '.[test,mutate]' --config-settings editable_mode=compat
	rm -rf mutants && mkdir -p build
	timeout 1800 $(VENV)/bin/mutmut run --max-children 2 > build/mutate.log 2>&1 || \
		{ tail -c 3000 build/mutate.log; exit 1; }
	$(PY) tests/mutation_gate.py
