# capkit — one command each: `make run` (the whole study on the embedded data), `make test`, `make bench`.
# Inside an active conda env or virtualenv the Makefile uses it; otherwise it builds .venv here.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

RUN_DIR  ?= runs/default
DATASET  ?= sample
DATA_DIR ?= data/sample
FIGURES_DIR ?= figures
SEED     ?= 0
EPOCHS   ?= 8
ENCODERS ?= efficientnet_lite0_multi efficientnet_lite2_multi
DECODERS ?= soft lookback
TARGETS  ?= text hashtag
# texts' tokenizer (02, 03, 06): okt (the study's) | okt_morph | kiwi (no Java) | whitespace (English captions: coco, karpathy)
TOKENIZER ?= okt
# the attention term's weight for the text runs (models.objective, the paper's scale), chosen on validation by
# 06_ablation (`make ablation`: 0.25 of 0 / 0.25 / 1 / 4, with the `_deep` and again with the `_multi` encoders,
# see README); 0 = the study's code
LAMBDA_ATT ?= 0.25
# text runs that get self-critical epochs (on a copy named <run>-text-scst; the cross-entropy run stays as it is)
SCST_RUNS   ?= efficientnet_lite2_multi-soft
SCST_EPOCHS ?= 1
# their reward also reads the first text of the 10 nearest training images (TrainConfig.scst_neighbours; 0: the
# post's own text alone, which on this one-text-a-post data lowered validation CIDEr-D: 0.371 -> 0.340)
SCST_NEIGHBOURS ?= 10
# extra rows beside the study's grid (05_results): Predict-Forward and Look-Back + Predict-Forward texts, the
# set-prediction hashtag model
# (the stronger encoder's; add efficientnet_lite0_multi-multilabel-hashtag for the other: ~75 s more)
EXTRA_RUNS ?= efficientnet_lite2_multi-pf-text efficientnet_lite2_multi-lbpf-text \
              efficientnet_lite2_multi-multilabel-hashtag
# epochs of the set-prediction runs (decoder multilabel: ~14 s an epoch here; with mean pooling, at 8 epochs its best
# was the last, at 16 epoch 9-12 by validation F1: test 0.359 / 0.356 for seeds 0 / 1 against 0.347 / 0.350)
SET_EPOCHS ?= 16
# epochs of the grid's hashtag runs and of the extra sequence runs (the Predict-Forward texts); fewer save time, at a
# price: 6 instead of 8 took the hashtag grid's mean test F1 from 0.338 to 0.330, and Predict-Forward's test CIDEr-D
# from 0.352 to 0.199 (Look-Back + PF 0.349 -> 0.204; PF's pointing game 5.4x -> 3.0x chance)
TAG_EPOCHS ?= $(EPOCHS)
EXTRA_EPOCHS ?= $(EPOCHS)
# runs trained at once (make -j) and the threads each gets; on one GPU keep JOBS=1
JOBS    ?= 2
THREADS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); t=$$(( n / $(JOBS) )); echo $$(( t > 0 ? t : 1 )))
THREADS_ENV = OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS)
SYNC    := --output-sync=target
# the regulariser ablation (06_ablation, `make ablation`): lambda x decoder x encoder, text runs
ABLATION_EPOCHS ?= 8

ACTIVE_ENV := $(or $(filter-out $(CURDIR)/.venv,$(VIRTUAL_ENV)),$(filter-out base,$(CONDA_DEFAULT_ENV)))
ifeq ($(ACTIVE_ENV),)
  PY    := $(CURDIR)/.venv/bin/python
  STAMP := .venv/.capkit-installed
else
  PY    := $(shell command -v python)
  STAMP := .capkit-env-checked
endif
PM := $(PY) -m papermill --cwd $(CURDIR) --log-level WARNING --no-progress-bar
TRAIN_ARGS = -p dataset $(DATASET) -p data_dir $(DATA_DIR) -p run_dir $(RUN_DIR) -p seed $(SEED)
NB_ARGS = $(TRAIN_ARGS) -p figures_dir $(FIGURES_DIR)

.PHONY: help env java browser data run notebooks train-grid train-scst ablation test bench rehearsal lab clean \
        nb/01_data_exploration nb/02_vocabulary nb/04_attention nb/05_results $(TRAIN_RUNS) pool/baselines
help:
	@echo "make run    - create the environment, generate data/sample, execute every notebook into $(RUN_DIR)"
	@echo "make test   - create the environment and run the test suite (smoke notebooks + browser test)"
	@echo "make bench  - speed benchmark against the study's algorithm (writes runs/bench.json)"
	@echo "make rehearsal - README's settings for real photos on a stand-in of 2,904 photos x 5 texts (~15 min)"
	@echo "make ablation - the attention regulariser's weight x decoder x encoder (06_ablation, ~50 min on 2 CPU cores)"
	@echo "make lab    - open JupyterLab"
	@echo "environment: $(if $(ACTIVE_ENV),active env '$(ACTIVE_ENV)' ($(PY)),.venv (python3 -m venv))"

