# fraud-lambda: every command the README names. Each target creates the virtualenv it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DATA ?=
DATA_FILE ?= data/creditcard.csv
CHROMIUM ?= /usr/bin/chromium
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: venv data demo loop report serve test check-clean nbtest pytest bench lab export clean-venv checkov-venv chromium

venv: $(INSTALLED)

$(INSTALLED): settings.ini setup.py .ci/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade 'pip>=24'
	$(BIN)/python -m pip install -q -c .ci/constraints.txt -e '.[dev,research,aws]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name 'Python 3 (fraud-lambda)' >/dev/null
	touch $@

# checkov (the IaC scan in tests/test_template.py) in a virtualenv of its own: it pins boto3 to an old release
CHECKOV_VENV ?= .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

checkov-venv: $(CHECKOV)

$(CHECKOV): .ci/checkov-constraints.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q -c .ci/checkov-constraints.txt 'checkov==3.3.30'
	touch $@

data: venv
	$(BIN)/fraud-lambda data fetch $(if $(DATA),--path $(DATA),)

report: data
	$(BIN)/fraud-lambda report

# The main job: real data -> retrain (papermill report, bundle, champion/challenger gate) -> local API -> holdout replayed over HTTP.
# retrain exits 0 when it promoted and 1 when it kept the champion; both are fine here.
# The server's output (one JSON line per alert) goes to the run's demo-serve.log; the console gets a short table.
demo: data
	$(BIN)/fraud-lambda retrain --data $(DATA_FILE); rc=$$?; [ $$rc -le 1 ] || exit $$rc
	@run=reports/$$(cat reports/latest); \
	$(BIN)/fraud-lambda replay --serve --concurrency 8 --table --log $$run/demo-serve.log; rc=$$?; \
	echo "report      $$run/retrain.md (the notebooks as HTML beside it)"; \
	echo "bundle      $$run/models/bundle (this run's challenger; the champion is served from the local store)"; \
	echo "log         $$run/demo-serve.log"; exit $$rc

# The fraud team's loop on the real data (after make demo, which promotes a champion): the champion scores the holdout
# through the local API (one decision record each), the frauds come back as chargebacks, and retrain trains from the
# decision log and labels; exit 1 (kept the champion) is a gate decision too.
loop: data
	$(BIN)/python scripts/loop_demo.py --data $(DATA_FILE) $(if $(LOOP_HOME),--home $(LOOP_HOME),); rc=$$?; [ $$rc -le 1 ] || exit $$rc

serve: venv
	$(BIN)/fraud-lambda serve --port 8000

export: venv
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(BIN)/python .ci/nb2readme.py nbs/index.ipynb README.md
	mkdir -p api && $(BIN)/python -c 'from fraud_lambda.decisions import decision_schema_json as s; open("api/decision-record.schema.json", "w").write(s())'
	$(BIN)/python -c 'from fraud_lambda.policy import policy_schema_json as s; open("api/policy.schema.json", "w").write(s())'

# CI fails when export, clean, the README render or the decision-record schema would change a tracked (or add an untracked) file
check-clean: export
	@changed="$$(git diff --name-only -- fraud_lambda nbs README.md api/decision-record.schema.json api/policy.schema.json; git ls-files --others --exclude-standard -- fraud_lambda nbs README.md api/decision-record.schema.json api/policy.schema.json)"; \
	if [ -n "$$changed" ]; then echo "nbdev_export/nbdev_clean/README render changed these files; run 'make export' and commit them:"; echo "$$changed"; git --no-pager diff --stat -- fraud_lambda nbs README.md; exit 1; fi; \
	echo "notebooks exported, clean and README current"

nbtest: venv
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: venv node_modules/.installed checkov-venv $(CHROMIUM)
	CHECKOV=$(CHECKOV) CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest tests/ -q

# Chromium for tests/test_review_browser.py: Debian's package, driven by Playwright (pinned in the dev extra) through
# executable_path, since Playwright cannot download its own browser here; installed only when it is missing
chromium: $(CHROMIUM)

$(CHROMIUM):
	$$([ "$$(id -u)" = 0 ] || echo sudo) apt-get update -qq
	$$([ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

test: check-clean nbtest pytest docs-check

bench: venv
	$(BIN)/fraud-lambda bench

lab: venv
	$(BIN)/jupyter lab nbs/

clean-venv:
	rm -rf $(VENV)

# ---- docs: the nbdev site (Quarto) from the notebooks into _docs/; `make docs-preview` serves it live.
# quarto-cli (the docs extra, pinned) is an sdist that downloads Quarto's release from GitHub when it is built,
# so it installs only where GitHub is reachable. `make docs-check` (run by `make test`) needs no Quarto: it runs
# nbdev's notebook processing (.ci/docs_check.py), which renders every show_doc API entry and fails on an error.
.PHONY: docs docs-preview docs-check

docs: venv
	$(BIN)/python -m pip install -q -c .ci/constraints.txt -e '.[docs]' || { echo "make docs: could not install quarto-cli (it downloads Quarto from GitHub while installing); install Quarto yourself (https://quarto.org) and run '$(BIN)/nbdev_docs'"; exit 1; }
	$(BIN)/nbdev_docs
	@echo "docs site: _docs/index.html (preview with '$(BIN)/nbdev_preview')"

docs-preview: docs
	$(BIN)/nbdev_preview

docs-check: venv
	$(BIN)/python .ci/docs_check.py 2

# ---- deploy (nbs/13_deploy): the Lambda zip, and the target `sam build` runs ----------------------------------
# `sam build` (template.yaml: BuildMethod makefile, ContextPath/WorkingDirectory .) runs `make build-FraudFunction`
# in this directory with ARTIFACTS_DIR set, using the first python3 on PATH (make it a python3.12 with pip).
# For arm64: FRAUD_LAMBDA_ARCH=arm64 sam build --parameter-overrides Architecture=arm64
FRAUD_LAMBDA_ARCH ?= x86_64
SAM_PYTHON ?= python3

.PHONY: package build-FraudFunction

package: venv
	$(BIN)/python -c 'import sys; from fraud_lambda.package import build_package; build_package(sys.argv[1])' $(FRAUD_LAMBDA_ARCH)

build-FraudFunction:
	$(SAM_PYTHON) -c 'import sys; from fraud_lambda.package import stage_package; stage_package(sys.argv[1], arch=sys.argv[2])' "$(ARTIFACTS_DIR)" $(FRAUD_LAMBDA_ARCH)

# ---- the API contract (nbs/12a_postman, tests/test_contract.py) ------------------------------------------------
.PHONY: postman newman
# The Postman collection and environments in api/, generated from the OpenAPI document the API serves
postman: venv
	$(BIN)/python -c 'from fraud_lambda.postman import write_postman; [print(p) for p in write_postman("api")]'

# newman, pinned in package.json / package-lock.json
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

newman: node_modules/.installed
