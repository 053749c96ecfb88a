"""A run folder's training files and resuming from them: the training state a checkpoint restores (:class:`State`),
what a checkpoint holds (weights, optimiser, settings, vocabulary, state, RNG), writing one after each epoch with
the history, the run's ``config.json`` / ``vocab.json`` / ``detokenizer.json``, reading a checkpoint (under
torchrun: rank 0's, sent to every rank), copying a run folder's checkpoints to start another run
(``start_from``), the check that a run folder holds this very run before it is resumed (:class:`RunExists`
otherwise: nothing is ever overwritten), and a trained run's model read back for decoding (:func:`load_trained`).

This module imports ``detok``, ``dist``, ``models``, ``settings``, ``store`` and ``text``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from capkit import dist, models, store, text
from capkit.detok import Detokenizer
from capkit.settings import RESUMABLE_CHANGES, TrainConfig


class RunExists(RuntimeError):
    """The run folder already holds a run trained with other settings (it is never overwritten)."""


def read_checkpoint(path, device) -> dict | None:
    """The checkpoint at ``path`` (None when there is none). Under torchrun rank 0 reads it and sends it to the
    other ranks (on CPU), so that every rank resumes from the same state and only rank 0 needs the run folder."""
    if not dist.active():
        return store.load_checkpoint(path, map_location=device) if Path(path).exists() else None
    return dist.broadcast(store.load_checkpoint(path) if dist.is_main() and Path(path).exists() else None)


@dataclass
class State:
    """The training state that a checkpoint restores."""

    epoch: int = 0  # epochs completed
    history: list = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    scst_epoch: int = 0  # self-critical epochs completed (they follow the cross-entropy epochs)


def checkpoint(model, optimizer, config: TrainConfig, vocab, state: State) -> dict:
    return {"format": store.CKPT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "config": config.to_dict(), "decoder_config": model.config.to_dict(), "vocab": vocab.to_dict(),
            "state": asdict(state), "rng": torch.get_rng_state()}


def save_epoch(model, optimizer, config: TrainConfig, vocab, state: State, improved: bool) -> None:
    """After an epoch: ``last.pt``, ``best.pt`` too when the epoch is the best so far (written first: a run killed
    in between resumes from the previous ``last.pt`` and redoes the epoch), and ``history.json``."""
    ckpt = checkpoint(model, optimizer, config, vocab, state)
    if improved:
        store.save_checkpoint(ckpt, config.path / "best.pt")
    store.save_checkpoint(ckpt, config.path / "last.pt")
    store.write_json(config.path / "history.json", state.history)


def write_run_files(prep) -> None:
    """A run folder's ``config.json``, ``vocab.json`` and (runs that need one) ``detokenizer.json``, from the run's
    :class:`capkit.prepare.Prepared`."""
    config = prep.config
    store.write_json(config.path / "config.json", config.to_dict())
    prep.vocab.save(config.path / "vocab.json", tokenizer=prep.target.token_form(config), source_split="train",
                    target=config.target)
    if prep.detok is not None:
        prep.detok.save(config.path / "detokenizer.json")


def start_from(config: TrainConfig) -> None:
    """A new run folder (no ``last.pt``) with ``config.start_from`` set continues that run: its files are copied
    in (:func:`copy_run`)."""
    if config.start_from and not (config.path / "last.pt").exists():
        copy_run(store.project_path(config.start_from), config.path)


def copy_run(src: Path, dst: Path) -> None:
    """Copy the checkpoints and history of the run folder ``src`` into ``dst`` (each file atomically), so that
    ``dst`` continues where ``src`` stopped; ``src`` is left as it is."""
    if not (src / "last.pt").exists():
        raise FileNotFoundError(f"start_from={src}: no last.pt there (train that run first)")
    for name in ("best.pt", "history.json", "last.pt"):  # last.pt last: its presence means a complete copy
        if (src / name).exists():
            store.copy_atomic(src / name, dst / name)


def check_resumable(ckpt: dict, config: TrainConfig, vocab: text.Vocab, out: Path) -> None:
    """Raise RunExists unless the checkpoint was made by the same run: the same settings (but those in
    RESUMABLE_CHANGES) and a vocabulary with the same tokens in the same order (its ids are the weights' rows)."""
    old = TrainConfig.from_dict(ckpt["config"]).to_dict()
    free = set(RESUMABLE_CHANGES)
    if not ckpt["state"].get("scst_epoch"):  # no self-critical epoch yet: its settings shaped nothing so far
        free |= {k for k in old if k.startswith("scst_")}
    changed = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in config.to_dict().items()
               if old.get(k) != v and k not in free]
    old_vocab = text.Vocab.from_dict(ckpt["vocab"])
    if not vocab.same_tokens(old_vocab):
        changed.append(f"the vocabulary ({len(old_vocab)} -> {len(vocab)} tokens: the data or its tokens changed)")
    if changed:
        raise RunExists(f"{out} holds a run made with other settings ({'; '.join(changed)}); nothing was "
                        f"overwritten. Give this run another run_name, or delete that folder to start it afresh.")


def load_trained(path: Path, device: str = "cpu", which: str = "best"):
    """A run folder's model back for decoding: ``(config, model, vocab, detok)`` from ``<path>/best.pt`` (or
    ``last.pt``), the decoder rebuilt through the registry (``spec.load(checkpoint["decoder_config"])``), in eval
    mode on ``device``; ``detok`` is None for a run without ``detokenizer.json``."""
    ckpt = store.load_checkpoint(path / f"{which}.pt", map_location=device)
    config = TrainConfig.from_dict(ckpt["config"])
    model = models.decoder_spec(config.decoder).load(ckpt["decoder_config"])
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    detok = Detokenizer.load(path / "detokenizer.json") if (path / "detokenizer.json").exists() else None
    return config, model, text.Vocab.from_dict(ckpt["vocab"]), detok
