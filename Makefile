# The two entry points of the README: `make report` (the catalog, report under reports/) and
# `make test`.  Both install what they need first and are safe to run again.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: all install report test bench clean

all: test

$(STAMP): pyproject.toml scripts/install-system-packages.sh
	./scripts/install-system-packages.sh --test
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(VENV)/bin/leakharness run --out reports/latest

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2

bench: $(STAMP)
	$(VENV)/bin/python bench/run_all.py

clean:
	rm -rf $(VENV) .cache build reports/latest
