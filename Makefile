# The two commands of the README. Each does the whole set-up first (idempotent).
.PHONY: failover test setup report lint

PYTEST ?= python3 -m pytest
RESULTS ?= reports/allure-results

setup:
	bash scripts/setup.sh

# main job: the failover suite with its Allure results and HTML report
failover: setup
	$(PYTEST) -m failover --alluredir=$(RESULTS) --clean-alluredir; status=$$?; \
	python3 -m harness.report_html $(RESULTS) -o reports/html || true; exit $$status

# every test: unit tests, the roles' integration tests, harness tests, the failover suite
# (the long randomized chaos runs are nightly: tox -e nightly)
test: setup
	$(PYTEST) -m "not chaos and not nightly"

report:
	python3 -m harness.report_html $(RESULTS) -o reports/html

lint:
	ruff check .
