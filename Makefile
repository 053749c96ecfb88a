# capkit — one command each: `make run` (the whole study on the embedded data), `make test`, `make bench`.
# Inside an active conda env or virtualenv the Makefile uses it; otherwise it builds .venv here.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

RUN_DIR  ?= runs/default
DATASET  ?= sample
DATA_DIR ?= data/sample
# figures go into the run folder; `make figures` copies the README's figures from there into figures/
FIGURES_DIR ?= $(RUN_DIR)/figures
SEED     ?= 0
# every run starts from a preset of capkit/settings.py (default | study | real_photos | demo); the variables below
# that are left empty keep the preset's value, the others override it (config.json records both)
PRESET   ?= default
EPOCHS   ?=
LAMBDA_ATT ?=
LR       ?=
LR_SCHEDULE ?=
BATCH_SIZE ?=
MIN_FREQ ?=
MAX_LEN  ?=
SEARCH   ?=
BEAM_SIZE ?=
PATIENCE ?=
# texts' tokenizer (01, 02, 03, 06): empty = the preset's (default: okt, the study's) | okt_morph | kiwi (no Java) |
# english (raw English captions) | whitespace (text already tokenized) | auto (english for English texts, else okt)
TOKENIZER ?=
ENCODERS ?= efficientnet_lite0_multi efficientnet_lite2_multi
DECODERS ?= soft lookback
TARGETS  ?= text hashtag
ifeq ($(PRESET),study)
# the study trained its grid and nothing else
SCST_RUNS  ?=
EXTRA_RUNS ?=
endif
# text runs that get self-critical epochs (on a copy named <run>-text-scst; the cross-entropy run stays as it is)
SCST_RUNS   ?= efficientnet_lite2_multi-soft
SCST_EPOCHS ?= 1
# their reward also reads the first text of the 10 nearest training images (TrainConfig.scst_neighbours; 0: the
# post's own text alone: lower validation CIDEr-D on one-text-a-post data, docs/results.md)
SCST_NEIGHBOURS ?= 10
# extra rows beside the study's grid (05_results): Predict-Forward and Look-Back + Predict-Forward texts, the
# set-prediction hashtag model (the stronger encoder's; add efficientnet_lite0_multi-multilabel-hashtag for the other)
EXTRA_RUNS ?= efficientnet_lite2_multi-pf-text efficientnet_lite2_multi-lbpf-text \
              efficientnet_lite2_multi-multilabel-hashtag
# ensembles tested after the training runs (capkit.ensemble: the members' mean next-word distribution), each one
# "+"-joined list of run names of RUN_DIR; an ensemble whose members were not all trained is skipped
ENSEMBLES ?=
empty :=
space := $(empty) $(empty)
plus_join = $(subst $(space),+,$(strip $(1)))
# epochs of the set-prediction runs (decoder multilabel; its best epoch by validation F1 comes late: docs/results.md)
SET_EPOCHS ?= 16
# epochs of the grid's hashtag runs and of the extra sequence runs (empty: as EPOCHS; fewer cost scores, docs/speed.md)
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
# -p NAME VALUE when VALUE is not empty
opt = $(if $(strip $2),-p $1 $(strip $2))
TRAIN_ARGS = -p dataset $(DATASET) -p data_dir $(DATA_DIR) -p run_dir $(RUN_DIR) -p seed $(SEED)
NB_ARGS = $(TRAIN_ARGS) -p figures_dir $(FIGURES_DIR)
# the run settings every training run of the grid gets (the preset, then what is overridden)
RUN_OPTS = -p preset $(PRESET) $(call opt,tokenizer,$(TOKENIZER)) $(call opt,lr,$(LR)) \
  $(call opt,lr_schedule,$(LR_SCHEDULE)) $(call opt,batch_size,$(BATCH_SIZE)) $(call opt,min_freq,$(MIN_FREQ)) \
  $(call opt,max_len,$(MAX_LEN)) $(call opt,search,$(SEARCH)) $(call opt,beam_size,$(BEAM_SIZE)) \
  $(call opt,patience,$(PATIENCE))

