"""Inference: one dispatch for every decoder and search. ``predict`` decodes the records of a split (beam search,
greedy, MBR for sequence decoders; the validation-chosen rule for set decoders), batched, under torchrun too.

Images already encoded decode through :mod:`capkit.decoding` (the same dispatch a loaded run uses).

This module imports ``decoding``, ``dist``, ``multilabel``, ``prepare``, ``retrieval`` and ``targets``.
"""

from __future__ import annotations

import torch

from capkit import dist, multilabel
from capkit.decoding import choose_tags, decode_features
from capkit.prepare import Prepared
from capkit.retrieval import (VOTE_SIZES, bank, bank_votes, blend_votes, mbr_evidence, reference_ids,
                              retrieval_vectors, training_cider)
from capkit.targets import target


def decode_batch(device: torch.device) -> int:
    """Images decoded at once by default on ``device``."""
    return 256 if device.type == "cuda" else 64


def predict(model, prep: Prepared, split: str, beam_size: int = 1, limit: int | None = None,
            batch_size: int | None = None, search: str = "beam", rule: dict | None = None) -> list[dict]:
    """Decode every record of a split (batched): tokens, score, finished, attention maps.

    ``search="beam"``: beam search (greedy when ``beam_size`` is 1). ``search="mbr"``: minimum Bayes-risk
    decoding (:mod:`capkit.mbr`; ``config.mbr_samples`` at ``config.mbr_temperature``, CIDEr-D statistics from
    the training references, sampling seeded by the run's seed; no attention maps).
    ``batch_size`` images at once: by default 64 on the CPU, 256 on CUDA (where a step costs about the same for
    64 or 256 rows: kernel launches, not arithmetic, set its time).

    Under torchrun every rank decodes every world_size-th batch (each image in the batch it has in one process,
    so the results are one process's) and all ranks get all results, in order. MBR is the exception: one
    sampling stream runs through its batches in order, so rank 0 decodes them all (the others wait) to draw
    the samples one process draws.

    A set decoder (``DecoderSpec.search == "set"``, e.g. ``multilabel``) needs no search: its tag scores go
    through ``rule`` (:func:`set_rule`: top-k or a threshold, chosen on the validation split when not given)."""
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or decode_batch(device)
    if prep.config.decodes_sets:
        return predict_set(model, prep, split, rule or set_rule(model, prep), limit, batch_size)
    recs = prep.records[split][:limit]
    mine = {}  # first record of a batch -> its results, for the batches this rank decodes
    cfg = prep.config
    if search == "mbr":
        refs = reference_ids(prep) if target(cfg.target).mbr_consensus else None  # (encoded once for both)
        cider = training_cider(refs) if refs is not None else None
        evidence = (mbr_evidence(prep, split, cfg.mbr_neighbours, limit, refs)
                    if cider is not None and cfg.mbr_neighbours else None)
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        batch_size = max(1, batch_size // 4)  # each image is mbr_samples rows
        for i in range(0, len(recs), batch_size) if dist.is_main() else ():
            feats = prep.features([r.image for r in recs[i:i + batch_size]]).to(device)
            picked = decode_features(model, feats, cfg, "mbr", cider=cider, generator=gen,
                                     evidence=evidence[i:i + batch_size] if evidence else None)
            mine[i] = [{**p, "tokens": prep.vocab.decode(p["tokens"])} for p in picked]
        return [h for chunk in dist.gather(mine) for h in chunk]
    for i in range(0, len(recs), batch_size)[dist.rank()::dist.world_size()]:
        feats = prep.features([r.image for r in recs[i:i + batch_size]]).to(device)
        hyps = decode_features(model, feats, cfg, "beam", beam_size=beam_size)
        mine[i] = [{**h, "tokens": prep.vocab.decode(h["tokens"])} for h in hyps]
    return [h for chunk in dist.gather(mine) for h in chunk]


def set_scores(model, prep: Prepared, split: str, limit: int | None = None,
               batch_size: int | None = None) -> torch.Tensor:
    """A set decoder's tag probabilities [n, V] (float32, CPU) for the records of a split, in batches. (Cheap: every
    rank computes them all under torchrun.)"""
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or decode_batch(device)
    recs = prep.records[split][:limit]
    out = []
    with torch.inference_mode():
        for i in range(0, len(recs), batch_size):
            out.append(model.scores(prep.features([r.image for r in recs[i:i + batch_size]]).to(device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, len(prep.vocab))


def set_rule(model, prep: Prepared) -> dict:
    """A set decoder's output rule (top-k or a threshold: :func:`capkit.multilabel.choose_rule`), chosen on the
    validation split and nothing else, against its true tags (strings: tags outside the vocabulary count as
    misses, as in the scores).

    With ``config.set_neighbours`` the choice also covers the neighbours' votes: k in ``retrieval.VOTE_SIZES``
    and weight w in 0 + ``multilabel.BLEND_WEIGHTS`` (:func:`capkit.multilabel.blend`); the rule then holds
    ``neighbours`` (k) and ``weight`` (w), w = 0 when the model alone is best (ties: the model alone, then the
    smaller k and w)."""
    probs = set_scores(model, prep, "val")
    true = [refs[0] for refs in prep.tokens["val"]]

    def choose(p):
        return multilabel.choose_rule(p, true, max_k=prep.config.max_hashtags, labels=prep.vocab.itos)

    best = {**choose(probs), "neighbours": 0, "weight": 0.0}
    if prep.config.set_neighbours and len(probs):
        vectors, _ = retrieval_vectors(prep)
        votes_by_k = bank_votes(bank(prep), vectors([r.image for r in prep.records["val"]]),
                                     VOTE_SIZES, probs.size(1))
        for k, votes in votes_by_k.items():
            for w in multilabel.BLEND_WEIGHTS:
                rule = choose(multilabel.blend(probs, votes, w))
                if rule["val_f1"] > best["val_f1"]:
                    best = {**rule, "neighbours": k, "weight": w}
    return best


def predict_set(model, prep: Prepared, split: str, rule: dict, limit: int | None = None,
                batch_size: int | None = None) -> list[dict]:
    """:func:`predict` for a set decoder: each image's tags under ``rule``, likeliest first; ``score`` is the sum
    of the chosen (blended, when the rule has a ``weight``) tags' log-probabilities; no attention maps."""
    probs = set_scores(model, prep, split, limit, batch_size)
    if rule.get("weight"):
        vectors, _ = retrieval_vectors(prep)
        probs = blend_votes(probs, rule, bank(prep), vectors([r.image for r in prep.records[split][:limit]]))
    return [{"tokens": [prep.vocab.itos[i] for i in ids], "score": score, "finished": True, "alphas": None}
            for ids, score in choose_tags(probs, rule)]
