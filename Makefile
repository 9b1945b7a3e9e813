# Quickstart targets. Both work on a fresh machine with only Python >= 3.10 and pip.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: sample test install clean demo-weights demo-eval

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,data,text]"
	touch $(STAMP)

install: $(STAMP)

sample: $(STAMP)
	$(PY) sample.py

# Retrains the embedded demo model (migm_jax/assets/demo) from scratch: VQGAN, transformer, shortcut and the
# metric's classifier, each through train.py with its config (a GPU: ~17 minutes on one H200).
demo-weights: $(STAMP)
	$(PY) train.py --config configs/demo_vqgan.py --workdir runs/demo_vqgan
	$(PY) train.py --config configs/demo_vqgan.py --workdir runs/demo_vqgan --export
	$(PY) train.py --config configs/demo_transformer.py --workdir runs/demo_transformer
	$(PY) train.py --config configs/demo_transformer.py --workdir runs/demo_transformer --export
	$(PY) train.py --config configs/demo_shortcut.py --workdir runs/demo_shortcut
	$(PY) train.py --config configs/demo_shortcut.py --workdir runs/demo_shortcut --export
	$(PY) train.py --config configs/demo_classifier.py --workdir runs/demo_classifier
	$(PY) train.py --config configs/demo_classifier.py --workdir runs/demo_classifier --export
	rm -rf migm_jax/assets/demo && mkdir -p migm_jax/assets/demo
	cp -r runs/demo_shortcut/export/weights migm_jax/assets/demo/maskgit
	cp -r runs/demo_classifier/export/weights migm_jax/assets/demo/classifier

# The quality harness on the embedded model as in README (2,000 samples x 3 seeds, budgets 4-12; meant for a GPU).
demo-eval: $(STAMP)
	$(PY) -m migm_jax.eval --budgets 4 6 8 10 12 --dtype bfloat16 --attention exact --out outputs/demo_eval.json --plot outputs/demo_pareto.png

test: $(STAMP)
	$(PY) -m pytest -q --durations=10 tests

clean:
	rm -rf $(VENV) outputs
