"""Training: the run's settings, data preparation, the training loop, test predictions, the command line.

A run is one (encoder, decoder, target) model; the decoder is any entry of the registry
(:data:`capkit.models.DECODERS`). ``train(config)`` does it all; the notebook ``03_train`` calls the
same steps one by one (:func:`prepare`, :func:`fit`, :func:`test`); ``python -m capkit.train`` is
the same from a shell (or under torchrun).

Run folder ``run_dir/<run_name>/``: ``config.json``, ``vocab.json``, ``detokenizer.json``,
``last.pt`` and ``best.pt`` (weights, optimiser, config and vocabulary; loaded with
``weights_only=True``), ``history.json``, ``curves.png``, ``metrics.json``, ``predictions.jsonl``.
Every file is written through :mod:`capkit.store` (a temporary file and a rename): a killed run
leaves the previous complete version, and ``train`` with the same config resumes from ``last.pt``.
Reading a finished run back (to caption images) is :mod:`capkit.runs`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from capkit import data as D
from capkit import decode, dist, encoders, mbr, metrics, models, multilabel, scst, settings, store, text
from capkit.settings import RESUMABLE_CHANGES, SELECTION, TrainConfig, parse_args  # noqa: F401  (names used elsewhere)

NEIGHBOURS_FILE = "neighbours.pt"  # a set run's tag bank (tag_bank), written when its rule blends the votes in


def resolve_device(device: str) -> torch.device:
    """"auto": CUDA when present, else the CPU. Under torchrun, "cuda" is this rank's GPU (set by dist.init)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and dist.active():
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- data preparation


@dataclass
class Prepared:
    """Everything a run reads: records per split, token lists, vocabulary, features."""

    config: TrainConfig
    records: dict  # split -> list[Record]
    tokens: dict  # split -> list of reference token lists per record (text: all texts; hashtags: one list)
    vocab: text.Vocab
    detok: text.Detokenizer | None
    store: encoders.FeatureStore
    report: D.LoadReport
    info: dict = field(default_factory=dict)

    def features(self, images) -> torch.Tensor:
        return self.store[images]

    @functools.cached_property
    def bank(self) -> dict:
        """:func:`tag_bank`, built on first use and kept (set_rule, predict_set and test read it every epoch)."""
        return tag_bank(self)

    def pairs(self, split: str) -> list[tuple[str, list[int]]]:
        """(image, token ids with <start>/<end>) for training: one pair per reference text."""
        n = self.config.decode_len
        return [(r.image, self.vocab.encode(toks, max_len=n))
                for r, refs in zip(self.records[split], self.tokens[split]) for toks in refs if toks]


def reference_tokens(records, config: TrainConfig, progress: bool = False) -> tuple[list, object]:
    """Per record, the list of its reference token lists (texts tokenized, or its hashtags)."""
    if config.target == "hashtag":
        return [[D.normalize_hashtags(r.hashtags)[: config.max_hashtags]] for r in records], None
    flat = [t for r in records for t in r.texts]
    toks = text.tokenize_all(flat, config.tokenizer, cache_dir=D.project_path(config.cache_dir) / "tokens",
                             progress=progress)
    out, i = [], 0
    for r in records:
        out.append([list(t) for t in toks[i:i + len(r.texts)]])
        i += len(r.texts)
    return out, toks.stats


