# regapp: `make run` serves on http://127.0.0.1:5000 (SQLite, mail printed by a local
# SMTP sink); `make lint` runs ruff (ruff.toml); `make test` runs the whole suite. All create
# .venv and install the development requirements (the sink's aiosmtpd, ruff, pytest) first.
# `make bench` runs bench/run.py (README "Benchmark"): gunicorn as in production, driven by
# wrk (installed with apt-get when missing); BENCH_DATABASE_URL=postgresql+psycopg://...
# benchmarks PostgreSQL, BENCH_QUICK=1 makes short runs, BENCH_PARTS selects parts.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app regapp
MAILSINK_PORT ?= 8025

.PHONY: install run serve mailsink lint test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

run: install
	$(FLASK) db upgrade
	@echo "mail is printed below by the development SMTP sink on 127.0.0.1:$(MAILSINK_PORT)"
	@$(BIN)/python devtools/mailsink.py $(MAILSINK_PORT) & \
	sink=$$!; trap 'kill $$sink 2>/dev/null' EXIT INT TERM; \
	MAIL_SERVER=127.0.0.1 MAIL_PORT=$(MAILSINK_PORT) $(BIN)/gunicorn --bind 127.0.0.1:5000 wsgi:app

serve: install
	$(FLASK) db upgrade
	$(BIN)/gunicorn --bind 127.0.0.1:5000 wsgi:app

mailsink: install
	$(BIN)/python devtools/mailsink.py $(MAILSINK_PORT)

lint: install
	$(BIN)/ruff check .

test: install
	$(BIN)/python -m pytest

bench: install
	@command -v wrk >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; \
	  elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; \
	  fi; }
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "make bench needs wrk (HTTP load generator): install the Debian package 'wrk'" \
	       "(apt-get install wrk) and run make bench again" >&2; exit 1; }
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache
