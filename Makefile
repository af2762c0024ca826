# Quick start: `make demo` and `make test`. Everything installs into .venv/ in this folder.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv sysdeps lint typecheck pytest test faults demo bench bench-intake screenshots clean

all: venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

sysdeps:
	@scripts/install-system-deps.sh

lint: venv
	$(BIN)/ruff check sip dialer tests benchmarks
	$(BIN)/ruff format --check sip dialer tests benchmarks

typecheck: venv
	$(BIN)/mypy

pytest: venv sysdeps
	$(BIN)/pytest -q

test: lint typecheck pytest

# Fault tests of issue 12 (SIGKILL of one of two daemons, PostgreSQL restart, 20% UDP loss).
faults: venv sysdeps
	$(BIN)/pytest -m slow tests/e2e/test_faults.py

demo: venv sysdeps
	$(BIN)/dialer demo

bench-intake: venv
	$(BIN)/python benchmarks/intake.py --leads 20000 --concurrency 16

# Regenerates the README's screenshots (docs/screenshots/) from the browser tests, which save
# them to test-artifacts/screenshots/. The old artifacts go first, so a failed run copies nothing.
SHOTS := test-artifacts/screenshots
screenshots: venv sysdeps
	rm -f $(SHOTS)/dashboard-1280x800.png $(SHOTS)/console-390x844.png
	$(BIN)/pytest -q -p no:cacheprovider tests/web/test_browser.py
	cp $(SHOTS)/dashboard-1280x800.png docs/screenshots/dashboard.png
	cp $(SHOTS)/console-390x844.png docs/screenshots/console-phone.png

# Regenerates the shipped G.711 prompts (needs Debian's espeak-ng and sox).
prompts:
	scripts/make_prompts.sh dialer/prompts

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
