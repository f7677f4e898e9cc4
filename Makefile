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

.PHONY: dev test lint unit integration e2e bench schemas report report-demo clean

$(STAMP): pyproject.toml shared/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(CHECKOV): | $(STAMP)
	test -x $(VENV)/checkov/bin/python || $(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

dev: $(STAMP)
	$(PY) -m devstack

test: lint
	$(PY) -m pytest

lint: $(STAMP) $(CHECKOV)
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

bench: $(STAMP)
	$(PY) bench/run.py

# Every analytics metric over the local stack's lake (.threadline/lake), printed and
# written to .threadline/report.html; FROM=YYYY-MM-DD TO=YYYY-MM-DD narrow the period.
report: $(STAMP)
	$(PY) -m threadline_analytics $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO))

# The same over the demo scenario (docs/analytics.md), in a lake of its own.
report-demo: $(STAMP)
	$(PY) -m threadline_analytics --demo --lake .threadline/demo-lake --html .threadline/demo-report.html

schemas: $(STAMP)
	$(PY) -m threadline.schema_export infra/schemas

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
