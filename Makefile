# Two commands: `make run` (install, then serve the bundled trace) and `make test` (install, then every check).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run replay test install system-deps

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's prometheus (and promtool) for the integration tests; skipped when already present.
system-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus)

# The embedded default: the real loop and servers over the bundled trace, 600 trace seconds a second.
run: $(STAMP)
	$(VENV)/bin/predictive-autoscaler serve --replay --speedup 600

replay: $(STAMP)
	$(VENV)/bin/predictive-autoscaler replay

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q
