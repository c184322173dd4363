# Everything a fresh Debian machine needs, installed by `make setup`.
# libcap-dev: python-prctl builds against it. util-linux: unshare, for the
# PID-namespace tests. procps: ps/pkill used by tests that look at processes.
APT_PACKAGES := libcap-dev util-linux procps
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test run lint check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The demo: the daemon on units/demo, its status and output, then a clean
# shutdown. (Once the bootable image exists, this boots the VM instead.)
DEMO_SOCK := /tmp/vigil-demo-$(shell id -u)/control.sock
run: setup
	@$(VENV)/bin/vigil check units/demo
	@rm -rf $(dir $(DEMO_SOCK)); $(VENV)/bin/vigil --units units/demo --socket $(DEMO_SOCK) & \
	pid=$$!; \
	for i in $$(seq 100); do $(VENV)/bin/vigilctl --socket $(DEMO_SOCK) ping >/dev/null 2>&1 && break; sleep 0.1; done; \
	$(VENV)/bin/vigilctl --socket $(DEMO_SOCK) start app >/dev/null; \
	echo; echo '$$ vigilctl status'; $(VENV)/bin/vigilctl --socket $(DEMO_SOCK) status; \
	echo; echo '$$ vigilctl logs -n 6'; $(VENV)/bin/vigilctl --socket $(DEMO_SOCK) logs -n 6; \
	echo; echo '$$ vigilctl shutdown'; $(VENV)/bin/vigilctl --socket $(DEMO_SOCK) shutdown; \
	wait $$pid

lint: setup
	$(VENV)/bin/ruff check vigil vigilctl tests
	$(VENV)/bin/mypy vigil vigilctl

clean:
	rm -rf $(VENV) build *.egg-info