.PHONY: help env java browser data run notebooks train-grid train-scst ablation test bench rehearsal lab clean \
        demo flickr8k figures \
        nb/01_data_exploration nb/02_vocabulary nb/04_attention nb/05_results $(TRAIN_RUNS) pool/baselines
help:
	@echo "make demo     - a small model trained on the embedded data, then captions, hashtags and an attention figure (~4 min)"
	@echo "make run      - the study's grid and the extra rows on the embedded data, every notebook, into $(RUN_DIR) (PRESET=study: the 2019 recipe)"
	@echo "make flickr8k - the same on real photos: Flickr8k (DATA_DIR, default data/flickr8k) into runs/flickr8k"
	@echo "make test     - the test suite (unit tests, smoke notebooks, browser test); SYSTEM_PACKAGES=0 installs no Debian package"
	@echo "make figures  - copy the README's figures from the run folders into figures/"
	@echo "make bench    - speed benchmark against the study's algorithm (writes runs/bench.json)"
	@echo "make rehearsal - the real-photo settings on a stand-in of 2,904 photos x 5 texts"
	@echo "make ablation - the attention regulariser's weight x decoder x encoder (06_ablation)"
	@echo "make lab      - open JupyterLab"
	@echo "environment: $(if $(ACTIVE_ENV),active env '$(ACTIVE_ENV)' ($(PY)),.venv (python3 -m venv))"

