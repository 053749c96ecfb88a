"""Training on several processes (torchrun, gloo on the CPU) gives one process's training.

Every process here is really launched: ``torchrun --nproc_per_node 2`` (``python -m torch.distributed.run``)
against a plain ``python`` run of the same script or command.

- Two ranks and one process, the same global batches and seed, for the soft and the Look-Back decoder and the
  set-prediction hashtag model (a loss averaged over images, not tokens): the same
  losses step by step, the same gradients on both ranks (DDP synchronised them, the hand-written ops included)
  equal to one process's, and the same final weights, within float tolerance (the ranks add their shares'
  sums in another order). Dropout is 0: each rank draws its own masks, so with dropout the runs agree only in
  expectation.
- ``python -m capkit.train`` under torchrun, SIGKILLed (torchrun and both ranks) right after its first checkpoint,
  resumes when started again, and ends where an uninterrupted one-process run ends; the feature cache that its
  two ranks extracted together holds the bytes one process writes.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

SCRIPT = r"""
import sys
import torch
torch.set_num_threads(1)
from capkit import build, dist, loops, models, prepare, train

def run(name):
    torch.manual_seed(0)
    spec = models.decoder_spec(name)  # (train imported the decoders that live in files of their own)
    model = spec.build(vocab_size=40, encoder_dim=24, embed_dim=16, attention_dim=16, decoder_dim=20, dropout=0.0,
                       hidden_dim=20)
    net = build.distributed(model, torch.device("cpu"))
    optimizer = loops.adam(model.parameters(), 1e-2)
    g = torch.Generator().manual_seed(1)
    feats = {f"im{i}": torch.randn(9, 24, generator=g) for i in range(15)}
    pairs = [(f"im{i}", [2] + torch.randint(4, 40, (int(torch.randint(1, 9, (1,), generator=g)),),
                                            generator=g).tolist() + [3]) for i in range(15)]
    losses, grads = [], None
    for epoch in (1, 2):  # batches of 7, 7 and 1: the last leaves rank 1 without rows
        for images, caps, lengths in prepare.batches(pairs, 7, torch.Generator().manual_seed(epoch)):
            share = None
            if dist.active():
                images, caps, lengths, share = loops.rank_share(images, caps, lengths, spec.loss_unit)
            x = torch.stack([feats[i] for i in images])
            parts = loops.train_step(net, optimizer, x, caps, lengths, 1.0, 5.0, 0.0, share)
            losses.append([float(parts[k]) for k in ("loss", "ce", "att")])
            if grads is None:  # after the first step's backward (and all-reduce)
                grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return {"losses": losses, "rank_grads": dist.gather({dist.rank(): grads}), "weights": model.state_dict()}

dist.init("cpu")
out = {name: run(name) for name in ("soft", "lookback", "multilabel")}
if dist.is_main():
    torch.save(out, sys.argv[1])
dist.finish()
"""


# `python -m capkit.train` that SIGKILLs torchrun and itself right after the first epoch's checkpoint (every rank
# runs the hook once the ranks left the epoch together): a kill at a known point, not a race against a poll
KILLED_AFTER_EPOCH_1 = r"""
import contextlib, os, signal, sys
from capkit import fit, train

def stop(state, config):
    if state.epoch == 1:
        with contextlib.suppress(ProcessLookupError):  # (the other rank may have killed torchrun already)
            os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

