"""Reruns and killed runs, the way a user meets them: each training in its own Python process.

One process trains a run start to finish; a second trains the same run in another folder and is killed
(SIGKILL) after its first epoch; a third restarts it there. The restarted run must end with the same test scores
and the same predictions as the uninterrupted one. A fourth process reruns the finished run: no error, no
training, its results left as they were.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from capkit import text

SCRIPT = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
from capkit import fit, train
stop_after = int(sys.argv[2]) if len(sys.argv) > 2 else 0
if stop_after:  # killed at a known point: right after that epoch's checkpoint is written
    fit.EPOCH_HOOKS.append(lambda state, config: state.epoch == stop_after and os.kill(os.getpid(), signal.SIGKILL))
train.train(train.TrainConfig(**json.loads(sys.argv[1])), progress=False)
"""


def config(sample_dir, cache_dir, run_dir) -> dict:
    # cross-entropy epochs, then one self-critical epoch: a restart must reproduce both phases
    return dict(data_dir=str(sample_dir), cache_dir=str(cache_dir), run_dir=str(run_dir), smoke=True, epochs=4,
                patience=10, batch_size=8, dropout=0.3, scst_epochs=1, scst_batch=8, scst_samples=2, beam_size=2)


def start(cfg: dict, stop_after: int = 0) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(cfg), str(stop_after)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]


def folder_bytes(folder, names=("metrics.json", "predictions.jsonl", "history.json", "best.pt", "last.pt")):
    return {n: (folder / n).read_bytes() for n in names}


def epochs_done(folder) -> int:
    try:
        return len(json.loads((folder / "history.json").read_text()))
    except (OSError, ValueError):
        return 0


@pytest.fixture(scope="module")
def finished(sample_dir, cache_dir, tmp_path_factory):
    cfg = config(sample_dir, cache_dir, tmp_path_factory.mktemp("full"))
    finish(start(cfg))
    return cfg


def test_killed_run_restarts_to_the_uninterrupted_result(finished, sample_dir, cache_dir, tmp_path):
    full = os.path.join(finished["run_dir"], "efficientnet_lite0-soft-text")
    cfg = config(sample_dir, cache_dir, tmp_path)
    folder = tmp_path / "efficientnet_lite0-soft-text"
    proc = start(cfg, stop_after=2)  # SIGKILLed right after its second epoch's checkpoint
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert epochs_done(folder) == 2 and not (folder / "metrics.json").exists()  # killed mid-run, before testing
    finish(start(cfg))  # a third process: resumes from last.pt
    history = json.loads((folder / "history.json").read_text())
    assert [r["phase"] for r in history] == ["xe"] * 4 + ["scst"]
    mine = json.loads((folder / "metrics.json").read_text())
    theirs = json.loads(open(os.path.join(full, "metrics.json"), encoding="utf-8").read())
    assert mine["test"] == theirs["test"] and mine["best_epoch"] == theirs["best_epoch"]
    assert (folder / "predictions.jsonl").read_bytes() == open(os.path.join(full, "predictions.jsonl"), "rb").read()


def test_rerun_of_a_finished_run_trains_nothing_and_keeps_its_results(finished):
    from pathlib import Path

    folder = Path(finished["run_dir"]) / "efficientnet_lite0-soft-text"
    before = folder_bytes(folder)
    finish(start(finished))  # a new process, the same settings
    assert folder_bytes(folder) == before
    # another beam size is a resumable change: no training, but the test split is decoded again
    finish(start(dict(finished, beam_size=1)))
    after = folder_bytes(folder)
    assert all(after[n] == before[n] for n in ("history.json", "best.pt", "last.pt"))
    metrics = json.loads(after["metrics.json"])
    assert metrics["beam_size"] == 1 and metrics["fingerprint"]["beam_size"] == 1


def test_saving_a_vocabulary_does_not_change_it(tmp_path):
    vocab = text.Vocab.build([["a", "b"], ["a"]], min_freq=1)
    before = vocab.to_dict()
    vocab.save(tmp_path / "v.json", tokenizer="okt", target="text")
    assert vocab.to_dict() == before
    saved = json.loads((tmp_path / "v.json").read_text())
    assert saved["settings"]["tokenizer"] == "okt" and saved["itos"] == vocab.itos
    assert text.Vocab.load(tmp_path / "v.json").same_tokens(vocab)