java:
	@command -v java >/dev/null 2>&1 || { echo "ERROR: Java is missing; konlpy's Okt tokenizer and METEOR need it." \
	  "Install a JDK (Debian/Ubuntu: sudo apt-get install -y default-jdk; conda: conda install -c conda-forge openjdk=17)."; exit 1; }

env: $(STAMP)
$(STAMP): pyproject.toml | java
ifeq ($(ACTIVE_ENV),)
	@test -x .venv/bin/python || python3 -m venv .venv || { echo "ERROR: 'python3 -m venv' failed: install python3-venv (Python >= 3.10)"; exit 1; }
endif
	@echo "installing capkit with the notebook and test extras into $(PY) ..."
	@$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	@$(PY) -m pip install -q --no-compile -e ".[notebook,test]" 2>&1 | grep -v "is ignored" || true
	@# byte-compiled on all cores instead of one file at a time by pip (files that do not compile are skipped)
	@$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
	  >/dev/null 2>&1 || true
	@$(PY) -c "import capkit, torch, timm, konlpy, papermill, ipywidgets, playwright" \
	  || { echo "ERROR: pip install -e '.[notebook,test]' failed; see the messages above"; exit 1; }
	@$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# Debian's Chromium for the JupyterLab browser test (playwright drives it; no browser download), and a Korean font
# so that the page (and its screenshot) shows Hangul.
BROWSER_PKGS := $(if $(shell command -v chromium || command -v chromium-browser),,chromium) \
                $(if $(shell fc-list 2>/dev/null | grep -i -m1 nanum),,fonts-nanum)
browser:
	@pkgs="$(strip $(BROWSER_PKGS))"; [ -z "$$pkgs" ] || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's $$pkgs for the browser test ..."; \
	    (apt-get install -y -qq $$pkgs >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq $$pkgs >/dev/null)) \
	    || { echo "ERROR: apt-get install $$pkgs failed"; exit 1; }; \
	  else echo "WARNING: $$pkgs missing and not installable here (need root + apt-get): sudo apt-get install $$pkgs" \
	    "(without chromium the browser test fails; CAPKIT_SKIP_BROWSER=1 skips it)"; fi; }

data: env
ifeq ($(DATASET),sample)
	@$(PY) -m capkit.sample $(DATA_DIR) --seed $(SEED)
else
	@test -d $(DATA_DIR) || { echo "ERROR: DATA_DIR=$(DATA_DIR) does not exist (DATASET=$(DATASET)); see README, 'Data'"; exit 1; }
endif

# 01, 02, the training runs and the baselines share one pool of JOBS jobs (01 and 02 first, the baselines last);
# 04 and 05, which read every run, follow side by side.
notebooks: env data
	@mkdir -p $(RUN_DIR) $(FIGURES_DIR)
	@$(MAKE) --no-print-directory -j$(JOBS) $(SYNC) nb/01_data_exploration nb/02_vocabulary $(TRAIN_RUNS) \
	  pool/baselines
	@$(MAKE) --no-print-directory -j$(JOBS) $(SYNC) nb/04_attention nb/05_results

# 05_results' baselines (retrieval, the scene oracles) for every encoder x target whose run folder holds a
# config.json, scored as the pool's last job (every run has started by then), beside the last training runs instead
# of after them; 05 finds them written, and scores itself any that is missing (a run that had not yet written its
# config.json) or stale.
pool/baselines:
	$(THREADS_ENV) $(PY) -m capkit.results baselines $(RUN_DIR)

nb/01_data_exploration nb/05_results: nb/%:
	$(THREADS_ENV) $(PM) notebooks/$*.ipynb $(RUN_DIR)/$*.ipynb $(NB_ARGS)
nb/02_vocabulary: nb/%:
	$(THREADS_ENV) $(PM) notebooks/$*.ipynb $(RUN_DIR)/$*.ipynb $(NB_ARGS) -p tokenizer $(TOKENIZER)
nb/04_attention: nb/%:
	$(THREADS_ENV) $(PM) notebooks/$*.ipynb $(RUN_DIR)/$*.ipynb $(NB_ARGS)

