# swimlib developer entry points. `make test` is self-contained: it builds its
# own virtual environment and installs what the tests need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo sim-demo lab lab-add lab-stop lab-kill lab-down test lint typecheck unit bench system-deps clean

# The checkout is installed as a plain path (.pth, setuptools' "compat" mode),
# as a regular install behaves: the default editable mode adds an import hook
# that costs every agent process 11 ms of start-up, which the start-up
# benchmarks would count. Where compat mode is gone, the default is used.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat 2>/dev/null \
		|| $(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# lbadapter + HAProxy + three backends on 127.0.0.1 (no root; needs the haproxy binary).
demo: $(STAMP)
	$(PY) scripts/demo.py

sim-demo: $(STAMP)
	$(PY) -m simulations demo

# The Docker lab on network namespaces (Linux, root): ha + s1, s2; docs/lab.md.
# BALANCERS=2: ha1 + ha2 sharing ha's address through keepalived (lbadapter --vip).
lab: $(STAMP)
	$(PY) scripts/lab.py up $(if $(BALANCERS),--balancers $(BALANCERS))

lab-add: $(STAMP)
	$(PY) scripts/lab.py add

lab-stop: $(STAMP)
	$(PY) scripts/lab.py stop $(NODE)

# A node's host dies: cable pulled, every process SIGKILLed (`make lab` brings it back).
lab-kill: $(STAMP)
	$(PY) scripts/lab.py kill $(NODE)

lab-down:
	$(PYTHON) scripts/lab.py down

# Debian's haproxy and serf are used by the integration tests (real peers).
system-deps:
	@sh scripts/install-system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check swimlib simulations benchmarks lbadapter scripts tests
	$(VENV)/bin/mypy

# Bytecode first: tests start hundreds of agent processes, and with
# PYTHONDONTWRITEBYTECODE set each would compile swimlib from source.
test: $(STAMP) system-deps lint
	$(PY) -m compileall -q swimlib lbadapter simulations benchmarks > /dev/null
	$(PY) -m pytest -q -ra --durations=15

bench: $(STAMP)
	$(PY) -m benchmarks sim_scale --json out/sim_scale.json
	$(PY) -m benchmarks codec --json out/codec.json
	$(PY) -m benchmarks vs_serf --json out/vs_serf.json
	$(PY) -m benchmarks lb_churn --json out/lb_churn.json
	$(PY) -m benchmarks.plots out docs/img

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis out
