# Switchyard: `make run` brings the service up, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test chaos run worker lock clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dramatiq]'
	@touch $(STAMP)

install: $(STAMP)  ## create the venv and install everything

# the fault suite has a target of its own (make chaos); name tests in PYTEST_ARGS to run them instead
PYTEST_ARGS ?= --ignore=tests/reliability
# the suite mostly waits on worker processes, so it runs spread over pytest-xdist processes
# (each with its own private Redis; every test has its own queue prefix): TEST_PROCESSES=0 runs it in one
TEST_PROCESSES ?= 3

test: $(STAMP)  ## the whole suite against real Redis, Celery and RQ workers (and RabbitMQ if reachable)
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

chaos: $(STAMP)  ## the fault suite on the Procfile stack, every leg: writes RELIABILITY.md (~5 min)
	RELIABILITY_REPORT=RELIABILITY.md $(BIN)/python -m pytest tests/reliability $(CHAOS_ARGS)

worker: $(STAMP)  ## one worker of $$QUEUE_BACKEND over $$JOB_MODULES (default: the service's jobs)
	$(BIN)/flask --app wsgi worker

LOCK_STAMP := $(VENV)/.lock-stamp

$(LOCK_STAMP): $(STAMP) setup.cfg
	$(BIN)/python -m pip install --quiet -e '.[lock]'
	@touch $(LOCK_STAMP)

# requirements.txt is what Heroku's and Dokku's Python buildpacks install: every runtime
# dependency of setup.cfg, pinned with its hashes, resolved for the .python-version.
lock: $(LOCK_STAMP)  ## refresh requirements.txt from setup.cfg's install_requires (needs the package index)
	$(BIN)/python -m uv pip compile setup.cfg --quiet --generate-hashes \
		--python-version $$(cat .python-version) --custom-compile-command 'make lock' \
		--output-file requirements.txt

BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: bench bench-smoke bench-dashboard

$(BENCH_STAMP): $(STAMP) setup.cfg
	$(BIN)/python -m pip install --quiet -e '.[test,dramatiq,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## Switchyard beside raw Celery and RQ (~10 min): BENCHMARKS.md, bench/benchmarks.png
	$(BIN)/python -m bench $(BENCH_ARGS)

# DASHBOARD_ARGS: e.g. --jobs 300000 --failed 30000 (see python -m bench.dashboard --help)
bench-dashboard: $(BENCH_STAMP)  ## the operator's page on 1,000,000 jobs through gunicorn, and a bulk retry of the 100,000 failed (~15 min): its section of BENCHMARKS.md
	$(BIN)/python -m bench.dashboard --jobs 1000000 --failed 100000 $(DASHBOARD_ARGS)

bench-smoke: $(BENCH_STAMP)  ## the quick CI version (< 2 min): checks every figure is produced, in var/bench/
	$(BIN)/python -m bench --smoke $(BENCH_ARGS)

.PHONY: scaling

scaling: $(BENCH_STAMP)  ## one Redis's reach: per-worker jobs/s, commands/job, a second worker host, a local cluster (~4 min; SCALING_ARGS=--quick < 1 min): SCALING.md
	$(BIN)/python -m bench.scaling $(SCALING_ARGS)

.PHONY: compare

# JOBS=myapp.jobs runs that module's job examples (default: JOB_MODULES, the service's jobs);
# COMPARE_ARGS: e.g. --engine pkg.mod:Engine, --no-bench (see flask --app wsgi compare --help)
compare: $(BENCH_STAMP)  ## every engine side by side (~10 min): var/compare/COMPARISON.md, .html; exit 1 on a parity break
	$(BIN)/flask --app wsgi compare $(if $(JOBS),--jobs $(JOBS)) $(COMPARE_ARGS)

run: $(STAMP)  ## web + worker + scheduler from the Procfile; embedded Redis and a dev API key if unset
	$(BIN)/python service/devrun.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
