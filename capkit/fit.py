"""Fitting a run: its model and optimiser (resumed from the run folder's ``last.pt``), the cross-entropy epochs, then
the self-critical ones, a checkpoint and a history row after each (:func:`fit`). The epoch loops themselves are
:mod:`capkit.loops`'; checkpoints and resuming, :mod:`capkit.checkpoints`'; a whole run (prepare, fit, test, curves)
and its command line, :mod:`capkit.train`.

``EPOCH_HOOKS``: callables ``hook(state, config)`` run after every epoch, once its checkpoint and history are
written (progress reports; tests that stop a run at a known point).

This module imports ``build``, ``checkpoints``, ``dist``, ``evaluation``, ``loops`` and ``retrieval``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from capkit import checkpoints, dist
from capkit.build import build_model, distributed, load_word_vectors
from capkit.checkpoints import State, check_resumable, read_checkpoint
from capkit.dist import resolve_device, set_seed
from capkit.evaluation import best_epoch, val_score
from capkit.loops import adam, scst_epoch, teacher_forced_loss, train_epoch
from capkit.retrieval import scst_reward

if TYPE_CHECKING:  # annotations only
    from capkit.prepare import Prepared
    from capkit.settings import TrainConfig


# called as hook(state, config) after every epoch, once its checkpoint and history are written
EPOCH_HOOKS: list = []


@dataclass
class Session:
    """What the epochs of one :func:`fit` call share."""

    prep: Prepared
    model: torch.nn.Module
    net: torch.nn.Module  # the model itself; under torchrun its DDP-wrapped objective
    optimizer: torch.optim.Optimizer
    params: list  # the parameters that train (self-critical epochs start a fresh optimiser on them)
    state: State
    device: torch.device
    progress: bool  # (rank 0 only)
    pairs: list  # (image, token ids) of the training split, one per reference
    val_pairs: list
    done: int = 0  # epochs run by this call

    @property
    def config(self) -> TrainConfig:
        return self.prep.config


def fit(prep: Prepared, progress: bool = True, stop_after: int | None = None) -> tuple[torch.nn.Module, State]:
    """Train (or resume) the run; returns the model with the best validation weights loaded.

    Cross-entropy epochs (learning rate ``config.lr_at(epoch)``) until ``epochs`` or ``patience`` epochs without a
    better validation score, then ``scst_epochs`` self-critical epochs from the best weights (:mod:`capkit.scst`).
    The best epoch of either phase (the highest score of its target's ``selection``) is ``best.pt``; ``last.pt``
    after every epoch. A run folder with ``last.pt`` resumes from it when the run's settings and the vocabulary's
    tokens are the same (a finished run trains nothing more). ``stop_after`` ends the call after that many epochs
    of this call.
    """
    run = start(prep, progress)
    config, state = run.config, run.state

    def more() -> bool:
        return stop_after is None or run.done < stop_after

    while state.scst_epoch == 0 and state.epoch < config.epochs and state.bad_epochs < config.patience and more():
        cross_entropy_epoch(run)
    xe_done = state.epoch >= config.epochs or state.bad_epochs >= config.patience
    if config.scst_epochs and xe_done and state.scst_epoch < config.scst_epochs:
        reward = start_self_critical(run)
        while state.scst_epoch < config.scst_epochs and more():
            self_critical_epoch(run, *reward)
    best = read_checkpoint(config.path / "best.pt", run.device)
    if best is not None:
        run.model.load_state_dict(best["model"])
    run.model.eval()
    return run.model, state


def start(prep: Prepared, progress: bool = True) -> Session:
    """The run's model and optimiser, resumed from the run folder's ``last.pt`` when it has one (or a copy of
    ``start_from``'s); writes ``config.json``, ``vocab.json`` and ``detokenizer.json`` (rank 0)."""
    config = prep.config
    out = config.path
    main = dist.is_main()  # under torchrun only rank 0 writes the run folder (and prints)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    set_seed(config.seed)
    model = build_model(config, len(prep.vocab)).to(device)
    vec_report = load_word_vectors(model, config, prep.vocab)
    if vec_report is not None:
        prep.info["word_vectors"] = vec_report
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adam(params, config.lr)
    state = State()
    if main:
        checkpoints.start_from(config)
    ckpt = read_checkpoint(out / "last.pt", device)  # under torchrun: rank 0's, on every rank
    if ckpt is not None:  # resume
        check_resumable(ckpt, config, prep.vocab, out)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = State(**ckpt["state"])
        torch.set_rng_state(ckpt["rng"].cpu())
        if progress and main:
            print(f"resuming {config.run_name} after epoch {state.epoch}"
                  + (f" and {state.scst_epoch} self-critical epochs" if state.scst_epoch else ""))
    if main:
        checkpoints.write_run_files(prep)
    return Session(prep, model, distributed(model, device), optimizer, params, state, device, progress and main,
                   prep.pairs("train"), prep.pairs("val"))


def cross_entropy_epoch(run: Session) -> None:
    """One teacher-forced epoch, its validation scores, its checkpoint (:func:`end_epoch`)."""
    config, state = run.config, run.state
    epoch = state.epoch + 1
    lr = config.lr_at(epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    t0 = time.perf_counter()
    tot = train_epoch(run.net, run.optimizer, run.prep.features, run.pairs, config, epoch, run.device, run.progress)
    train_s = time.perf_counter() - t0
    val_loss = teacher_forced_loss(run.model, run.prep, run.val_pairs, run.device)
    v = val_score(run.model, run.prep, "val")
    row = {"epoch": epoch, "phase": "xe", "lr": lr, "train_loss": tot["loss"], "train_ce": tot["ce"],
           "train_att": tot["att"], "val_loss": val_loss, **{f"val_{k}": x for k, x in v.items()},
           "train_seconds": train_s, "seconds": time.perf_counter() - t0}
    state.epoch = epoch
    state.bad_epochs = 0 if v["score"] > state.best_score else state.bad_epochs + 1
    end_epoch(run, row, f"epoch {epoch}", f"train CE {tot['ce']:.3f}  val CE {val_loss:.3f}")


def start_self_critical(run: Session) -> tuple:
    """Before the first self-critical epoch: the best cross-entropy weights and a fresh optimiser. Returns the
    reward's data: the training images, their references' CIDEr-D vectors and the statistics."""
    config = run.config
    if run.state.scst_epoch == 0:
        best = read_checkpoint(config.path / "best.pt", run.device)  # (none when no epoch had a finite score)
        if best is not None:
            run.model.load_state_dict(best["model"])
        run.optimizer = adam(run.params, config.scst_lr)
    return scst_reward(run.prep, config.scst_neighbours)


def self_critical_epoch(run: Session, images, ref_vecs, cider) -> None:
    """One self-critical epoch, its validation scores, its checkpoint (:func:`end_epoch`)."""
    config, state = run.config, run.state
    k = state.scst_epoch + 1
    t0 = time.perf_counter()
    tot = scst_epoch(run.net, run.optimizer, run.prep.features, images, ref_vecs, cider, config, k, run.device,
                     run.progress)
    train_s = time.perf_counter() - t0
    v = val_score(run.model, run.prep, "val")
    row = {"epoch": state.epoch + k, "phase": "scst", "lr": config.scst_lr, "train_loss": tot["loss"],
           "train_reward": tot["reward"], "train_baseline": tot["baseline"],
           "val_loss": teacher_forced_loss(run.model, run.prep, run.val_pairs, run.device),
           **{f"val_{key}": x for key, x in v.items()}, "train_seconds": train_s,
           "seconds": time.perf_counter() - t0}
    state.scst_epoch = k
    end_epoch(run, row, f"self-critical epoch {k}", f"reward {tot['reward']:.3f} (greedy {tot['baseline']:.3f})")


def end_epoch(run: Session, row: dict, label: str, summary: str) -> None:
    """Add the epoch's row to the history; write ``last.pt`` (and ``best.pt`` when it is the best so far) and
    ``history.json``; then the EPOCH_HOOKS and the progress line."""
    config, state = run.config, run.state
    state.history.append(row)
    state.best_epoch, state.best_score = best_epoch(state.history, config.target)
    improved = state.best_epoch == row["epoch"]
    if dist.is_main():
        checkpoints.save_epoch(run.model, run.optimizer, config, run.prep.vocab, state, improved)
    dist.barrier()  # the ranks leave the epoch together, its checkpoint written
    for hook in EPOCH_HOOKS:  # (callers' observers: progress reports, tests that stop a run at a known point)
        hook(state, config)
    run.done += 1
    if run.progress:
        name = run.prep.target.selection_label
        print(f"{label}: {summary}  val {name} {row['val_score']:.4f}{'  *' if improved else ''}  "
              f"({row['seconds']:.1f} s)")
