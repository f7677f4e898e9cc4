# Two commands matter: `make dev` (local stack) and `make test` (the suite).
# Both build .venv on first use; only python3 (3.11+) and make are assumed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# checkov pins older boto3/botocore/networkx than the project uses, so it lives in
# its own virtualenv inside .venv (about 30 s and 290 MB, once).
CHECKOV_VERSION := 3.3.30
CHECKOV := $(VENV)/checkov/bin/checkov

.PHONY: dev test lint unit integration e2e bench soak fuzz schemas report report-demo clean lock lock-check layer deploy

# The Lambda layer installs shared/requirements.lock with --no-deps (shared/Makefile),
# so these never ship. The Lambda Python runtime has boto3 and its dependencies; twilio's
# asyncio client (aiohttp and its family) and access-token JWTs (PyJWT) are never
# imported by threadline (bench/run.py checks the handlers import without them).
LAYER_NOT_SHIPPED := boto3 botocore s3transfer jmespath python-dateutil six \
	aiohttp aiohttp-retry aiohappyeyeballs aiosignal attrs frozenlist multidict propcache \
	yarl pyjwt
LAYER_LOCK := shared/requirements.lock
LAYER_DIR  := .aws-sam/layer
# The lock records a digest of what it was compiled from; `make lock-check` compares.
LOCK_INPUT_SHA = $(shell { cat shared/requirements.txt; echo $(LAYER_NOT_SHIPPED); } | sha256sum | cut -c1-64)

# pip's output goes to $(VENV)/install.log, shown only when a step fails.
INSTALL_LOG := $(VENV)/install.log
$(STAMP): pyproject.toml shared/requirements.txt
	@test -x $(PY) || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> installing dependencies into $(VENV) (about 2 minutes; log: $(INSTALL_LOG))"
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install -e '.[dev]'; } \
	    > $(INSTALL_LOG) 2>&1 || { tail -n 40 $(INSTALL_LOG); echo "==> install failed; full log: $(INSTALL_LOG)"; exit 1; }
	@touch $@
	@echo "==> dependencies installed"

$(CHECKOV): | $(STAMP)
	@echo "==> installing checkov into $(VENV)/checkov (about 30 s; log: $(INSTALL_LOG))"
	@test -x $(VENV)/checkov/bin/python || $(PYTHON) -m venv $(VENV)/checkov
	@$(VENV)/checkov/bin/python -m pip install 'checkov==$(CHECKOV_VERSION)' >> $(INSTALL_LOG) 2>&1 \
	    || { tail -n 40 $(INSTALL_LOG); echo "==> checkov install failed; full log: $(INSTALL_LOG)"; exit 1; }
	@touch $@

dev: $(STAMP)
	@echo "==> starting the local stack"
	@$(PY) -m devstack

test: lint
	$(PY) -m pytest

lint: $(STAMP) $(CHECKOV) lock-check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/cfn-lint template.yaml
	$(CHECKOV) -f template.yaml --config-file .checkov.yaml

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP)
	$(PY) -m pytest tests/integration

e2e: $(STAMP)
	$(PY) -m pytest tests/e2e

# Hostile signed bodies on every webhook route of a fresh local stack (per route:
# tried / 2xx / 4xx / 5xx, peak memory). FUZZ_BODIES per route, 10 000 by default.
FUZZ_BODIES ?= 10000
fuzz: $(STAMP)
	$(PY) -m tests.fuzz.run --bodies $(FUZZ_BODIES)

bench: $(STAMP) $(LAYER_DIR)/.built
	$(PY) bench/run.py

# Every analytics metric over the local stack's lake (.threadline/lake), printed and
# written to .threadline/report.html; FROM=YYYY-MM-DD TO=YYYY-MM-DD narrow the period.
report: $(STAMP)
	$(PY) -m threadline_analytics $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO))

# The same over the demo scenario (docs/analytics.md), in a lake of its own.
report-demo: $(STAMP)
	$(PY) -m threadline_analytics --demo --lake .threadline/demo-lake --html .threadline/demo-report.html

# Exact versions with hashes for the layer (arm64, CPython 3.12), from shared/requirements.txt.
lock: $(STAMP)
	$(VENV)/bin/uv pip compile --quiet shared/requirements.txt --generate-hashes \
	    --python-version 3.12 --python-platform aarch64-manylinux_2_28 --no-header \
	    $(addprefix --no-emit-package ,$(LAYER_NOT_SHIPPED)) -o $(LAYER_LOCK).new
	{ echo "# The Lambda layer, exactly: written by \`make lock\` from shared/requirements.txt."; \
	  echo "# input-sha256: $(LOCK_INPUT_SHA)"; cat $(LAYER_LOCK).new; } > $(LAYER_LOCK)
	rm $(LAYER_LOCK).new

lock-check:
	@grep -qx '# input-sha256: $(LOCK_INPUT_SHA)' $(LAYER_LOCK) || \
	    { echo "$(LAYER_LOCK) is not current with shared/requirements.txt: run make lock"; exit 1; }

# The layer as `sam build` builds it (shared/Makefile), for `make bench` to measure.
layer: $(LAYER_DIR)/.built
$(LAYER_DIR)/.built: $(LAYER_LOCK) shared/Makefile
	rm -rf $(LAYER_DIR)
	$(MAKE) --no-print-directory -C shared build-SharedLayer ARTIFACTS_DIR=$(CURDIR)/$(LAYER_DIR)
	touch $@

# Signed SMS through the local stack from 8 senders: latency per 1000, memory, 5xx.
SOAK_MESSAGES ?= 10000
soak: $(STAMP)
	$(PY) bench/load_local_stack.py --messages $(SOAK_MESSAGES) --senders 8

schemas: $(STAMP)
	$(PY) -m threadline.schema_export infra/schemas

# A convenience: the first deploy of an environment asks for every parameter and
# saves the answers to samconfig.toml (docs/deployment.md). ENV=prod for production.
ENV ?= dev
deploy: lock-check
	sam build --config-env $(ENV)
	sam deploy --guided --config-env $(ENV)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
