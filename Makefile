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
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

run: setup
	$(VENV)/bin/vigil check units

lint: setup
	$(VENV)/bin/ruff check vigil vigilctl tests
	$(VENV)/bin/mypy vigil vigilctl

clean:
	rm -rf $(VENV) build *.egg-info
