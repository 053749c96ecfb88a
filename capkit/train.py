"""Training: the model, checkpoints and resuming, the cross-entropy and self-critical epochs, DDP shares, curves,
and ``train(config)`` / the command line that run a whole run.

A run is one (encoder, decoder, target) model; the decoder is any entry of the registry (:mod:`capkit.decoders`).
``train(config)`` does it all: :func:`capkit.prepare.prepare`, :func:`fit`, :func:`capkit.evaluation.test`; the
notebook ``03_train`` calls the same steps one by one; ``python -m capkit.train`` is the same from a shell (or under
torchrun). Its settings: :mod:`capkit.settings`; inference: :mod:`capkit.inference`.

Run folder ``run_dir/<run_name>/``: ``config.json``, ``vocab.json``, ``detokenizer.json``,
``last.pt`` and ``best.pt`` (weights, optimiser, config and vocabulary; loaded with
``weights_only=True``), ``history.json``, ``curves.png``, ``metrics.json``, ``predictions.jsonl``.
Every file is written through :mod:`capkit.store` (a temporary file and a rename): a killed run
leaves the previous complete version, and ``train`` with the same config resumes from ``last.pt``.
Reading a finished run back (to caption images) is :mod:`capkit.runs`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from capkit import data as D
from capkit import dist, encoders, metrics, models, scst, settings, store, targets, text, word_vectors
from capkit.evaluation import best_epoch, test, val_score
from capkit.prepare import Prepared, batches, prepare, resolve_device, set_seed
from capkit.retrieval import scst_data, scst_references
from capkit.settings import RESUMABLE_CHANGES, TrainConfig, parse_args  # noqa: F401  (parse_args: the command line's)


# called as hook(state, config) after every epoch, once its checkpoint and history are written
EPOCH_HOOKS: list = []


# ----------------------------------------------------------------------------- model and checkpoints


def build_model(config: TrainConfig, vocab_size: int) -> torch.nn.Module:
    """The run's decoder (``config.decoder``, from the registry), untrained, with the run's sizes."""
    return models.decoder_spec(config.decoder).build(
        options=config.decoder_options.get(config.decoder), vocab_size=vocab_size,
        encoder_dim=encoders.ENCODERS[config.encoder].dim, embed_dim=config.embed_dim,
        attention_dim=config.attention_dim, decoder_dim=config.decoder_dim, dropout=config.dropout, gate=config.gate)


class RunExists(RuntimeError):
    """The run folder already holds a run trained with other settings (it is never overwritten)."""


def read_checkpoint(path, device) -> dict | None:
    """The checkpoint at ``path`` (None when there is none). Under torchrun rank 0 reads it and sends it to the
    other ranks (on CPU), so that every rank resumes from the same state and only rank 0 needs the run folder."""
    if not dist.active():
        return store.load_checkpoint(path, map_location=device) if Path(path).exists() else None
    return dist.broadcast(store.load_checkpoint(path) if dist.is_main() and Path(path).exists() else None)


def distributed(model: torch.nn.Module, device: torch.device):
    """``model`` itself in one process; under torchrun its :class:`capkit.models.Objective` wrapped in
    DistributedDataParallel (which also makes every rank start from rank 0's weights)."""
    if not dist.active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    devices = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(models.Objective(model), device_ids=devices)


# ----------------------------------------------------------------------------- training


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


def fit(prep: Prepared, progress: bool = True, stop_after: int | None = None) -> tuple[torch.nn.Module, State]:
    """Train (or resume) the run; returns the model with the best validation weights loaded.

    Cross-entropy epochs (learning rate ``config.lr_at(epoch)``) until ``epochs`` or ``patience`` epochs without a
    better validation score, then ``scst_epochs`` self-critical epochs from the best weights (:mod:`capkit.scst`).
    The best epoch of either phase (the highest score of its target's ``selection``) is ``best.pt``. ``last.pt`` after every epoch;
    a run folder with ``last.pt`` resumes from it when the run's settings and the vocabulary's tokens are the
    same (a finished run trains nothing more). ``stop_after`` ends the call after that many epochs of this call.
    """
    config = prep.config
    out = config.path
    main = dist.is_main()  # under torchrun only rank 0 writes the run folder (and prints)
    progress = progress and main
    if main:
        out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    set_seed(config.seed)
    model = build_model(config, len(prep.vocab)).to(device)
    if config.word_vectors:
        matrix, vec_report = word_vectors.load_word_vectors(config.word_vectors, prep.vocab, dim=config.embed_dim,
                                                    seed=config.seed)
        model.load_embeddings(matrix, freeze=config.freeze_embeddings)
        prep.info["word_vectors"] = vec_report
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adam(params, config.lr)
    state = State()
    last = out / "last.pt"
    if main and not last.exists() and config.start_from:
        copy_run(D.project_path(config.start_from), out)
    ckpt = read_checkpoint(last, device)  # under torchrun: rank 0's, on every rank
    if ckpt is not None:  # resume
        check_resumable(ckpt, config, prep.vocab, out)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = State(**ckpt["state"])
        torch.set_rng_state(ckpt["rng"].cpu())
        if progress:
            print(f"resuming {config.run_name} after epoch {state.epoch}"
                  + (f" and {state.scst_epoch} self-critical epochs" if state.scst_epoch else ""))
    if main:
        store.write_json(out / "config.json", config.to_dict())
        prep.vocab.save(out / "vocab.json", tokenizer=targets.target(config.target).token_form(config),
                        source_split="train", target=config.target)
        if prep.detok is not None:
            prep.detok.save(out / "detokenizer.json")
    net = distributed(model, device)  # one process: the model itself; under torchrun its DDP-wrapped objective
    pairs = prep.pairs("train")
    val_pairs = prep.pairs("val")
    done_now = 0

    def end_epoch(row: dict, label: str) -> None:
        nonlocal done_now
        summary = row.pop("summary")
        state.history.append(row)
        state.best_epoch, state.best_score = best_epoch(state.history, config.target)
        improved = state.best_epoch == row["epoch"]
        if main:
            ckpt = checkpoint(model, optimizer, config, prep.vocab, state)
            if improved:
                store.save_checkpoint(ckpt, out / "best.pt")
            store.save_checkpoint(ckpt, last)
            store.write_json(out / "history.json", state.history)
        dist.barrier()  # the ranks leave the epoch together, its checkpoint written
        for hook in EPOCH_HOOKS:  # (callers' observers: progress reports, tests that stop a run at a known point)
            hook(state, config)
        done_now += 1
        if progress:
            name = targets.target(config.target).selection_label
            print(f"{label}: {summary}  val {name} {row['val_score']:.4f}{'  *' if improved else ''}  "
                  f"({row['seconds']:.1f} s)")

    while state.scst_epoch == 0 and state.epoch < config.epochs and state.bad_epochs < config.patience:
        if stop_after is not None and done_now >= stop_after:
            break
        epoch = state.epoch + 1
        lr = config.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        tot = train_epoch(net, optimizer, prep.features, pairs, config, epoch, device, progress)
        train_s = time.perf_counter() - t0
        val_loss = teacher_forced_loss(model, prep, val_pairs, device)
        v = val_score(model, prep, "val")
        row = {"epoch": epoch, "phase": "xe", "lr": lr, "train_loss": tot["loss"], "train_ce": tot["ce"],
               "train_att": tot["att"], "val_loss": val_loss, **{f"val_{k}": x for k, x in v.items()},
               "train_seconds": train_s, "seconds": time.perf_counter() - t0,
               "summary": f"train CE {tot['ce']:.3f}  val CE {val_loss:.3f}"}
        state.epoch = epoch
        state.bad_epochs = 0 if v["score"] > state.best_score else state.bad_epochs + 1
        end_epoch(row, f"epoch {epoch}")

    xe_done = state.epoch >= config.epochs or state.bad_epochs >= config.patience
    if config.scst_epochs and xe_done and state.scst_epoch < config.scst_epochs:
        if state.scst_epoch == 0:  # start from the best cross-entropy weights, with a fresh optimiser
            best = read_checkpoint(out / "best.pt", device)  # (none when no epoch had a finite validation score)
            if best is not None:
                model.load_state_dict(best["model"])
            optimizer = adam(params, config.scst_lr)
        images, ref_ids = scst_data(prep)
        cider = metrics.CiderD(ref_ids)  # document frequencies: the training references, never the neighbours'
        ref_vecs = [cider.refs(r) for r in scst_references(prep, images, ref_ids, config.scst_neighbours)]
        while state.scst_epoch < config.scst_epochs:
            if stop_after is not None and done_now >= stop_after:
                break
            k = state.scst_epoch + 1
            t0 = time.perf_counter()
            tot = scst_epoch(net, optimizer, prep.features, images, ref_vecs, cider, config, k, device, progress)
            train_s = time.perf_counter() - t0
            v = val_score(model, prep, "val")
            row = {"epoch": state.epoch + k, "phase": "scst", "lr": config.scst_lr, "train_loss": tot["loss"],
                   "train_reward": tot["reward"], "train_baseline": tot["baseline"],
                   "val_loss": teacher_forced_loss(model, prep, val_pairs, device),
                   **{f"val_{key}": x for key, x in v.items()}, "train_seconds": train_s,
                   "seconds": time.perf_counter() - t0,
                   "summary": f"reward {tot['reward']:.3f} (greedy {tot['baseline']:.3f})"}
            state.scst_epoch = k
            end_epoch(row, f"self-critical epoch {k}")
    best = read_checkpoint(out / "best.pt", device)
    if best is not None:
        model.load_state_dict(best["model"])
    model.eval()
    return model, state


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


def scst_epoch(model, optimizer, features, images, ref_vecs, cider, config: TrainConfig, epoch: int, device,
               progress: bool = False) -> dict:
    """One self-critical pass over the training images, shuffled and sampled by (seed, epoch)."""
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(config.seed * 1000 + 500 + epoch)
    order = torch.randperm(len(images), generator=gen).tolist()
    tot, n = {"loss": 0.0, "reward": 0.0, "baseline": 0.0}, 0
    starts = range(0, len(order), config.scst_batch)
    for i in tqdm(starts, disable=not progress, desc=f"self-critical {epoch}/{config.scst_epochs}", leave=False):
        idx = order[i:i + config.scst_batch]
        feats = features([images[j] for j in idx]).to(device)
        ddp = model if dist.active() else None  # under torchrun: the DDP wrapper of models.Objective
        parts = scst.scst_step(ddp.module.decoder if ddp else model, optimizer, feats, [ref_vecs[j] for j in idx],
                               cider, config.scst_samples, config.decode_len, text.START_ID, text.END_ID,
                               text.UNK_ID, generator=gen, grad_clip=config.grad_clip, baseline=config.scst_baseline,
                               ddp=ddp)
        for k in tot:
            tot[k] += parts[k] * len(idx)
        n += len(idx)
    return {k: v / max(n, 1) for k, v in tot.items()}


def train_epoch(model, optimizer, features, pairs, config: TrainConfig, epoch: int, device,
                progress: bool = False) -> dict:
    """One pass over the training ``pairs`` (image, token ids), shuffled by (seed, epoch).

    ``features(images)`` returns their encoder features (from the cache: the CNN never runs here). Teacher forcing
    goes through the decoder's ``loss`` (``CaptionDecoder.loss`` steps only the captions still running: no work on
    padding).
    Returns the mean ``loss``, ``ce`` and ``att`` per caption.
    """
    from tqdm.auto import tqdm

    model.train()
    gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    if dist.active():  # each rank draws its own dropout masks, from (seed, epoch, rank): a resumed run draws the same
        torch.manual_seed(dist.rank_seed(config.seed * 1000 + epoch))
    bar = tqdm(batches(pairs, config.batch_size, gen), total=math.ceil(len(pairs) / config.batch_size),
               disable=not progress, desc=f"epoch {epoch}/{config.epochs}", leave=False)
    tot, n = {"loss": 0.0, "ce": 0.0, "att": 0.0}, 0
    for images, caps, lengths in bar:
        n_rows, share = len(images), None
        if dist.active():  # under torchrun every rank builds the same (global) batch and trains on its share
            images, caps, lengths, share = rank_share(images, caps, lengths,
                                                      models.decoder_spec(config.decoder).loss_unit)
        feats = features(images).to(device, non_blocking=True)
        parts = train_step(model, optimizer, feats, caps.to(device), lengths.to(device), config.lambda_att,
                           config.grad_clip, config.label_smoothing, share)
        for k in tot:
            tot[k] += float(parts[k]) * n_rows
        n += n_rows
        bar.set_postfix(ce=f"{float(parts['ce']):.3f}", att=f"{float(parts['att']):.2f}")
    return {k: v / max(n, 1) for k, v in tot.items()}


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with its fused update (one pass over each tensor instead of ~10; the same formula) where this torch
    has one for the parameters' device, else the standard one."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:  # older torch: no fused Adam on the CPU
        return torch.optim.Adam(params, lr=lr)


def train_step(model, optimizer, feats, captions, lengths, lambda_att: float = 1.0, grad_clip: float = 5.0,
               label_smoothing: float = 0.0, share: tuple | None = None) -> dict:
    """One optimisation step on a batch, in float32; returns the loss parts (detached).

    Under torchrun ``model`` is the DDP-wrapped objective (:func:`distributed`), the batch is this rank's share of
    the whole batch and ``share`` says what the whole holds (:func:`rank_share`); the parts returned are the whole
    batch's, on every rank.

    Also in float32 on CUDA: at the study's sizes a step there is bound by its ~5,000 kernel launches, not by
    arithmetic, and bf16 autocast only added cast kernels (an H100, batch 32: 55 ms a step with autocast, 44 ms
    without; `make bench` on the GPU). The decoder itself runs under autocast for those who want it.
    """
    if share is None:
        loss, parts = model.loss(feats, captions, lengths, lambda_att, label_smoothing)
    else:
        loss, parts = shared_loss(model, feats, captions, lengths, lambda_att, label_smoothing, *share)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    return parts


def rank_share(images, captions, lengths, unit: str = "token") -> tuple:
    """This rank's rows of a whole batch (every world_size-th one: :func:`capkit.dist.share`), and ``share`` =
    (units, captions, weight, unit): the whole batch's count of the units its loss is a mean over (``unit``, the
    decoder's ``DecoderSpec.loss_unit``: "token", the predicted tokens, or "image") and of its captions, and 1.0,
    or 0.0 for a rank left without rows (a last batch smaller than the world), which then runs the batch's first
    row at weight 0 (DDP needs every rank's gradients, even zero ones)."""
    units = int((lengths - 1).clamp(min=0).sum()) if unit == "token" else len(images)
    rows, weight = dist.share(len(images)), 1.0
    if not rows:
        rows, weight = [0], 0.0
    idx = torch.tensor(rows)
    lengths = lengths[idx]
    captions = captions[idx, : int(lengths.max())]
    return [images[j] for j in rows], captions, lengths, (units, len(images), weight, unit)


def shared_loss(net, feats, captions, lengths, lambda_att: float, label_smoothing: float, units: int,
                n_captions: int, weight: float, unit: str = "token") -> tuple:
    """This rank's term of the whole batch's loss (to backpropagate), and the whole batch's loss parts.

    A decoder's loss is a batch's summed loss S divided by a count N of units (``unit``): its predicted tokens
    (``models.objective``: the cross-entropy of every token + lambda x the attention term of every caption), or
    its images (the set model). A rank's share holds n_r of those units and S_r of that sum, and computes
    S_r / n_r; DDP then averages the ranks' gradients (their sum / W ranks). So the share's loss is rescaled to
    S_r / N * W: the ranks' average is S / N, the whole batch's loss, and the averaged gradient is one process's
    gradient on the whole batch (up to the order of float sums). The loss goes through the DDP wrapper's forward
    (``net("loss", ...)``): that is what makes DDP sync the gradients. (Predict-Forward's extra term is a mean
    over the positions that have a word after next, so it is rescaled by the token shares: one process's only
    up to those shares' ratio.)
    """
    loss, parts = net("loss", feats, captions, lengths, lambda_att, label_smoothing)
    n_r = int((lengths - 1).clamp(min=0).sum()) if unit == "token" else len(lengths)
    loss = loss * (weight * max(n_r, 1) * dist.world_size() / max(units, 1))
    ce_sum, att_sum, loss_sum = dist.all_sum([weight * float(parts["ce"]) * n_r,
                                              weight * float(parts["att"]) * len(lengths),
                                              weight * float(parts["loss"]) * n_r])
    return loss, {"ce": ce_sum / max(units, 1), "att": att_sum / max(n_captions, 1), "loss": loss_sum / max(units, 1)}


def teacher_forced_loss(model, prep: Prepared, pairs, device) -> float:
    """Validation cross-entropy with teacher forcing (a curve to watch, not the early-stopping score).

    Under torchrun each rank computes every world_size-th batch; the sums are added in batch order."""
    model.eval()
    mine = {}
    with torch.inference_mode():
        for k, (images, caps, lengths) in enumerate(batches(pairs, 128)):
            if k % dist.world_size() != dist.rank():
                continue
            feats = prep.features(images).to(device)
            _, parts = model.loss(feats, caps.to(device), lengths.to(device), 0.0, 0.0)  # parts["ce"]: its data term
            mine[k] = (float(parts["ce"]) * len(images), len(images))
    tot, n = 0.0, 0
    for ce, rows in dist.gather(mine):
        tot += ce
        n += rows
    return tot / max(n, 1)


def train(config: TrainConfig, progress: bool = True) -> dict:
    """prepare -> fit -> test, writing the whole run folder; returns the metrics. Under torchrun (after
    :func:`capkit.dist.init`) every rank calls it; only rank 0 writes and shows progress."""
    progress = progress and dist.is_main()
    prep = prepare(config, progress)
    model, _ = fit(prep, progress)
    if dist.is_main():
        plot_history(config.path)
    return test(model, prep)


def plot_history(run_path, save: bool = True):
    """Loss and validation-score curves of a run (``curves.png``)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    run_path = Path(run_path)
    h = pd.DataFrame(json.loads((run_path / "history.json").read_text()))
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(h.epoch, h.train_ce, "o-", label="train")
    a.plot(h.epoch, h.val_loss, "o-", label="val (teacher-forced)")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy per token"), a.legend()
    name = next(n for n in ("val_cider", "val_bleu1", "val_f1") if n in h)
    label = {"val_cider": "val CIDEr-D", "val_bleu1": "val BLEU-1", "val_f1": "val F1"}[name]
    b.plot(h.epoch, h[name], "o-", color="C2")
    if "phase" in h and (h.phase == "scst").any():  # self-critical epochs follow the cross-entropy ones
        b.axvline(h.epoch[h.phase == "xe"].max() + 0.5, color="grey", ls=":", label="self-critical from here")
        b.legend()
    b.set_xlabel("epoch"), b.set_ylabel(label + " (greedy, free-running)")
    fig.suptitle(run_path.name)
    fig.tight_layout()
    if save:
        fig.savefig(run_path / "curves.png", dpi=110)
    return fig


# ----------------------------------------------------------------------------- command line (and torchrun)


def main(argv=None) -> dict:
    """``python -m capkit.train [--field value ...]``, in one process or under torchrun: join torchrun's process
    group when there is one (:func:`capkit.dist.init`), then :func:`train`. Rank 0 prints the run folder and the
    test scores; returns the metrics."""
    config, progress = settings.parse_args(argv)
    dist.init(config.device)
    try:
        if dist.is_main():
            print(f"run folder: {config.path}" + (f" ({dist.world_size()} processes)" if dist.active() else ""),
                  flush=True)
        result = train(config, progress=progress)
        if dist.is_main():
            print("test:", json.dumps(result["test"], ensure_ascii=False, default=float), flush=True)
            print(f"run folder: {config.path}", flush=True)
        return result
    finally:
        dist.finish()


if __name__ == "__main__":
    main()
