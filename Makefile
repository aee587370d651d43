# The two commands of the README (make failover, make test). Each does the whole set-up first
# (idempotent). Every target runs the project's virtual environment .venv (made by set-up with
# Debian's python3); nothing runs on, or installs into, the system Python.
.PHONY: help failover test setup venv report lint doctor
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST ?= $(PY) -m pytest
RESULTS ?= reports/allure-results
HTML ?= reports/html
SETUP ?= bash scripts/setup.sh

help:
	@echo 'make failover   main job: set-up, the failover suite, its HTML report ($(HTML)/index.html)'
	@echo 'make test       set-up, then every test except the long randomized chaos runs'
	@echo 'make setup      only set-up: Debian packages, $(VENV), report tools, Docker engine, images'
	@echo 'make venv       only $(VENV) (Debian python3 -m venv + pip install -e ".[dev]")'
	@echo 'make report     the HTML report from $(RESULTS) again (python -m harness.report.html)'
	@echo 'make doctor     check the machine, say what is missing (python -m harness doctor)'
	@echo 'make lint       ruff check .'
	@echo 'By hand: . $(VENV)/bin/activate, then pytest -m ... / python -m harness ... (README).'

setup:
	$(SETUP)

venv:
	bash scripts/setup.sh venv

$(PY):
	bash scripts/setup.sh venv

# main job: the failover suite with its Allure results and HTML report. Exit status: the
# suite's if it failed, else the report's (a report that cannot be made fails the job).
failover:
	@echo '[failover] 1/3 set-up (scripts/setup.sh): Debian packages, $(VENV), report tools, Docker engine, images'
	@echo '[failover]     first run ≈ 3-4 min (+ ≈ 2-5 min where Debian packages are still missing), later runs a few seconds'
	@echo '[failover] 2/3 the failover suite on real clusters (pytest -m failover) ≈ 6-7 min'
	@echo '[failover] 3/3 the HTML report (python -m harness.report.html) ≈ 10-30 s'
	$(SETUP)
	@$(PYTEST) -m failover --alluredir=$(RESULTS) --clean-alluredir; tests=$$?; \
	$(PY) -m harness.report.html $(RESULTS) -o $(HTML); report=$$?; \
	if [ $$tests = 0 ]; then echo "[failover] tests: passed"; \
	else echo "[failover] tests: FAILED (pytest exited $$tests; summary above)"; fi; \
	echo "[failover] Allure results: $(RESULTS)"; \
	if [ $$report = 0 ]; then echo "[failover] report: $(HTML)/index.html (open from disk: file://$(CURDIR)/$(HTML)/index.html)"; \
	else echo "[failover] FAILED: the HTML report (harness.report.html exited $$report) — the reason is printed above; the results stay in $(RESULTS); once fixed: make report"; fi; \
	if [ $$tests != 0 ]; then exit $$tests; fi; exit $$report

# every test: unit tests, the roles' integration tests, harness tests, the failover suite
# (the long randomized chaos runs are nightly: tox -e nightly)
test: setup
	$(PYTEST) -m "not chaos and not nightly"

report: $(PY)
	$(PY) -m harness.report.html $(RESULTS) -o $(HTML)

doctor: $(PY)
	$(PY) -m harness doctor

lint: $(PY)
	$(VENV)/bin/ruff check .