# Every training run of `make run`: the study's grid (encoder x decoder x target), the extra rows (EXTRA_RUNS) and
# the self-critical copies (SCST_RUNS), JOBS at a time, each with its share of the cores. A run is named
# <encoder>-<decoder>-<target>; its executed notebook stays in its run folder. Runs on one encoder share the
# feature cache safely (one lock per cache entry: the first extracts, the others wait and read).
GRID_RUNS := $(foreach e,$(ENCODERS),$(foreach d,$(DECODERS),$(foreach t,$(TARGETS),$(e)-$(d)-$(t))))
# make -j starts the jobs of its list in order, longest first so that the last ones are short: the encoders' first
# runs (their features are extracted side by side), the text runs, then the hashtag runs. A run of SCST_RUNS is
# followed by its self-critical copy in the same job (make would start a job that waits for another last).
# No job of the list depends on another.
uniq = $(if $1,$(firstword $1) $(call uniq,$(filter-out $(firstword $1),$1)))
ALL_RUNS = $(GRID_RUNS) $(EXTRA_RUNS)
ORDERED_RUNS = $(call uniq,$(foreach e,$(ENCODERS),$(firstword $(filter $(e)-%,$(GRID_RUNS)))) \
               $(filter %-text,$(ALL_RUNS)) $(filter-out %-text,$(ALL_RUNS)))
TRAIN_RUNS = $(addprefix train/,$(ORDERED_RUNS))
# a run's epochs: SET_EPOCHS for a set decoder, EXTRA_EPOCHS for the other EXTRA_RUNS, TAG_EPOCHS for hashtags,
# else EPOCHS
run_part = $(word $2,$(subst -, ,$1))
run_epochs = $(if $(filter multilabel,$(call run_part,$1,2)),$(SET_EPOCHS),$(if $(filter $1,$(EXTRA_RUNS)),\
  $(EXTRA_EPOCHS),$(if $(filter hashtag,$(call run_part,$1,3)),$(TAG_EPOCHS),$(EPOCHS))))
SCST_COPY = $(MAKE) --no-print-directory train-scst-only/$1
train-grid: env data
	@$(MAKE) --no-print-directory -j$(JOBS) $(SYNC) $(TRAIN_RUNS)

train/%-text-scst: train/%-text train-scst-only/%-text-scst ;
train-scst-only/%-text-scst:
	@echo "== training $*-text-scst (SCST on a copy of $*-text)"; mkdir -p $(RUN_DIR)/$*-text-scst
	$(THREADS_ENV) $(PM) notebooks/03_train.ipynb $(RUN_DIR)/$*-text-scst/03_train.ipynb $(TRAIN_ARGS) \
	  -p encoder $(word 1,$(subst -, ,$*)) -p decoder $(word 2,$(subst -, ,$*)) -p target text \
	  -p epochs $(strip $(call run_epochs,$*-text)) \
	  -p run_name $*-text-scst -p start_from $(RUN_DIR)/$*-text -p scst_epochs $(SCST_EPOCHS) \
	  -p scst_neighbours $(SCST_NEIGHBOURS) \
	  -p tokenizer $(TOKENIZER) -p lambda_att $(LAMBDA_ATT)

train/%:
	@echo "== training $*"; mkdir -p $(RUN_DIR)/$*
	$(THREADS_ENV) $(PM) notebooks/03_train.ipynb $(RUN_DIR)/$*/03_train.ipynb $(TRAIN_ARGS) \
	  -p encoder $(word 1,$(subst -, ,$*)) -p decoder $(word 2,$(subst -, ,$*)) -p target $(word 3,$(subst -, ,$*)) \
	  -p epochs $(strip $(call run_epochs,$*)) -p tokenizer $(TOKENIZER) \
	  $(if $(filter text,$(word 3,$(subst -, ,$*))),-p lambda_att $(LAMBDA_ATT))
	$(if $(filter $*,$(addsuffix -text,$(SCST_RUNS))),@$(call SCST_COPY,$*-scst))

train-scst: env data
	@$(MAKE) --no-print-directory -j$(JOBS) $(SYNC) $(addprefix train-scst-only/,$(addsuffix -text-scst,$(SCST_RUNS)))

ablation: env data
	@mkdir -p $(RUN_DIR) $(FIGURES_DIR)
	$(PM) notebooks/06_ablation.ipynb $(RUN_DIR)/06_ablation.ipynb $(NB_ARGS) -p epochs $(ABLATION_EPOCHS) \
	  -p tokenizer $(TOKENIZER)

run: env data
	@start=$$(date +%s); $(MAKE) --no-print-directory notebooks; \
	  echo "make run finished in $$(( $$(date +%s) - start )) s; executed notebooks in $(RUN_DIR), figures in $(FIGURES_DIR)/"

test: env browser
	$(PY) -m pytest -q tests

bench: env data
	$(PY) bench/run.py --data-dir $(DATA_DIR) --out runs/bench.json

# README's "Settings for real photos" end to end on a stand-in of the reviewers' real set (2,904 painted photos at
# 480 px, five texts each): times the recipe and scores it against the retrieval baselines (~15 min here)
rehearsal: env
	$(PY) bench/rehearsal.py --out runs/rehearsal

# served from the repository root (notebooks/, runs/ and figures/ all in the file browser)
lab: env
	$(PY) -m jupyter lab --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf runs data/cache
