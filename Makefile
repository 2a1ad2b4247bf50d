# Quick start: `make demo` (set up, run the demo study, write its report) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: setup demo test lint clean

setup: $(STAMP)

# torch is installed first and pinned: 2.13.0 is the CPU build held on this machine's disk.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The demo study: CartPole-v1, REINFORCE and PPO, the four learners, 3 seeds (24 runs on
# all cores, about 5 minutes on 2 cores), then its report. Rerunning resumes the sweep.
DEMO := demo/cartpole
demo: $(STAMP)
	$(BIN)/lpdm sweep --env CartPole-v1 --algo reinforce,ppo --learner bp,lpdm,lpdm-guided,frozen \
		--seeds 3 --total-steps reinforce=25000,ppo=20000 --out $(DEMO); \
	status=$$?; $(BIN)/lpdm report $(DEMO) || exit 1; exit $$status

# The tests also install the ray extra (about 30 s), for the test of the Ray backend; where
# it cannot be installed, that one test is skipped.
$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[ray]' || \
		echo "Ray did not install: the test of the Ray backend will be skipped"
	touch $(RAY_STAMP)

# pytest exits 5 when it collects no test: that is not a failure of the suite. The tests
# run on every core (pytest-xdist), four at most: several tests start processes of their own.
test: $(STAMP) $(RAY_STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: $(STAMP)
	$(BIN)/ruff check src tests examples

clean:
	rm -rf $(VENV) demo
