"""`make run`'s run list, read with `make -n` (nothing runs): the epochs each run gets and the pool's order."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def dry_run(*args: str) -> str:
    """The commands `make -n` would run (continued lines joined)."""
    done = subprocess.run(["make", "-n", "--no-print-directory", *args, "RUN_DIR=runs/dry-run-never-written"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.replace("\\\n", " ")


def epochs_of(run: str, *overrides: str) -> list[int]:
    target = f"train-scst-only/{run}" if run.endswith("-scst") else f"train/{run}"
    return [int(n) for n in re.findall(r"-p epochs (\d+)", dry_run(target, *overrides))]


def test_each_run_trains_its_epochs():
    assert epochs_of("efficientnet_lite0_multi-soft-text") == [8]  # the grid's texts: EPOCHS
    assert epochs_of("efficientnet_lite2_multi-lookback-hashtag") == [8]  # the grid's hashtags: TAG_EPOCHS = EPOCHS
    assert epochs_of("efficientnet_lite2_multi-pf-text") == [8]  # the extra sequence runs: EXTRA_EPOCHS = EPOCHS
    assert epochs_of("efficientnet_lite2_multi-multilabel-hashtag") == [16]  # the set model: SET_EPOCHS
    assert epochs_of("efficientnet_lite2_multi-lookback-hashtag", "EPOCHS=5") == [5]
    # the best text run is followed by its self-critical copy, which starts from it: the same epochs
    copy = "efficientnet_lite2_multi-soft-text-scst"
    assert f"train-scst-only/{copy}" in dry_run("train/efficientnet_lite2_multi-soft-text")
    assert epochs_of(copy) == [8]
    assert "-p scst_neighbours 10" in dry_run(f"train-scst-only/{copy}")  # its reward reads 10 neighbours' texts
    assert "-p scst_neighbours 0" in dry_run(f"train-scst-only/{copy}", "SCST_NEIGHBOURS=0")
    assert epochs_of("efficientnet_lite2_multi-pf-text", "EXTRA_EPOCHS=3", "EPOCHS=5") == [3]
    assert epochs_of("efficientnet_lite0_multi-soft-hashtag", "TAG_EPOCHS=2") == [2]
    # a run that is not one of EXTRA_RUNS is a grid run, whatever its decoder
    assert epochs_of("efficientnet_lite2_multi-pf-text", "EXTRA_RUNS=", "EXTRA_EPOCHS=3") == [8]


def test_the_baselines_are_the_pools_last_job():
    pool = next(line.split() for line in dry_run("notebooks").splitlines() if "nb/02_vocabulary" in line)
    jobs = [j for j in pool if "/" in j]
    assert jobs[:2] == ["nb/01_data_exploration", "nb/02_vocabulary"] and jobs[-1] == "pool/baselines"
    assert len([j for j in jobs if j.startswith("train/")]) == 11  # the grid's 8 runs and the 3 extra rows