def prepare(config: TrainConfig, progress: bool = True) -> Prepared:
    """Load the data, tokenize, build the vocabulary (train split only), extract/cached features.

    Under torchrun every rank prepares: rank 0 tokenizes first, filling the token cache, while the others wait,
    then they read it; the ranks extract the features together, each encoding its share of the images
    (``encoders.extract_features(sharded=True)``) when all ranks are on one machine, otherwise rank 0 first."""
    set_seed(config.seed)
    records, report = D.load(config.dataset, config.data_dir, seed=config.seed)
    records = D.for_target(records, config.target, report)
    if config.smoke:
        n = config.smoke_records
        records = D.subsample(records, {"train": 2 * n, "val": n, "test": n}, seed=config.seed)
    by_split = {s: [r for r in records if r.split == s] for s in D.SPLITS}
    for s in ("train", "val"):
        if not by_split[s]:
            raise ValueError(f"{config.dataset}:{config.data_dir} has no {s} records for target {config.target!r}")
    # "auto" becomes the tokenizer it stands for (config.json records that one), chosen from the training texts
    config.tokenizer = text.resolve_tokenizer(config.tokenizer, config.dataset,
                                              [t for r in by_split["train"][:2000] for t in r.texts])
    tokens, stats = {}, {}
    with dist.main_first():
        for s in D.SPLITS:
            tokens[s], st = reference_tokens(by_split[s], config, progress)
            stats[s] = st.as_dict() if st else None
    train_lists = [t for refs in tokens["train"] for t in refs]
    vocab = text.Vocab.build(train_lists, min_freq=config.min_freq, max_size=config.max_vocab)
    detok = None
    if config.target == "text" and config.tokenizer not in text.SPACED_TOKENIZERS:
        detok = text.Detokenizer.fit([t for r in by_split["train"] for t in r.texts], train_lists)
    images = [r.image for s in D.SPLITS for r in by_split[s]]
    sharded = dist.one_machine()  # every rank writes its rows into the cache's files: they must see the same files
    with dist.main_first() if not sharded else contextlib.nullcontext():
        store = encoders.extract_features(config.encoder, images, config.cache_dir, weights=config.encoder_weights,
                                          device=str(resolve_device(config.device)), progress=progress,
                                          sharded=sharded)
    store.to_memory()  # epochs read RAM, not the memory map, when the features fit
    info = {"records": {s: len(v) for s, v in by_split.items()}, "vocab_size": len(vocab),
            "oov_rate": {s: text.oov_rate(vocab, [t for refs in tokens[s] for t in refs]) for s in ("val", "test")},
            "tokenize": stats, "features": {"file": store.path.name, "failed": len(store.failed)}}
    return Prepared(config, by_split, tokens, vocab, detok, store, report, info)


def batches(pairs, batch_size: int, generator: torch.Generator | None = None):
    """Shuffled (when a generator is given) batches of (images, captions [B, T], lengths [B]), each batch sorted
    by caption length, longest first."""
    order = torch.randperm(len(pairs), generator=generator).tolist() if generator else range(len(pairs))
    order = list(order)
    for i in range(0, len(order), batch_size):
        # longest first, as the decoder steps them (it would otherwise copy the batch's features into that order)
        chunk = sorted((pairs[j] for j in order[i:i + batch_size]), key=lambda p: -len(p[1]))
        lengths = torch.tensor([len(ids) for _, ids in chunk])
        caps = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
        for k, (_, ids) in enumerate(chunk):
            caps[k, : len(ids)] = torch.tensor(ids)
        yield [img for img, _ in chunk], caps, lengths


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


def best_epoch(history: list[dict], target: str) -> tuple[int, float]:
    """(epoch, score) of the history row with the highest selection score (SELECTION[target]); the earliest
    of equal scores; (0, -inf) for an empty history. Rows without the score (NaN / None) never win."""
    key = SELECTION[target]
    best, score = 0, -math.inf
    for row in history:
        v = row.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and v > score:
            best, score = row["epoch"], v
    return best, score


def checkpoint(model, optimizer, config: TrainConfig, vocab, state: State) -> dict:
    return {"format": store.CKPT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "config": config.to_dict(), "decoder_config": model.config.to_dict(), "vocab": vocab.to_dict(),
            "state": asdict(state), "rng": torch.get_rng_state()}


