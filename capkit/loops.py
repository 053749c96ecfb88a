"""The epoch loops every trainer shares: a cross-entropy epoch over (image, caption) pairs (:func:`train_epoch`,
one :func:`train_step` a batch; under torchrun each rank's share of the batch, :func:`rank_share` /
:func:`shared_loss`), a self-critical epoch (:func:`scst_epoch`), the validation cross-entropy
(:func:`teacher_forced_loss`) and the optimiser (:func:`adam`). ``capkit.fit.fit`` runs them for a run;
``capkit.baselines``' trained oracle runs :func:`train_epoch` too.

This module imports ``dist``, ``models``, ``prepare``, ``scst``, ``settings`` and ``text``.
"""

from __future__ import annotations

import math

import torch

from capkit import dist, models, scst, text
from capkit.prepare import Prepared, batches
from capkit.settings import TrainConfig


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
