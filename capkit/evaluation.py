"""Evaluation of a trained run: decode the test split the run's way (``capkit.inference``), score it, and write
``predictions.jsonl`` and ``metrics.json``; the fingerprint that says when stored results are still this model's;
the best epoch of a history; readable text.

This module imports ``dist``, ``inference``, ``prepare``, ``retrieval``, ``store`` and ``targets``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import TYPE_CHECKING

import torch

from capkit import dist, store
from capkit.inference import predict, set_rule
from capkit.prepare import Prepared
from capkit.retrieval import MBR_FILE, NEIGHBOURS_FILE, bank, mbr_bank
from capkit.targets import target

if TYPE_CHECKING:  # annotations only
    from capkit.settings import TrainConfig


def best_epoch(history: list[dict], target_name: str) -> tuple[int, float]:
    """(epoch, score) of the history row with the highest selection score (the target's ``selection``); the
    earliest of equal scores; (0, -inf) for an empty history. Rows without the score (NaN / None) never win."""
    key = target(target_name).selection
    best, score = 0, -math.inf
    for row in history:
        v = row.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and v > score:
            best, score = row["epoch"], v
    return best, score


def val_score(model, prep: Prepared, split: str = "val", max_images: int | None = None) -> dict:
    """Free-running greedy decoding (never teacher-forced) scored with the target's metric: CIDEr-D (and the
    study's BLEU-1, kept as a column) for texts, micro F1 for hashtags. ``score`` is the one that selects."""
    hyps = predict(model, prep, split, beam_size=1, limit=max_images)
    refs = prep.tokens[split][: len(hyps)]
    return target(prep.config.target).val_score(refs, [h["tokens"] for h in hyps])


def weights_digest(model: torch.nn.Module) -> str:
    """A digest of the model's weights (every state_dict entry's name, dtype, shape and bytes)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # (0-dim too)
    return h.hexdigest()[:24]


def test_fingerprint(prep: Prepared, beam: int, split: str, model: torch.nn.Module) -> dict:
    """What the test results of a run depend on: the weights that decode (:func:`weights_digest`), the search
    (its settings, and the seed its sampling draws from) and the records scored. Equal fingerprints: the stored
    results are the ones a new decoding would give, in this run folder or in the one it started from."""
    config = prep.config
    consensus = target(config.target).mbr_consensus
    keys = "\n".join(r.key for r in prep.records[split]).encode()
    search = ({"search": "mbr", "mbr_samples": config.mbr_n, "mbr_temperature": config.mbr_tau,
               **({"mbr_neighbours": config.mbr_neighbours} if consensus else {}),
               **({"mbr_beam": config.mbr_beam} if consensus and config.mbr_beam else {})}
              if config.search == "mbr" else {"search": "beam"})
    if config.decodes_sets:
        # (the rule follows from the weights and the validation split)
        search = {"search": "set", "set_neighbours": config.set_neighbours}
    return {"weights": weights_digest(model), "seed": config.seed, "beam_size": beam, "split": split,
            "records": hashlib.sha256(keys).hexdigest()[:16], "decode_len": config.decode_len, **search}


def shared_results(config: TrainConfig, fingerprint: dict, n: int) -> dict | None:
    """The test results of the run folder this run started from (``start_from``), when it holds the ``n`` test
    predictions of the same fingerprint: the same weights (e.g. self-critical epochs that never beat its best
    epoch), search and records. They are then this run's, without decoding again: ``{"hyps"`` (as
    :func:`predict` gives them), ``"rule"`` (a set decoder's output rule, or None)``}``."""
    if not config.start_from:
        return None
    src = store.project_path(config.start_from)
    try:
        stored = json.loads((src / "metrics.json").read_text())
        if stored.get("fingerprint") != fingerprint:
            return None
        with open(src / "predictions.jsonl", encoding="utf-8") as f:
            hyps = [{"tokens": p["prediction_tokens"], "score": p["score"], "finished": p["finished"]}
                    for p in map(json.loads, filter(str.strip, f))]
    except (OSError, ValueError, KeyError):
        return None
    return {"hyps": hyps, "rule": stored.get("rule")} if len(hyps) == n else None


def test(model, prep: Prepared, beam_size: int | None = None, split: str = "test", force: bool = False) -> dict:
    """Decode the test split (``config.search``: beam search, or MBR for texts); write ``predictions.jsonl`` and
    ``metrics.json``.

    When the run folder already holds the results of this very model, search and split (a rerun of a finished
    run: same :func:`test_fingerprint`), they are returned as they are, without decoding again (``force``
    decodes anyway). When the run it started from (``start_from``) decoded the same weights the same way
    (:func:`shared_results`), its predictions are taken and scored here (``predictions_from`` in metrics.json).

    Under torchrun the ranks decode their shares (:func:`predict`), rank 0 decides and writes, and every rank
    returns rank 0's result."""
    config = prep.config
    beam = beam_size or config.beam_size
    fingerprint = test_fingerprint(prep, beam, split, model)
    stored = json.loads((config.path / "metrics.json").read_text()) if (config.path / "metrics.json").exists() else {}
    if dist.broadcast(not force and stored.get("fingerprint") == fingerprint
                      and (config.path / "predictions.jsonl").exists()):
        return dist.broadcast(stored)
    shared = shared_results(config, fingerprint, len(prep.records[split])) if dist.is_main() and not force else None
    source = dist.broadcast(shared is not None)  # (rank 0's finding, for every rank)
    t0 = time.perf_counter()
    if source:  # the run it started from decoded these very weights the same way (rank 0 scores them)
        rule, hyps = (shared["rule"], shared["hyps"]) if shared else (None, None)
    else:
        rule = set_rule(model, prep) if config.decodes_sets else None
        hyps = predict(model, prep, split, beam_size=beam, search=config.search, rule=rule)
    decode_s = time.perf_counter() - t0
    if not dist.is_main():
        return dist.broadcast(None)
    refs = prep.tokens[split]
    what = target(config.target)
    scores = what.test_scores(refs, [h["tokens"] for h in hyps])
    lines = []
    for rec, ref, h in zip(prep.records[split], refs, hyps):
        lines.append({"key": rec.key, "image": rec.image, "category": rec.category,
                      "references": what.raw_references(rec), "reference_tokens": ref,
                      "prediction_tokens": h["tokens"],
                      "prediction": what.readable(h["tokens"], prep.detok, config.tokenizer),
                      "score": h["score"], "finished": h["finished"], **what.prediction_fields(h["tokens"], ref)})
    if rule and rule.get("weight"):  # what a loaded run needs to blend the votes for new images (capkit.runs)
        store.save_checkpoint(bank(prep), config.path / NEIGHBOURS_FILE)
    if what.mbr_consensus and config.search == "mbr" and not rule:  # what a loaded run needs to decode as here
        store.save_checkpoint(mbr_bank(prep), config.path / MBR_FILE)
    store.write_jsonl(config.path / "predictions.jsonl", lines)
    history = json.loads((config.path / "history.json").read_text()) if (config.path / "history.json").exists() else []
    chosen, _ = best_epoch(history, config.target)
    best = next((r for r in history if r["epoch"] == chosen), {})
    result = {
        "run": config.run_name, "encoder": config.encoder, "decoder": config.decoder, "target": config.target,
        "dataset": config.dataset, "split": split, "n": len(lines), "beam_size": beam,
        "search": "set" if rule else config.search, **({"rule": rule} if rule else {}),
        "token_form": what.token_form(config),
        "test": scores, "best_epoch": best.get("epoch"), "val": {k: v for k, v in best.items() if k.startswith("val_")},
        "selection": what.selection, "best_phase": best.get("phase", "xe"),
        "epochs_run": len(history), "train_seconds": sum(r.get("seconds", 0) for r in history),
        "decode_images_per_second": len(lines) / decode_s if decode_s and not source else None,
        "predictions_from": config.start_from if source else None,  # (None: decoded here)
        "data": prep.info, "skipped": dict(prep.report.skipped), "fingerprint": fingerprint,
    }
    # (update_json keeps what 04_attention added: grounding)
    return dist.broadcast(store.update_json(config.path / "metrics.json", result))