def val_score(model, prep: Prepared, split: str = "val", max_images: int | None = None) -> dict:
    """Free-running greedy decoding (never teacher-forced) scored with the target's metric: CIDEr-D (and the
    study's BLEU-1, kept as a column) for texts, micro F1 for hashtags. ``score`` is the one that selects."""
    hyps = predict(model, prep, split, beam_size=1, limit=max_images)
    refs = prep.tokens[split][: len(hyps)]
    if prep.config.target == "text":
        s = metrics.study_text_scores(refs, [h["tokens"] for h in hyps])
        cider = metrics.cider_d(refs, [h["tokens"] for h in hyps])  # against all of each image's references
        return {"score": cider, "cider": cider, "bleu1": s["bleu1"]}
    s = metrics.hashtag_scores([r[0] for r in refs], [h["tokens"] for h in hyps])
    return {"score": s["f1"], "f1": s["f1"], "precision": s["precision"], "recall": s["recall"]}


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
    if models.decoder_spec(prep.config.decoder).search == "set":
        return predict_set(model, prep, split, rule or set_rule(model, prep), limit, batch_size)
    recs = prep.records[split][:limit]
    mine = {}  # first record of a batch -> its results, for the batches this rank decodes
    forbid = prep.config.target == "hashtag"
    if search == "mbr":
        cfg = prep.config
        refs = reference_ids(prep) if cfg.target == "text" else None  # (encoded once for both)
        cider = metrics.CiderD(scst_data(prep, refs)[1]) if refs is not None else None
        evidence = (mbr_evidence(prep, split, cfg.mbr_neighbours, limit, refs)
                    if cider is not None and cfg.mbr_neighbours else None)
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        batch_size = max(1, batch_size // 4)  # each image is mbr_samples rows
        for i in range(0, len(recs), batch_size) if dist.is_main() else ():
            feats = prep.features([r.image for r in recs[i:i + batch_size]]).to(device)
            with torch.inference_mode():
                if cider is not None:
                    picked = mbr.mbr_decode(model, feats, cider, text.START_ID, text.END_ID, cfg.mbr_n,
                                            cfg.mbr_tau, cfg.decode_len, text.UNK_ID, gen,
                                            evidence[i:i + batch_size] if evidence else None)
                else:
                    picked = mbr.mbr_tags(model, feats, text.START_ID, text.END_ID, cfg.mbr_n, cfg.mbr_tau,
                                          cfg.decode_len, text.UNK_ID, gen)
            mine[i] = [{"tokens": prep.vocab.decode(p["tokens"]), "score": p["score"], "finished": p["finished"],
                        "alphas": None} for p in picked]
        return [h for chunk in dist.gather(mine) for h in chunk]
    for i in range(0, len(recs), batch_size)[dist.rank()::dist.world_size()]:
        feats = prep.features([r.image for r in recs[i:i + batch_size]]).to(device)
        with torch.inference_mode():
            if beam_size > 1:
                hyps = decode.beam_search(model, feats, text.START_ID, text.END_ID, beam_size=beam_size,
                                          max_len=prep.config.decode_len, forbid_repeats=forbid, unk_id=text.UNK_ID)
            else:
                hyps = decode.greedy(model, feats, text.START_ID, text.END_ID, max_len=prep.config.decode_len,
                                     forbid_repeats=forbid, unk_id=text.UNK_ID)
        mine[i] = [{"tokens": prep.vocab.decode(h.tokens), "score": float(h.score), "finished": bool(h.finished),
                    "alphas": h.alphas.float().cpu()} for h in hyps]
    return [h for chunk in dist.gather(mine) for h in chunk]


def mbr_evidence(prep: Prepared, split: str, m: int, limit: int | None = None,
                 refs: list | None = None) -> list[list[list[int]]]:
    """Per record of ``split``: the first ``m`` references (vocabulary ids, :func:`reference_ids`, or ``refs``
    when already computed) of its nearest training images, closest image first (:func:`nearest_posts`): MBR's
    retrieved evidence (capkit.mbr)."""
    refs = reference_ids(prep) if refs is None else refs
    near = nearest_posts(prep, split, m, limit)  # (m images hold m references unless some have none)
    return [[r for j in row for r in refs[j]][:m] for row in near]


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


def retrieval_vectors(prep: Prepared) -> tuple:
    """``(vectors, description)``: ``vectors(images) -> [n, P]`` for nearest-neighbour retrieval, the encoder's
    final pooled vector (what its classifier reads); the mid-level grid's mean only for a cache written without
    one."""
    if prep.store.global_dim is None:
        return prep.store.pooled, f"grid mean ({prep.store.meta['shape'][2]}-d)"
    return prep.store.global_pooled, f"final pooled ({prep.store.global_dim}-d)"


def nearest_posts(prep: Prepared, split: str, k: int, limit: int | None = None) -> np.ndarray:
    """The k training records closest to each record of ``split`` (cosine on :func:`retrieval_vectors`; closest
    first, ties to the lower index): int64 [n, min(k, n_train)], indices into ``prep.records["train"]``."""
    vectors, _ = retrieval_vectors(prep)
    return metrics.nearest_k(vectors([r.image for r in prep.records["train"]]),
                             vectors([r.image for r in prep.records[split][:limit]]), k, metric="cosine")


def tag_bank(prep: Prepared) -> dict:
    """What the neighbours' tag votes read, in training and after it (``neighbours.pt`` of a set run: capkit.runs):
    ``vectors`` float16 [N, P] (the training posts' :func:`retrieval_vectors`), ``tags`` (each post's tag ids),
    ``grid_mean`` (True when the vectors are grid means: a cache without final pooled vectors) and ``features``."""
    vectors, used = retrieval_vectors(prep)
    tags = [[prep.vocab.stoi[t] for t in refs[0] if t in prep.vocab.stoi] if refs else []
            for refs in prep.tokens["train"]]
    return {"format": store.CKPT_FORMAT, "vectors": torch.as_tensor(vectors([r.image for r in prep.records["train"]])
                                                                    ).half(),
            "tags": tags, "grid_mean": prep.store.global_dim is None, "features": used}


def neighbour_votes(bank: dict, query_vectors, sizes, vocab_size: int) -> dict:
    """{k: [n, V] the share of the k nearest posts of ``bank`` (:func:`tag_bank`) that carry each tag
    (:func:`capkit.multilabel.neighbour_votes`)} for each k of ``sizes`` (capped at the bank's size), for images
    with query_vectors [n, P] of the bank's kind (cosine)."""
    near = metrics.nearest_k(bank["vectors"].float(), torch.as_tensor(query_vectors).float(), max(sizes))
    hot = multilabel.multi_hot(bank["tags"], vocab_size)
    return {k: multilabel.neighbour_votes(hot, near, min(k, near.shape[1])) for k in sizes}


def blend_votes(probs: torch.Tensor, rule: dict, bank: dict, query_vectors) -> torch.Tensor:
    """A set decoder's probabilities [n, V] with the neighbours' votes blended in as ``rule`` says (its
    ``neighbours`` k and ``weight`` w from :func:`set_rule`; unchanged when w is 0 or absent)."""
    if not rule.get("weight") or not len(probs):
        return probs
    k = rule["neighbours"]
    return multilabel.blend(probs, neighbour_votes(bank, query_vectors, [k], probs.size(1))[k], rule["weight"])


def set_rule(model, prep: Prepared) -> dict:
    """A set decoder's output rule (top-k or a threshold: :func:`capkit.multilabel.choose_rule`), chosen on the
    validation split and nothing else, against its true tags (strings: tags outside the vocabulary count as
    misses, as in the scores).

    With ``config.set_neighbours`` the choice also covers the neighbours' votes: k in ``multilabel.VOTE_SIZES``
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
        votes_by_k = neighbour_votes(prep.bank, vectors([r.image for r in prep.records["val"]]),
                                     multilabel.VOTE_SIZES, probs.size(1))
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
        probs = blend_votes(probs, rule, prep.bank, vectors([r.image for r in prep.records[split][:limit]]))
    out = []
    for row, ids in zip(probs, multilabel.apply_rule(probs, rule)):
        score = float(torch.log(row[ids].clamp_min(1e-12)).sum()) if ids else 0.0
        out.append({"tokens": [prep.vocab.itos[i] for i in ids], "score": score, "finished": True, "alphas": None})
    return out


def fit(prep: Prepared, progress: bool = True, stop_after: int | None = None) -> tuple[torch.nn.Module, State]:
    """Train (or resume) the run; returns the model with the best validation weights loaded.

    Cross-entropy epochs (learning rate ``config.lr_at(epoch)``) until ``epochs`` or ``patience`` epochs without a
    better validation score, then ``scst_epochs`` self-critical epochs from the best weights (:mod:`capkit.scst`).
    The best epoch of either phase (highest SELECTION score) is ``best.pt``. ``last.pt`` after every epoch;
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
        matrix, vec_report = text.load_word_vectors(config.word_vectors, prep.vocab, dim=config.embed_dim,
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
        prep.vocab.save(out / "vocab.json", tokenizer=config.tokenizer if config.target == "text" else "hashtag",
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
        done_now += 1
        if progress:
            name = "CIDEr-D" if config.target == "text" else "F1"
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


def reference_ids(prep: Prepared) -> list[list[list[int]]]:
    """Per training record, its references as vocabulary ids without <start>/<end> (empty for a record without
    any; a word outside the vocabulary is <unk>, which the decoder never emits)."""
    n = prep.config.decode_len
    return [[prep.vocab.encode(t, max_len=n)[1:-1] for t in toks if t] for toks in prep.tokens["train"]]


def scst_data(prep: Prepared, refs: list | None = None) -> tuple[list[str], list[list[list[int]]]]:
    """The training images that have references, and each one's references as vocabulary ids (the reward
    compares ids). ``refs``: :func:`reference_ids`, when already computed."""
    refs = reference_ids(prep) if refs is None else refs
    keep = [(r.image, ids) for r, ids in zip(prep.records["train"], refs) if ids]
    return [image for image, _ in keep], [ids for _, ids in keep]


def scst_references(prep: Prepared, images: list[str], ref_ids: list, k: int) -> list[list[list[int]]]:
    """What each self-critical reward compares a sample with: the image's own references (``ref_ids``, from
    :func:`scst_data`), then, with ``k`` > 0, the first reference of each of the k training images of ``images``
    nearest to it (cosine on :func:`retrieval_vectors`, closest first, the image itself left out).

    On data with one noisy text per image (Instagram posts, the embedded set) the reward of one reference mostly
    says how well a sample guessed that writer's draw; the neighbours' texts say what images like it are
    described with, as the consensus baseline and MBR's evidence read them. Measured on the embedded data
    (Lite2 + soft, one epoch at scst_lr 5e-5, two threads, k = 0 / 5 / 10 / 20 / 40): validation greedy CIDEr-D
    0.327 / 0.356 / 0.405 / 0.400 / 0.367 from the cross-entropy weights' 0.371 (make run's copy, k = 10, one
    thread: 0.371 -> 0.394); MBR decoding did not gain (README)."""
    if k <= 0 or len(images) < 2:
        return [list(r) for r in ref_ids]
    vectors, _ = retrieval_vectors(prep)
    x = vectors(images)
    near = metrics.nearest_k(x, x, min(k + 1, len(images)), metric="cosine")
    out = []
    for i, own in enumerate(ref_ids):
        others = [int(j) for j in near[i] if j != i][:k]  # the image itself (usually first) left out
        out.append(list(own) + [ref_ids[j][0] for j in others])
    return out


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


# ----------------------------------------------------------------------------- test predictions and metrics


def readable(tokens: list[str], target: str, detok, tokenizer: str | None = None) -> str:
    if target == "hashtag":
        return " ".join("#" + t for t in tokens)
    return detok(tokens) if detok is not None else text.detokenize(tokens, tokenizer)


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
    keys = "\n".join(r.key for r in prep.records[split]).encode()
    search = ({"search": "mbr", "mbr_samples": config.mbr_n, "mbr_temperature": config.mbr_tau,
               **({"mbr_neighbours": config.mbr_neighbours} if config.target == "text" else {})}
              if config.search == "mbr" else {"search": "beam"})
    if models.decoder_spec(config.decoder).search == "set":
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
    src = D.project_path(config.start_from)
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
        rule = set_rule(model, prep) if models.decoder_spec(config.decoder).search == "set" else None
        hyps = predict(model, prep, split, beam_size=beam, search=config.search, rule=rule)
    decode_s = time.perf_counter() - t0
    if not dist.is_main():
        return dist.broadcast(None)
    refs = prep.tokens[split]
    preds = [h["tokens"] for h in hyps]
    if config.target == "text":
        scores = metrics.text_scores(refs, preds)
    else:
        scores = metrics.hashtag_scores([r[0] for r in refs], preds)
    lines = []
    for rec, ref, h in zip(prep.records[split], refs, hyps):
        line = {"key": rec.key, "image": rec.image, "category": rec.category,
                "references": rec.texts if config.target == "text" else [" ".join("#" + t for t in rec.hashtags)],
                "reference_tokens": ref, "prediction_tokens": h["tokens"],
                "prediction": readable(h["tokens"], config.target, prep.detok, config.tokenizer),
                "score": h["score"], "finished": h["finished"]}
        if config.target == "hashtag":
            line["hashtags"], line["true_hashtags"] = h["tokens"], ref[0]
        lines.append(line)
    if rule and rule.get("weight"):  # what a loaded run needs to blend the votes for new images (capkit.runs)
        store.save_checkpoint(prep.bank, config.path / NEIGHBOURS_FILE)
    store.write_jsonl(config.path / "predictions.jsonl", lines)
    history = json.loads((config.path / "history.json").read_text()) if (config.path / "history.json").exists() else []
    chosen, _ = best_epoch(history, config.target)
    best = next((r for r in history if r["epoch"] == chosen), {})
    result = {
        "run": config.run_name, "encoder": config.encoder, "decoder": config.decoder, "target": config.target,
        "dataset": config.dataset, "split": split, "n": len(lines), "beam_size": beam,
        "search": "set" if rule else config.search, **({"rule": rule} if rule else {}),
        "token_form": config.tokenizer if config.target == "text" else "hashtag",
        "test": scores, "best_epoch": best.get("epoch"), "val": {k: v for k, v in best.items() if k.startswith("val_")},
        "selection": SELECTION[config.target], "best_phase": best.get("phase", "xe"),
        "epochs_run": len(history), "train_seconds": sum(r.get("seconds", 0) for r in history),
        "decode_images_per_second": len(lines) / decode_s if decode_s and not source else None,
        "predictions_from": config.start_from if source else None,  # (None: decoded here)
        "data": prep.info, "skipped": dict(prep.report.skipped), "fingerprint": fingerprint,
    }
    # (update_json keeps what 04_attention added: grounding)
    return dist.broadcast(store.update_json(config.path / "metrics.json", result))


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
