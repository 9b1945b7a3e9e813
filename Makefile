# Quickstart targets. Both work on a fresh machine with only Python >= 3.10 and pip.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: sample test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,data,text]"
	touch $(STAMP)

install: $(STAMP)

sample: $(STAMP)
	$(PY) sample.py --demo --mode shortcut --steps 8 --budget 4 --labels 1 7 282 604 --out outputs/demo.png

test: $(STAMP)
	$(PY) -m pytest -q --durations=10 tests

clean:
	rm -rf $(VENV) outputs
