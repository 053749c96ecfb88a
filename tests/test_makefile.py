"""The Makefile's run lists, read with `make -n` (nothing runs): the preset and the overrides each run gets, the
epochs of each kind of run relative to the others, and the pool's order."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
TEXT, TAGS = "efficientnet_lite0_multi-soft-text", "efficientnet_lite2_multi-lookback-hashtag"
PF, SET = "efficientnet_lite2_multi-pf-text", "efficientnet_lite2_multi-multilabel-hashtag"
COPY = "efficientnet_lite2_multi-soft-text-scst"


def dry_run(*args: str) -> str:
    """The commands `make -n` would run (continued lines joined)."""
    done = subprocess.run(["make", "-n", "--no-print-directory", *args, "RUN_DIR=runs/dry-run-never-written"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.replace("\\\n", " ")


def flags(run: str, *overrides: str) -> dict:
    """The papermill parameters (-p NAME VALUE) of a run's 03_train command."""
    target = f"train-scst-only/{run}" if run.endswith("-scst") else f"train/{run}"
    line = next(x for x in dry_run(target, *overrides).splitlines() if "03_train" in x and f"/{run}/" in x)
    return dict(re.findall(r"-p (\w+) (\S+)", line))


def test_runs_take_the_preset_and_only_the_settings_given():
    text, tags = flags(TEXT), flags(TAGS)
    assert text["preset"] == tags["preset"] == "default"
    assert "epochs" not in text and "lambda_att" not in text and "tokenizer" not in text  # the preset's own
    given = flags(TEXT, "EPOCHS=5", "LAMBDA_ATT=1", "LR=1e-3", "SEARCH=beam", "MIN_FREQ=3", "TOKENIZER=kiwi")
    assert {k: given[k] for k in ("epochs", "lambda_att", "lr", "search", "min_freq", "tokenizer")} == {
        "epochs": "5", "lambda_att": "1", "lr": "1e-3", "search": "beam", "min_freq": "3", "tokenizer": "kiwi"}
    assert "lambda_att" not in flags(TAGS, "LAMBDA_ATT=1")  # the attention weight is the texts'
    assert flags(TEXT, "PRESET=study")["preset"] == "study"


def test_each_kind_of_run_trains_its_epochs():
    e = {run: flags(run, "EPOCHS=5").get("epochs") for run in (TEXT, TAGS, PF, SET)}
    assert e[TEXT] == e[TAGS] == e[PF] == "5"  # hashtags and extra rows follow EPOCHS unless told
    assert int(e[SET]) > 5  # the set model has epochs of its own (SET_EPOCHS)
    assert flags(TAGS, "EPOCHS=5", "TAG_EPOCHS=2")["epochs"] == "2"
    assert flags(PF, "EPOCHS=5", "EXTRA_EPOCHS=3")["epochs"] == "3"
    assert flags(PF, "EPOCHS=5", "EXTRA_RUNS=", "EXTRA_EPOCHS=3")["epochs"] == "5"  # not an extra run: a grid run
    # the best text run is followed by its self-critical copy, which starts from it with the same settings
    assert f"train-scst-only/{COPY}" in dry_run("train/efficientnet_lite2_multi-soft-text")
    copy = flags(COPY, "EPOCHS=5")
    assert copy["epochs"] == "5" and copy["start_from"].endswith("efficientnet_lite2_multi-soft-text")
    assert flags(COPY, "SCST_NEIGHBOURS=0")["scst_neighbours"] == "0"


def test_the_pool_and_the_study_preset():
    def pool(*args):
        line = next(x.split() for x in dry_run("notebooks", *args).splitlines() if "nb/02_vocabulary" in x)
        return [j for j in line if "/" in j]

    jobs = pool()
    assert jobs[:2] == ["nb/01_data_exploration", "nb/02_vocabulary"] and jobs[-1] == "pool/baselines"
    grid = [j for j in jobs if j.startswith("train/") and j.split("-")[1] in ("soft", "lookback")]
    assert len(grid) == 2 * 2 * 2  # encoders x decoders x targets
    assert len([j for j in jobs if j.startswith("train/")]) > len(grid)  # and the extra rows
    study = pool("PRESET=study")
    assert sorted(j for j in study if j.startswith("train/")) == sorted(grid)  # the study's grid alone


def test_flickr8k_without_data_is_skipped_with_a_message(tmp_path):
    done = subprocess.run(["make", "--no-print-directory", "flickr8k", f"DATA_DIR={tmp_path / 'none'}"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "SKIPPED" in done.stdout and "Flickr8k_text" in done.stdout


def test_ensembles_are_tested_after_the_runs_and_before_the_tables(tmp_path):
    pair = f"{TEXT}+efficientnet_lite0_multi-lookback-text"
    lines = dry_run("notebooks", f"ENSEMBLES={pair}").splitlines()
    where = {key: next(i for i, x in enumerate(lines) if key in x)
             for key in ("pool/baselines", f"ensemble/{pair}", "nb/05_results")}
    assert where["pool/baselines"] < where[f"ensemble/{pair}"] < where["nb/05_results"]
    assert not any("ensemble/" in x for x in dry_run("notebooks").splitlines())  # none unless named
    # members not trained: skipped with a message, the pipeline goes on
    done = subprocess.run(["make", "--no-print-directory", f"ensemble/{pair}", f"RUN_DIR={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0 and f"SKIPPED ensemble {pair}" in done.stdout and "is not trained" in done.stdout
