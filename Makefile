# The two commands that matter: `make demo` and `make test`. Everything else supports them.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data/sample/hm data/sample/myntra
# pip prints one warning per package for file:// indexes that lack it; keep the noise out of logs.
QUIET_PIP = 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install services test lint format demo bench ablation eval-baselines clean proto

install: $(STAMP)

# Idempotent: reruns only when a dependency file changes. torch comes first and alone so that no
# later resolution can swap it for a CUDA build; torchrec/fbgemm go in without dependency resolution.
$(STAMP): pyproject.toml constraints.txt requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 $(QUIET_PIP)
	$(BIN)/pip install -q -c constraints.txt --no-deps torchrec==1.8.0 fbgemm-gpu-cpu==1.8.0 $(QUIET_PIP)
	$(BIN)/pip install -q -c constraints.txt -r requirements.txt -r requirements-dev.txt $(QUIET_PIP)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . $(QUIET_PIP)
	touch $@

# Generated protobuf/gRPC code is committed; this regenerates it (a test checks it is current).
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=platform --pyi_out=platform \
		--grpc_python_out=platform $$(find proto -name '*.proto')

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Real Kafka (+ ZooKeeper), Redis and PostgreSQL for the integration tests (idempotent).
services: $(STAMP)
	PIP=$(BIN)/pip bash scripts/install-services.sh

test: lint services
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/mrse demo --data $(DATA)

# Baselines on the full datasets (needs ../shared/benchmarks); numbers go to docs/benchmarks.md.
eval-baselines: $(STAMP)
	$(BIN)/mrse eval --data ../shared/benchmarks/hm --model bm25 --out results/hm-bm25.json
	$(BIN)/mrse eval --data ../shared/benchmarks/hm --model dense --out results/hm-dense.json
	$(BIN)/mrse eval --data ../shared/benchmarks/myntra --model bm25 --out results/myntra-bm25.json
	$(BIN)/mrse eval --data ../shared/benchmarks/myntra --model dense --out results/myntra-dense.json

# Trains text-tower, MRSE and the ablations on both full datasets, evaluates them with the
# baselines, and rewrites the ablation section of docs/benchmarks.md (about an hour on 2 cores).
ablation: $(STAMP)
	$(BIN)/mrse ablation --data ../shared/benchmarks/hm ../shared/benchmarks/myntra --config configs/ablation.yaml --retrain --jobs 2

# The model the serving and scale benchmarks serve (trained once: epochs and early stopping,
# 108-142 s measured on this machine with one thread and a warm feature cache).
runs/hm-mrse/run.json: | $(STAMP)
	$(BIN)/mrse train --data ../shared/benchmarks/hm --model mrse --out runs/hm-mrse

# The n-gram query path (no text encoder at serving), trained as the ablation trains (one thread).
runs/hm-ngram-query/run.json: | $(STAMP)
	$(BIN)/mrse train --data ../shared/benchmarks/hm --model ngram-query --config configs/ablation.yaml --out runs/hm-ngram-query

# Long benchmarks, never part of `make test`; numbers go to docs/benchmarks.md.
bench: $(STAMP) runs/hm-mrse/run.json runs/hm-ngram-query/run.json
	$(BIN)/mrse bench-encoders --data ../shared/benchmarks/hm --out results/encoder-throughput.json
	$(BIN)/mrse stream bench --data ../shared/benchmarks/hm --rate 2000 --out results/stream-bench.json
	$(BIN)/mrse bench-serving --data ../shared/benchmarks/hm --run runs/hm-mrse --ngram-run runs/hm-ngram-query --out results/serve-bench.json
	$(BIN)/mrse bench-catalog --data ../shared/benchmarks/hm --run runs/hm-mrse --out results/catalog-bench.json
	$(BIN)/mrse bench-scale --data ../shared/benchmarks/hm --run runs/hm-mrse --items 25000,250000,1000000 --out results/scale-bench.json

clean:
	rm -rf $(VENV) .mrse-cache results
