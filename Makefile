# leakharness.  The README's two entry points are `make report` (the catalog, report under
# reports/latest) and `make test`; both install what they need first and are safe to run again.
# `make help` lists every target.
#
# Installing happens in two levels, each remembered by a stamp file in .venv:
#   .venv/.installed-main  system packages and the venv for running leakharness  (report, run, nightly)
#   .venv/.installed-test  the above plus the test packages and the [test] extras  (test, bench, docker-test)
# A stamp is remade only when pyproject.toml or the install script is newer than it, so a second
# `make report` or `make test` installs nothing; `make test` after `make report` finds no test
# stamp and adds the test packages.  The test level writes both stamps (it installs a superset).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MAIN_STAMP := $(VENV)/.installed-main
TEST_STAMP := $(VENV)/.installed-test
INSTALL_INPUTS := pyproject.toml scripts/install-system-packages.sh
# Extra arguments for `make run`, e.g. ARGS="--pattern ssl_error_path --tool asan".
ARGS ?=
IMAGE ?= leakharness

.DEFAULT_GOAL := help
.PHONY: help setup test run report nightly bench docker docker-test clean knowledge

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# One recipe for both levels: the system packages (with --test or not), the venv, the package
# (editable, so a checkout's edits take effect at once) with or without its [test] extras.
define install
	./scripts/install-system-packages.sh $(1)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.$(2)'
endef

$(MAIN_STAMP): $(INSTALL_INPUTS)
	$(call install,,)
	touch $@

$(TEST_STAMP): $(INSTALL_INPUTS)
	$(call install,--test,[test])
	touch $@ $(MAIN_STAMP)

setup: $(TEST_STAMP) ## install everything: system packages, .venv, test packages
	@echo "ready: $(BIN)/leakharness"

test: $(TEST_STAMP) ## run the test suite (pytest -n 2), as CI does
	$(BIN)/python -m pytest -n 2

run: $(MAIN_STAMP) ## run the catalog under the checkers; ARGS="--pattern ID --tool asan" narrows it
	$(BIN)/leakharness run $(ARGS)

report: $(MAIN_STAMP) ## run the whole catalog and write the report to reports/latest/index.html
	$(BIN)/leakharness run --out reports/latest

knowledge: $(MAIN_STAMP) ## run the catalog and learn harness/data/knowledge.json from it (after adding or editing a pattern)
	$(BIN)/leakharness run --no-html --out reports/knowledge-run
	$(BIN)/leakharness knowledge reports/knowledge-run --out harness/data/knowledge.json

nightly: $(MAIN_STAMP) ## the nightly run, kept with its history under reports/nightly
	$(BIN)/leakharness nightly --history reports/nightly

bench: $(TEST_STAMP) ## the benchmarks (bench/run_all.py; bench/README.md has the numbers)
	$(BIN)/python bench/run_all.py

docker: ## build the container image (IMAGE=leakharness; podman or docker; docs/container.md)
	./scripts/build-image.sh $(IMAGE)

docker-test: $(TEST_STAMP) ## build the image and test it (tests/test_docker.py)
	$(BIN)/python -m pytest tests/test_docker.py -v

clean: ## remove .venv, build output, reports/latest and reports/check (not ~/.cache/leakharness)
	rm -rf $(VENV) .cache build dist *.egg-info reports/latest reports/check