fit.EPOCH_HOOKS.append(stop)
train.main(sys.argv[1:])
"""


def env():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def torchrun(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def test_two_ranks_train_like_one_process(tmp_path):
    script = tmp_path / "steps.py"
    script.write_text(SCRIPT)
    one = subprocess.Popen([sys.executable, str(script), str(tmp_path / "one.pt")], env=env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    two = subprocess.run(torchrun(str(script), str(tmp_path / "two.pt")), env=env(), capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert one.wait(timeout=300) == 0, one.stdout.read()[-3000:]
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for name in ("soft", "lookback", "multilabel"):  # a mean over tokens; over images (the set model)
        a, b = one[name], two[name]
        assert len(a["losses"]) == len(b["losses"]) == 6
        assert torch.allclose(torch.tensor(a["losses"]), torch.tensor(b["losses"]), rtol=1e-5, atol=1e-6)
        (single,), (rank0, rank1) = a["rank_grads"], b["rank_grads"]
        for name, g in single.items():
            # the ranks trained on different rows, so equal gradients mean DDP averaged them (every parameter,
            # also those the hand-written ops hand out late), and the average is one process's gradient
            assert torch.equal(rank0[name], rank1[name]), name
            assert torch.allclose(rank0[name], g, rtol=1e-4, atol=1e-6), name
        for name, w in a["weights"].items():
            assert torch.allclose(b["weights"][name], w, rtol=1e-4, atol=1e-5), name


def epochs_done(folder) -> int:
    try:
        return len(json.loads((folder / "history.json").read_text()))
    except (OSError, ValueError):
        return 0


def test_killed_distributed_run_resumes(sample_dir, tmp_path):
    from capkit import store, train
    from capkit.settings import preset  # (what the command line builds: the default preset and the flags)

    # hashtags: no Okt tokenizer and no METEOR to start (two JVMs less), the same training code
    settings = dict(data_dir=str(sample_dir), smoke=True, target="hashtag", epochs=3, patience=10, batch_size=8,
                    dropout=0.0, search="beam", beam_size=2, encoder="efficientnet_lite0")
    # a cache of its own: the first launch extracts the features, sharded over the two ranks
    flags = [str(x) for k, v in settings.items() for x in (f"--{k}", v)] + ["--cache_dir", str(tmp_path / "c2")]
    folder = tmp_path / "two" / "efficientnet_lite0-soft-hashtag"
    command = torchrun("-m", "capkit.train", *flags, "--run_dir", str(tmp_path / "two"))
    script = tmp_path / "killed_after_epoch_1.py"
    script.write_text(KILLED_AFTER_EPOCH_1)
    killed = torchrun(str(script), *flags, "--run_dir", str(tmp_path / "two"))
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.run(killed, env=env(), stdout=log, stderr=subprocess.STDOUT, timeout=600)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    time.sleep(1)  # (the ranks, orphaned for an instant, are gone)
    done = epochs_done(folder)
    assert done == 1 and not (folder / "metrics.json").exists(), (tmp_path / "killed.log").read_text()[-3000:]

    again = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming efficientnet_lite0-soft-hashtag after epoch {done}" in again.stdout
    history = json.loads((folder / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]

    # the same run in one process, uninterrupted (in this process: the same code path without torchrun)
    one = preset("default", **settings, run_dir=str(tmp_path / "one"), cache_dir=str(tmp_path / "c1"))
    train.train(one, progress=False)
    # the features the two ranks extracted together are those one process extracts: the same entries, the same
    # metadata, and the same numbers up to float16 rounding (torchrun's workers run one thread each, this process
    # as many as torch likes, and a convolution's summation order follows the thread count)
    entries = sorted(p.name for p in (tmp_path / "c1" / "features").iterdir() if p.suffix != ".lock")
    assert entries == sorted(p.name for p in (tmp_path / "c2" / "features").iterdir() if p.suffix != ".lock")
    assert any(name.endswith(".f16") for name in entries)
    for name in entries:
        mine, theirs = (tmp_path / "c2" / "features" / name), (tmp_path / "c1" / "features" / name)
        if name.endswith(".json"):
            assert json.loads(mine.read_text()) == json.loads(theirs.read_text())
        else:
            dtype = np.float16 if name.endswith(".f16") else np.float32
            a, b = np.fromfile(mine, dtype=dtype), np.fromfile(theirs, dtype=dtype)
            assert a.shape == b.shape and a.any()
            assert np.allclose(a.astype(np.float32), b.astype(np.float32), rtol=2e-3, atol=2e-3), name
    single = json.loads((one.path / "history.json").read_text())
    for mine, theirs in zip(history, single):
        for key in ("train_loss", "train_ce", "train_att", "val_loss"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4), key
    a = store.load_checkpoint(folder / "last.pt")["model"]
    b = store.load_checkpoint(one.path / "last.pt")["model"]
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5) for k in b)
    mine, theirs = (json.loads((f / "metrics.json").read_text()) for f in (folder, one.path))
    assert mine["n"] == theirs["n"] and mine["test"] == pytest.approx(theirs["test"], abs=1e-6)


def test_command_line_flags_follow_the_config_fields():
    from capkit import settings

    config, progress = settings.parse_args(["--encoder", "efficientnet_lite0_deep", "--smoke", "true", "--epochs", "3",
                                         "--lr", "1e-3", "--max_vocab", "none", "--mbr-temperature", "0.3",
                                         "--run-name", "x", "--quiet"])
    assert (config.encoder, config.smoke, config.epochs, config.lr) == ("efficientnet_lite0_deep", True, 3, 1e-3)
    assert config.max_vocab is None and config.mbr_temperature == 0.3 and config.run_name == "x" and not progress
    assert settings.parse_args(["--max_vocab", "500", "--freeze_embeddings", "false"])[0].max_vocab == 500
    defaults, progress = settings.parse_args([])
    assert defaults == settings.preset("default") and progress
    study, _ = settings.parse_args(["--preset", "study", "--epochs", "2"])
    assert study == settings.preset("study", epochs=2) and study.overrides == {"epochs": 2}
    with pytest.raises(SystemExit):
        settings.parse_args(["--smoke", "maybe"])
