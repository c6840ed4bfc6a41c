# Switchyard: `make run` brings the service up, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test run worker clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)  ## create the venv and install everything

test: $(STAMP)  ## the whole suite against real Redis, Celery and RQ workers (and RabbitMQ if reachable)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

worker: $(STAMP)  ## one worker of $$QUEUE_BACKEND over $$JOB_MODULES (default: the service's jobs)
	$(BIN)/flask --app wsgi worker

run: $(STAMP)  ## web + worker + scheduler from the Procfile; embedded Redis and a dev API key if unset
	$(BIN)/python -m service.devrun

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