# Java is needed by konlpy's Okt tokenizer and by METEOR only: without it, kiwi / english / whitespace runs go on
# and METEOR is reported as unavailable (NaN)
java:
	@command -v java >/dev/null 2>&1 || echo "NOTE: no Java found: the okt tokenizer (the study's, TOKENIZER=okt) and" \
	  "METEOR are unavailable; TOKENIZER=kiwi (Korean) or english runs need none. To have both, install a JDK" \
	  "(Debian/Ubuntu: sudo apt-get install -y default-jdk; conda: conda install -c conda-forge openjdk=17)."

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
# SYSTEM_PACKAGES=0: never install Debian packages (the browser test then fails or, with CAPKIT_SKIP_BROWSER=1, is skipped)
SYSTEM_PACKAGES ?= 1
browser:
	@pkgs="$(strip $(BROWSER_PKGS))"; [ -z "$$pkgs" ] || { \
	  if [ "$(SYSTEM_PACKAGES)" != 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "the browser test needs Debian's $$pkgs: installing them with apt-get now (SYSTEM_PACKAGES=0 does not) ..."; \
	    (apt-get install -y -qq $$pkgs >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq $$pkgs >/dev/null)) \
	    || { echo "ERROR: apt-get install $$pkgs failed"; exit 1; }; \
	  else echo "WARNING: $$pkgs missing and not installed (root + apt-get + SYSTEM_PACKAGES=1 do): sudo apt-get install $$pkgs" \
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
	$(if $(strip $(ENSEMBLES)),@$(MAKE) --no-print-directory $(addprefix ensemble/,$(ENSEMBLES)))
	@$(MAKE) --no-print-directory -j$(JOBS) $(SYNC) nb/04_attention nb/05_results

# 05_results' baselines (retrieval, the scene oracles) for every encoder x target whose run folder holds a
# config.json, scored as the pool's last job (every run has started by then), beside the last training runs instead
# of after them; 05 finds them written, and scores itself any that is missing (a run that had not yet written its
# config.json) or stale.
pool/baselines:
	$(THREADS_ENV) $(PY) -m capkit.baselines $(RUN_DIR)

ensemble/%:
	@members="$(addprefix $(RUN_DIR)/,$(subst +, ,$*))"; for m in $$members; do test -f $$m/best.pt || \
	  { echo "SKIPPED ensemble $*: $$m is not trained"; exit 0; }; done; \
	  echo "== testing the ensemble $*"; $(PY) -m capkit.ensemble $$members

nb/01_data_exploration: nb/%:
	$(THREADS_ENV) $(PM) notebooks/$*.ipynb $(RUN_DIR)/$*.ipynb $(NB_ARGS) $(call opt,tokenizer,$(TOKENIZER))
nb/05_results: nb/%:
	$(THREADS_ENV) $(PM) notebooks/$*.ipynb $(RUN_DIR)/$*.ipynb $(NB_ARGS)
nb/02_vocabulary: nb/%:
	$(THREADS_ENV) $(PM) notebooks/$*.ipynb $(RUN_DIR)/$*.ipynb $(NB_ARGS) $(call opt,tokenizer,$(TOKENIZER)) \
	  $(call opt,min_freq,$(MIN_FREQ))
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
ALL_RUNS = $(GRID_RUNS) $(filter $(addprefix %-,$(TARGETS)),$(EXTRA_RUNS))
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
	  $(call opt,epochs,$(call run_epochs,$*-text)) \
	  -p run_name $*-text-scst -p start_from $(RUN_DIR)/$*-text -p scst_epochs $(SCST_EPOCHS) \
	  -p scst_neighbours $(SCST_NEIGHBOURS) $(RUN_OPTS) $(call opt,lambda_att,$(LAMBDA_ATT))

train/%:
	@echo "== training $*"; mkdir -p $(RUN_DIR)/$*
	$(THREADS_ENV) $(PM) notebooks/03_train.ipynb $(RUN_DIR)/$*/03_train.ipynb $(TRAIN_ARGS) \
	  -p encoder $(word 1,$(subst -, ,$*)) -p decoder $(word 2,$(subst -, ,$*)) -p target $(word 3,$(subst -, ,$*)) \
	  $(call opt,epochs,$(call run_epochs,$*)) $(RUN_OPTS) \
	  $(if $(filter text,$(word 3,$(subst -, ,$*))),$(call opt,lambda_att,$(LAMBDA_ATT)))
	$(if $(filter $*,$(addsuffix -text,$(SCST_RUNS))),@$(call SCST_COPY,$*-scst))

train-scst: env data
	@$(MAKE) --no-print-directory -j$(JOBS) $(SYNC) $(addprefix train-scst-only/,$(addsuffix -text-scst,$(SCST_RUNS)))

ablation: env data
	@mkdir -p $(RUN_DIR) $(FIGURES_DIR)
	$(PM) notebooks/06_ablation.ipynb $(RUN_DIR)/06_ablation.ipynb $(NB_ARGS) -p epochs $(ABLATION_EPOCHS) \
	  $(call opt,tokenizer,$(TOKENIZER))

# (a target the data has no records for, e.g. hashtags of captions-only data, is skipped with a message)
run: env data
	@start=$$(date +%s); keep="$$($(PY) -m capkit.targets $(DATASET) $(DATA_DIR) $(TARGETS))"; \
	  $(MAKE) --no-print-directory notebooks TARGETS="$$keep"; \
	  echo "make run finished in $$(( $$(date +%s) - start )) s; executed notebooks in $(RUN_DIR), figures in $(FIGURES_DIR)/"

# Real photos: Flickr8k as its archives unpack (docs/data.md says where to get it), the text grid of the real_photos
# preset (Lite0 / Lite2 7x7 grids x soft / Look-Back) and the extra rows, scored on the official test split.
F8K_DIR := $(if $(filter command line environment,$(origin DATA_DIR)),$(DATA_DIR),data/flickr8k)
F8K_RUN_DIR := $(if $(filter command line environment,$(origin RUN_DIR)),$(RUN_DIR),runs/flickr8k)
# the study's whole 2x2 grid (under an hour on two cores); F8K_ENCODERS=efficientnet_lite2_multi7 trains half of it
# (about half the time; docs/real_photos.md has both)
F8K_ENCODERS ?= efficientnet_lite0_multi7 efficientnet_lite2_multi7
F8K_DECODERS ?= soft lookback
# extra runs (none by default: the Transformer, F8K_EXTRA_RUNS=efficientnet_lite2_multi7-transformer-text, scores
# below both LSTM decoders on the dev split and would run alone on one core for ~20 minutes more)
F8K_EXTRA_RUNS ?=
# one ensemble of every run of the grid (chosen on the dev split: docs/real_photos.md), the last encoder's runs
# first (the ensemble decodes with its first member's search settings and retrieves with its encoder)
F8K_ENSEMBLES ?= $(call plus_join,$(foreach e,$(lastword $(F8K_ENCODERS)) $(filter-out $(lastword $(F8K_ENCODERS)),\
  $(F8K_ENCODERS)),$(foreach d,$(F8K_DECODERS),$(e)-$(d)-text)))
flickr8k: env
	@test -d "$(F8K_DIR)" || { echo "SKIPPED: no Flickr8k at DATA_DIR=$(F8K_DIR): unpack the release there (Flickr8k_text/" \
	  "and Flicker8k_Dataset/, or Images/ + captions.txt; docs/data.md) or pass DATA_DIR=..."; exit 0; }; \
	start=$$(date +%s); $(MAKE) --no-print-directory notebooks DATASET=flickr8k DATA_DIR=$(F8K_DIR) \
	  RUN_DIR=$(F8K_RUN_DIR) FIGURES_DIR=$(F8K_RUN_DIR)/figures PRESET=$(if $(filter command line,$(origin PRESET)),$(PRESET),real_photos) \
	  ENCODERS="$(F8K_ENCODERS)" DECODERS="$(F8K_DECODERS)" TARGETS=text EXTRA_RUNS="$(F8K_EXTRA_RUNS)" SCST_RUNS= \
	  ENSEMBLES="$(F8K_ENSEMBLES)" \
	  TOKENIZER=$(or $(TOKENIZER),auto); \
	echo "make flickr8k finished in $$(( $$(date +%s) - start )) s; tables and notebooks in $(F8K_RUN_DIR)"

# A first look in a few minutes: the demo preset on the embedded data, then captions, hashtags and a figure
demo: env
	$(PY) -m capkit.demo --run-dir runs/demo

# the figures the README shows, copied from the run folders that made them (make run, make flickr8k)
README_FIGURES := runs/default/figures/01_samples.png runs/default/figures/05_scores.png \
                  runs/default/figures/06_ablation_lambda.png
F8K_FIGURE = $(firstword $(wildcard runs/flickr8k/figures/04_efficientnet_lite2_multi7-soft-text_3545586120_*.png) \
  $(wildcard runs/flickr8k/figures/04_efficientnet_lite2_multi7-soft-text_*.png))
figures:
	@for f in $(README_FIGURES); do if [ -f $$f ]; then cp $$f figures/ && echo "figures/$$(basename $$f) <- $$f"; \
	  else echo "not there (run the make target that writes it): $$f"; fi; done
	@if [ -n "$(F8K_FIGURE)" ]; then cp $(F8K_FIGURE) figures/04_flickr8k_attention.png && \
	  echo "figures/04_flickr8k_attention.png <- $(F8K_FIGURE)"; else echo "no Flickr8k attention figure: make flickr8k"; fi

test: env browser
	$(PY) -m pytest -q tests

bench: env data
	$(PY) bench/run.py --data-dir $(DATA_DIR) --out runs/bench.json

# docs/data.md's "Settings for real photos" end to end on a stand-in of a real captioned set (2,904 painted photos at
# 480 px, five texts each): times the recipe and scores it against the retrieval baselines (~15 min here)
rehearsal: env
	$(PY) bench/rehearsal.py --out runs/rehearsal

# served from the repository root (notebooks/, runs/ and figures/ all in the file browser)
lab: env
	$(PY) -m jupyter lab --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf runs data/cache
