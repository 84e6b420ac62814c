# Two entry points for a fresh machine: `make demo` and `make test`.
# Python 3.12 is what AWS Lambda's python3.12 runtime runs, so it is what we test with.
PYTHON ?= $(shell for p in python3.12 $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo "$$p"; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install package clean bench deploy

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: install it (e.g. pyenv install 3.12) or pass PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The demo installs what running needs (the `demo` extra); `make test` adds the test tools.
DEMO_STAMP := $(VENV)/.installed-demo

$(DEMO_STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: install it (e.g. pyenv install 3.12) or pass PYTHON=..."; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[demo]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/mlops demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The AWS deployment in build/cfn (template, app zip, training layer) and build/sizes.json;
# see infra/package.py. Rebuilt when its inputs change; tests/test_package.py runs the result.
PACKAGE_INPUTS := app.py pyproject.toml constraints.txt .chalice/config.json \
	$(shell find shared functions infra -type f -not -path '*/__pycache__/*')

build/.packaged: $(STAMP) $(PACKAGE_INPUTS)
	$(BIN)/python infra/package.py --out build
	touch $@

package: build/.packaged

# `chalice deploy` with the layers from `make package`, published only when their content
# changed and recorded in .chalice/config.json for the stage; see infra/deploy.py.
STAGE ?= dev
deploy: package
	$(BIN)/python -m infra.deploy --stage $(STAGE) --reuse-build

# checkov gets an environment of its own: it pins an older boto3 than the project needs.
# It runs offline (--skip-download, BC_SKIP_MAPPING): nothing is fetched from its vendor.
CHECKOV := .venv-checkov
$(CHECKOV)/.installed: constraints-checkov.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found"; exit 1; }
	$(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/pip install --quiet -r constraints-checkov.txt
	touch $@

# The template as CloudFormation will read it (SAM transform expanded): zero findings from
# cfn-lint, and no failed checkov check (each skip is justified in infra/template.json).
test: lint package $(CHECKOV)/.installed
	$(BIN)/cfn-lint build/cfn/sam.json
	BC_SKIP_MAPPING=TRUE $(CHECKOV)/bin/checkov -f build/cfn/sam.json \
		--framework cloudformation --compact --quiet --skip-download
	$(BIN)/pytest -q

# Benchmarks against references measured in the same run; writes benchmarks/results.json.
# Pass ARGS, e.g. make bench ARGS=--quick or ARGS='--only cold_start_seconds --profile'.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV) .mlops-store build vendor .chalice/deployments
