"""Baselines and the oracle rows of the results tables, scored with the runs' metric code.

Baselines (``baselines``; written to ``run_dir/baselines/<encoder>-<target>.json`` with the same
metric keys as a run's ``metrics.json["test"]``), all computed from the run's own prepared data
(``prepare`` with the run's config, so the same test records, tokens and vocabulary caps):

- ``most_frequent`` (hashtags): the k hashtags found in most training posts, the same list for
  every test image, in frequency order. k is tuned on the validation split (the k in
  1..``max_hashtags`` with the best micro F1, the smaller k on ties); the mean number of hashtags
  per training post is written beside it for reference.
- ``nearest_neighbour``: the text (first reference) or hashtags of the training post whose image
  is closest to the test image in the run encoder's final pooled vector (cosine; the grid mean for a feature
  cache written without it).
- ``consensus``: retrieval that reads several neighbours (Devlin et al. 2015, "Exploring nearest neighbor
  approaches for image captioning"): the training posts ranked by closeness in the same final pooled vectors.
  Texts: of the references of the nearest posts, the first m in closeness order (m from ``CONSENSUS_TEXTS``),
  the one with the highest mean CIDEr-D against the others (``metrics.CiderD.consensus``, document frequencies from
  the training references). Hashtags: the expected-F1 best guess (``metrics.best_guess_tags``) from the tag
  lists of the k nearest posts (k from ``CONSENSUS_POSTS``). m and k are chosen on the validation split (CIDEr-D,
  micro F1; the smaller on ties). On the embedded data this is the strongest baseline by far (texts 0.33 against
  1-NN's 0.27; hashtags 0.35 against the most frequent tags' 0.24): a model that does not beat it writes what
  similar training images say.
- ``random``: the text or hashtags of a training post drawn uniformly with replacement
  (``metrics.random_texts`` seeded with the run's seed).
- ``oracle`` (the embedded dataset only): a reference row rather than a baseline. The dataset's
  own writer (``sample.oracle_posts``) writes each test post again from the image's TRUE scene with
  a fresh random draw (seeded with the run's seed): what a model that reads every scene fact right,
  but cannot know the writer's noise, would write if it sampled like the writer. Its text is
  tokenized, and its hashtags cut to ``max_hashtags``, exactly as the references are. Left out
  entirely when a test record has no scene in ``<data_dir>/manifest.jsonl``. It is not an upper
  bound: one sample is not the best guess, and a model that writes the likeliest words or tags
  (beam search) can score above it. It shows what sampling like the writer scores.
- ``oracle_best`` (the embedded dataset only): the ceiling the table is read against, the best guess
  of a model that reads the scene perfectly (``oracle_best_predictions``). The writer draws many
  posts from each true scene (``sample.oracle_draws``, seeded per (seed, key, draw); by default
  ``ORACLE_TAG_DRAWS`` = 200 for hashtags, ``ORACLE_TEXT_DRAWS`` = 30 for texts), tokenized exactly
  as the references. Hashtags: each tag's probability is the share of draws that use it; the
  prediction is the top-m tags by probability, m (at most ``max_hashtags``) maximising the mean F1
  of the top-m set against those same draws (``metrics.best_guess_tags``: the expected F1 against a fresh
  draw, estimated in-sample; with 200 draws, choosing m on held-out halves instead gave a test F1 of
  0.4025 against 0.4047, and one threshold on the probability for all posts, the rule for the
  study's micro F1, 0.404). Texts: the minimum-Bayes-risk draw, the one with the highest mean
  CIDEr-D against the image's other draws (``metrics.CiderD.consensus``; document frequencies from the
  training references), which scored a higher test CIDEr-D than the draw with the highest mean
  sentence BLEU-1 (0.63 vs 0.54 on the 2,200-post dataset, seed 0; 0.50 / 0.57 / 0.63 / 0.62 from
  10 / 20 / 30 / 60 draws). It is the ceiling of the metric it optimises, hashtag F1 and text
  CIDEr-D; on the other columns it is a reference only (its hashtag Precision trades against its
  Recall; the BLEU-1 consensus reaches a study BLEU-1 of 0.227 against its 0.219). A model can still
  beat it by chance or by the metric's quirks, but not by reading the picture better.
- ``oracle_trained`` (hashtags, the embedded dataset only): the set model (capkit.multilabel) TOLD each image's
  true scene instead of reading it from the picture (``oracle_trained_predictions``): trained on the same
  training posts, the same way, with the scene's facts as its only input. It is what a model that reads every
  scene fact right can learn from these posts: between the best guess (which knows the writer's exact tag
  probabilities) and the models, it separates what the models miss in the picture from what the training
  posts cannot teach (measured on the 2,200-post dataset: 0.385 / 0.387 / 0.387 for seeds 0 / 1 / 2, against
  the best guess's 0.405).

The oracle rows are references, not baselines to beat: tables note them "oracle" / "oracle,
ceiling" and never bold them, and ``summary`` reads the best model against the ceiling
(``gap_closed``: the share of the gap from the best baseline to ``oracle_best`` it closes), and against
``oracle_trained`` where the table has it.

``python -m capkit.baselines RUN_DIR [--refresh]`` scores them for every encoder x target with a run folder.

This module sits after ``train`` in the flow and imports it, ``metrics``, ``multilabel`` (the set model, for
``oracle_trained`` and the vote sizes), ``retrieval``, ``store``, ``targets``, ``data``, ``prepare`` and ``sample``.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from capkit import data as D
from capkit import loops, metrics, multilabel, retrieval, sample, settings, store, targets
from capkit.encoders import ENCODER_LABELS
from capkit.prepare import Prepared, prepare, reference_tokens
from capkit.folders import read_json, read_predictions, run_folders

BASELINE_LABELS = {
    "most_frequent": "Baseline: {k} most frequent training hashtags",
    "nearest_neighbour": "Baseline: nearest neighbour ({encoder}, cosine)",
    "consensus": "Baseline: consensus of the {k} nearest {unit} ({encoder}, cosine)",
    "random": "Baseline: random training {what}",
    "oracle": "Baseline: scene oracle (generator, fresh draw)",
    "oracle_trained": "Baseline: scene oracle (set model told the true scene, trained on the training posts)",
    "oracle_best": "Baseline: scene oracle (generator, best guess from {n} draws)",
}
ORACLE_LABEL = BASELINE_LABELS["oracle"]  # a reference row of the tables, not a baseline to beat
ORACLE_PREFIX = "Baseline: scene oracle"  # the labels of both oracle rows start so
ORACLE_BEST_PREFIX = BASELINE_LABELS["oracle_best"].split("{")[0]  # the ceiling's label, whatever its draw count
ORACLE_TAG_DRAWS = 200  # oracle_best: writer draws per test post, hashtags
ORACLE_TEXT_DRAWS = 30  # ... and texts (each one Okt-tokenized: ~60-80 s cold for 440 posts, cached after)
# rows of load_baselines, per target
BASELINE_ORDER = ("consensus", "nearest_neighbour", "most_frequent", "random", "oracle", "oracle_trained",
                  "oracle_best")
CONSENSUS_TEXTS = (5, 10, 20, 40)  # consensus, texts: candidate references tried on validation (cost ~ m^2 an image)
CONSENSUS_POSTS = multilabel.VOTE_SIZES  # consensus, hashtags: neighbours tried on validation (5 .. 160)
# The layout of a baselines file; a stored file of another format is recomputed (2: the scene oracle was added;
# 3: its best guess, oracle_best; 4: the neighbours' consensus; 5: the set model told the scene, oracle_trained).
BASELINES_FORMAT = 5
# The config fields that decide a baseline's data: a stored baseline with other values is stale.
BASELINE_CONFIG_KEYS = ("dataset", "data_dir", "seed", "smoke", "smoke_records", "encoder", "encoder_weights",
                        "target", "tokenizer", "max_hashtags")


# ----------------------------------------------------------------------------- baselines


def tune_k(train_tags, val_tags, max_k: int) -> int:
    """The k in 1..max_k whose top-k most frequent training hashtags give the best micro F1 on val."""
    ranked = metrics.most_frequent_hashtags(train_tags, max_k)
    best_k, best_f1 = 1, -1.0
    for k in range(1, len(ranked) + 1):
        f1 = metrics.hashtag_scores(val_tags, [ranked[:k]] * len(val_tags), ks=(1,))["f1"]
        if f1 > best_f1 + 1e-12:
            best_k, best_f1 = k, f1
    return best_k


def baseline_predictions(prep: Prepared, split: str = "test", k="val") -> dict:
    """Each baseline's predicted token lists for the records of ``split`` (see the module notes).

    ``k`` (hashtags only): ``"val"`` (tuned on validation), ``"mean"`` (the mean number of hashtags
    per training post, rounded) or an int. Returns ``{name: {"tokens": [...], ...details}}``.
    """
    config = prep.config
    train_refs = [refs[0] if refs else [] for refs in prep.tokens["train"]]
    n = len(prep.records[split])
    out = {}
    if config.target == "hashtag":
        mean_k = float(np.mean([len(t) for t in train_refs])) if train_refs else 0.0
        if k == "val":
            k_used = tune_k(train_refs, [refs[0] for refs in prep.tokens["val"]], config.max_hashtags)
        elif k == "mean":
            k_used = max(1, round(mean_k))
        else:
            k_used = int(k)
        top = metrics.most_frequent_hashtags(train_refs, k_used)
        out["most_frequent"] = {"tokens": [list(top)] * n, "k": k_used, "k_rule": str(k),
                                "mean_per_post": mean_k, "hashtags": top}
    _, used = retrieval.retrieval_vectors(prep)
    nn = retrieval.nearest_posts(prep, split, 1)[:, 0]
    out["nearest_neighbour"] = {"tokens": [list(train_refs[j]) for j in nn],
                                "neighbours": [prep.records["train"][j].key for j in nn], "features": used}
    out["consensus"] = consensus_predictions(prep, split)
    out["consensus"]["features"] = used
    drawn = metrics.random_texts(list(range(len(train_refs))), n, seed=config.seed)
    out["random"] = {"tokens": [list(train_refs[j]) for j in drawn], "seed": config.seed,
                     "drawn": [prep.records["train"][j].key for j in drawn]}
    oracle = oracle_predictions(prep, split)
    if oracle is not None:
        out["oracle"] = oracle
        trained = oracle_trained_predictions(prep, split)
        if trained is not None:
            out["oracle_trained"] = trained
        best = oracle_best_predictions(prep, split)
        if best is not None:
            out["oracle_best"] = best
    return out


def consensus_predictions(prep: Prepared, split: str = "test") -> dict:
    """The ``consensus`` baseline's token lists for ``split`` (see the module notes), its size chosen on "val".

    Neighbours by :func:`capkit.retrieval.nearest_posts` (the final pooled vectors). Returns ``{"tokens", "k",
    "unit", "val_score", "tried": {size: val score}}``; without validation records the smallest size is used.
    """
    config = prep.config
    texts = config.target == "text"
    sizes = CONSENSUS_TEXTS if texts else CONSENSUS_POSTS
    train_refs = prep.tokens["train"]
    cider = metrics.CiderD(train_refs) if texts else None

    def predict(split, sizes):  # {size: predictions}
        if not prep.records[split]:
            return {size: [] for size in sizes}
        # texts: enough neighbours to fill `size` candidates even when each post has one reference
        near = retrieval.nearest_posts(prep, split, max(sizes))
        if not texts:
            return {size: [metrics.best_guess_tags([train_refs[j][0] if train_refs[j] else [] for j in row[:size]],
                                                   config.max_hashtags)[0] for row in near] for size in sizes}
        out = {size: [] for size in sizes}
        for row in near:
            candidates = [list(t) for j in row for t in train_refs[j] if t][:max(sizes)]
            sims = cider.similarities(candidates) if len(candidates) > 1 else None  # one matrix for every size
            for size in sizes:
                cut = candidates[:size]
                out[size].append(cut[cider.consensus(cut, sims)[0]] if cut else [])
        return out

    tried = {}
    val_refs = prep.tokens["val"]
    if prep.records["val"]:
        for size, hyps in predict("val", sizes).items():
            tried[size] = (metrics.cider_d(val_refs, hyps) if texts
                           else metrics.hashtag_scores([r[0] if r else [] for r in val_refs], hyps, ks=(1,))["f1"])
    finite = {k: v for k, v in tried.items() if math.isfinite(v)}
    best = max(finite, key=lambda k: (finite[k], -k)) if finite else sizes[0]
    return {"tokens": predict(split, [best])[best], "k": best, "unit": "references" if texts else "posts",
            "val_score": finite.get(best), "tried": tried}


def _oracle_manifest(prep: Prepared, split: str) -> Path | None:
    config = prep.config
    manifest = store.project_path(config.data_dir) / "manifest.jsonl"
    if config.dataset != "sample" or not prep.records[split] or not manifest.is_file():
        return None
    return manifest


def oracle_predictions(prep: Prepared, split: str = "test") -> dict | None:
    """The scene oracle's token lists for the records of ``split`` (see the module notes), or None when the data is
    not the embedded dataset or some record has no scene in ``<data_dir>/manifest.jsonl`` (never a partial oracle).

    The oracle's posts become records the way ``data.load_manifest`` makes them (same text cleaning and hashtag
    normalisation) and are tokenized by ``reference_tokens`` with the run's config: the same tokenizer and
    token cache as the references, hashtags cut to ``max_hashtags``.
    """
    config = prep.config
    recs = prep.records[split]
    manifest = _oracle_manifest(prep, split)
    if manifest is None:
        return None
    posts = sample.oracle_posts(manifest, [r.key for r in recs], seed=config.seed)
    if any(r.key not in posts for r in recs):
        return None
    report, written = D.LoadReport(source="oracle"), []
    for r in recs:
        p = posts[r.key]
        rec = D.make_record(report, f"oracle#{r.key}", key=r.key, image=r.image, texts=[p["text"]],
                            hashtags=p["hashtags"], category=r.category, split=r.split)
        written.append(rec or D.Record(key=r.key, image=r.image, category=r.category, split=r.split))
    tokens, _ = reference_tokens(written, config)
    return {"tokens": [list(refs[0]) if refs else [] for refs in tokens], "seed": config.seed,
            "posts": [w.text if config.target == "text" else w.hashtags for w in written]}


ORACLE_TRAINED_EPOCHS = 16  # oracle_trained: the set runs' epochs (the Makefile's SET_EPOCHS), patience as theirs
_ORACLE_TRAINED: dict = {}  # oracle_trained_predictions of this process, by what they depend on (not the encoder)


def oracle_trained_predictions(prep: Prepared, split: str = "test") -> dict | None:
    """Hashtags: the tags of the set model (capkit.multilabel) told each image's TRUE scene instead of reading it
    (see the module notes), or None for texts, for other data, or when a training, validation or ``split`` record
    has no scene in ``<data_dir>/manifest.jsonl`` (never a partial oracle).

    The model is ``MultilabelTagger`` with one region per image: the multi-hot of its scene's facts over
    ``sample.SCENE_FACTS``. It is trained as ``make run`` trains the set runs (``loops.train_epoch`` on the
    training posts' tags, batch 32, Adam at the default cosine schedule over ``ORACLE_TRAINED_EPOCHS``, early
    stop after ``patience`` epochs without a better validation F1); the epoch and the output rule are chosen on
    validation (``multilabel.choose_rule``). Deterministic per seed (the global torch RNG is restored after).
    Returns ``{"tokens", "epoch", "rule", "facts", "seed"}``.
    """
    config = prep.config
    manifest = _oracle_manifest(prep, split)
    if config.target != "hashtag" or manifest is None or not prep.records["val"]:
        return None
    splits = ("train", "val", split)
    keys = [r.key for s in splits for r in prep.records[s]]
    memo = (str(manifest), manifest.stat().st_mtime_ns, tuple(keys), config.seed, tuple(prep.vocab.itos),
            config.max_hashtags)
    if memo in _ORACLE_TRAINED:
        return copy.deepcopy(_ORACLE_TRAINED[memo])
    facts = sample.scene_facts(manifest, keys)
    if any(k not in facts for k in keys):
        return None
    index = {f: i for i, f in enumerate(sample.SCENE_FACTS)}
    told = {}  # image -> [1, F]: the one region the model reads
    for s in splits:
        for r in prep.records[s]:
            told[r.image] = torch.zeros(1, len(index))
            told[r.image][0, [index[f] for f in facts[r.key]]] = 1.0

    def features(images):  # [B, 1, F], in place of the encoder's grid
        return torch.stack([told[i] for i in images])

    tc = settings.TrainConfig(decoder="multilabel", target="hashtag", seed=config.seed, epochs=ORACLE_TRAINED_EPOCHS,
                           max_hashtags=config.max_hashtags, device="cpu")
    true = [refs[0] if refs else [] for refs in prep.tokens["val"]]
    val_images = [r.image for r in prep.records["val"]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tc.seed)
        # (one region: every pooling is the same; "mean" is the plain one)
        model = multilabel.MultilabelTagger(multilabel.MultilabelConfig(len(prep.vocab), len(index), pooling="mean"))
        optimizer = loops.adam(list(model.parameters()), tc.lr)
        pairs = prep.pairs("train")
        best, bad = None, 0
        for epoch in range(1, tc.epochs + 1):
            for group in optimizer.param_groups:
                group["lr"] = tc.lr_at(epoch)
            loops.train_epoch(model, optimizer, features, pairs, tc, epoch, torch.device("cpu"))
            rule = multilabel.choose_rule(model.scores(features(val_images)), true, max_k=tc.max_hashtags,
                                          labels=prep.vocab.itos)
            if best is None or rule["val_f1"] > best["rule"]["val_f1"]:
                best, bad = {"epoch": epoch, "rule": rule, "weights": copy.deepcopy(model.state_dict())}, 0
            else:
                bad += 1
                if bad >= tc.patience:
                    break
        model.load_state_dict(best["weights"])
        probs = model.scores(features([r.image for r in prep.records[split]]))
    ids = multilabel.apply_rule(probs, best["rule"])
    out = {"tokens": [[prep.vocab.itos[i] for i in row] for row in ids], "epoch": best["epoch"],
           "rule": best["rule"], "facts": len(index), "seed": config.seed}
    _ORACLE_TRAINED[memo] = copy.deepcopy(out)
    return out


_ORACLE_BEST: dict = {}  # oracle_best_predictions of this process, by what they depend on (not the encoder)


def oracle_best_predictions(prep: Prepared, split: str = "test", tag_draws: int | None = None,
                            text_draws: int | None = None) -> dict | None:
    """The scene oracle's best guess for the records of ``split`` (see the module notes), or None where
    ``oracle_predictions`` gives None (never a partial oracle).

    ``tag_draws`` / ``text_draws``: draws per record (default ``ORACLE_TAG_DRAWS`` / ``ORACLE_TEXT_DRAWS``, read
    at call time). The draws become records as ``data.load_manifest`` makes them and are tokenized by
    ``reference_tokens`` with the run's config, as the references are. Hashtags: ``metrics.best_guess_tags``
    (at most ``max_hashtags``); texts: ``consensus_draw`` with CIDEr-D document frequencies from the training
    references.
    """
    config = prep.config
    recs = prep.records[split]
    manifest = _oracle_manifest(prep, split)
    if manifest is None:
        return None
    hashtags = config.target == "hashtag"
    n = int(ORACLE_TAG_DRAWS if tag_draws is None else tag_draws) if hashtags else \
        int(ORACLE_TEXT_DRAWS if text_draws is None else text_draws)
    # the same for every encoder's runs (05 scores the baselines of each encoder): computed once a process
    memo = (str(manifest), manifest.stat().st_mtime_ns, tuple(r.key for r in recs), config.seed, n, config.target,
            config.tokenizer, config.max_hashtags, config.max_len, config.cache_dir)
    if memo in _ORACLE_BEST:
        return copy.deepcopy(_ORACLE_BEST[memo])
    draws = sample.oracle_draws(manifest, [r.key for r in recs], seed=config.seed, n=n)
    if any(r.key not in draws for r in recs):
        return None
    report = D.LoadReport(source="oracle")
    out = {"draws": n, "seed": config.seed}
    if hashtags:  # one record per draw: its hashtags normalised, tokenized and cut as a reference's
        written = [D.make_record(report, f"oracle#{r.key}#{d}", key=r.key, image=r.image, texts=[],
                                 hashtags=p["hashtags"], category=r.category, split=r.split)
                   for r in recs for d, p in enumerate(draws[r.key])]
        toks = [refs[0] if refs else [] for refs in
                reference_tokens([w or D.Record(key="", image="") for w in written], config)[0]]
        guesses = [metrics.best_guess_tags(toks[i * n:(i + 1) * n], config.max_hashtags) for i in range(len(recs))]
        out.update(tokens=[g[0] for g in guesses], rule="top-m by share of draws, m maximising mean F1 vs the draws",
                   expected_f1=float(np.mean([g[1] for g in guesses])))
        _ORACLE_BEST[memo] = copy.deepcopy(out)
        return out
    # texts: one record per test record holding its n drawn texts, cleaned and tokenized as references
    written = []
    for r in recs:
        texts = [p["text"] for p in draws[r.key]]
        w = D.make_record(report, f"oracle#{r.key}", key=r.key, image=r.image, texts=texts, hashtags=[],
                          category=r.category, split=r.split)
        written.append(w or D.Record(key=r.key, image=r.image))
    toks, _ = reference_tokens(written, config)
    cider = metrics.CiderD(prep.tokens["train"])
    chosen = [cider.consensus(t) if t else (None, 0.0) for t in toks]
    out.update(tokens=[list(t[j]) if j is not None else [] for t, (j, _) in zip(toks, chosen)],
               rule="the draw with the highest mean CIDEr-D against the other draws (train document frequencies)",
               consensus_cider=float(np.mean([c[1] for c in chosen])),
               posts=[w.texts[j] if j is not None else "" for w, (j, _) in zip(written, chosen)])
    _ORACLE_BEST[memo] = copy.deepcopy(out)
    return out


def baseline_label(name: str, encoder: str, target: str, k: int | None = None, n: int | None = None) -> str:
    what = targets.target(target)
    return BASELINE_LABELS[name].format(k=k, n=n, encoder=ENCODER_LABELS.get(encoder, encoder),
                                        what=what.reference_unit, unit=what.pool_unit)


def baselines(prep: Prepared, split: str = "test", k="val", meteor=None) -> dict:
    """Every baseline scored on ``split`` with the code the runs use.

    Returns ``{name: {"label", "test": scores (metrics.json's "test" keys), "predictions":
    {record key: tokens}, ...details}}``.
    """
    config = prep.config
    refs = prep.tokens[split]
    keys = [r.key for r in prep.records[split]]
    out = {}
    for name, b in baseline_predictions(prep, split, k=k).items():
        hyps = b.pop("tokens")
        # (meteor None: the process's shared jar, metrics.shared_meteor)
        scores = targets.target(config.target).test_scores(refs, hyps, meteor=meteor)
        out[name] = {"label": baseline_label(name, config.encoder, config.target, b.get("k"), b.get("draws")),
                     "test": scores, **b, "predictions": dict(zip(keys, hyps))}
    return out


def baselines_path(run_dir, encoder: str, target: str) -> Path:
    return store.project_path(run_dir) / "baselines" / f"{encoder}-{target}.json"


def baseline_config(config: settings.TrainConfig) -> dict:
    d = config.to_dict()
    return {k: d[k] for k in BASELINE_CONFIG_KEYS}


def write_baselines(prep: Prepared, run_dir=None, split: str = "test", meteor=None) -> Path:
    """Score the baselines of ``prep`` and write ``run_dir/baselines/<encoder>-<target>.json``."""
    config = prep.config
    t0 = time.perf_counter()
    scored = baselines(prep, split, meteor=meteor)
    path = baselines_path(run_dir or config.run_dir, config.encoder, config.target)
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(path, {"format": BASELINES_FORMAT, "encoder": config.encoder, "target": config.target,
                            "split": split, "n": len(prep.records[split]),
                            "keys": [r.key for r in prep.records[split]], "config": baseline_config(config),
                            "seconds": time.perf_counter() - t0, "baselines": scored})
    return path


def _stale(old: dict | None, config: settings.TrainConfig, run_path: Path) -> bool:
    """Whether a stored baseline file was made from other data than the run at ``run_path``."""
    if not old or old.get("format") != BASELINES_FORMAT or old.get("config") != baseline_config(config):
        return True
    if (run_path / "predictions.jsonl").exists():
        return [x["key"] for x in read_predictions(run_path)] != old.get("keys")
    return False


def ensure_baselines(run_dir, refresh: bool = False, progress: bool = True, meteor=None) -> list[Path]:
    """Write the baselines of every (encoder, target) that has a run in ``run_dir``, unless a file
    made from the same data settings and the same test records (the keys in the run's
    predictions.jsonl) is there already; ``refresh`` recomputes it anyway.

    The data come from ``prepare`` with the config of one run of that encoder and target
    (features from the feature cache, so no encoder runs when the run's cache is there).
    ``meteor``: an open ``metrics.meteor_scorer()`` to share (starting the jar takes seconds).
    """
    done, paths = set(), []
    for p in run_folders(run_dir):
        d = read_json(p / "config.json")
        if not d:
            continue
        config = settings.TrainConfig.from_dict(d)
        cell = (config.encoder, config.target)
        if cell in done:
            continue
        done.add(cell)
        path = baselines_path(run_dir, *cell)
        if not refresh and not _stale(read_json(path), config, p):
            paths.append(path)
            continue
        t0 = time.perf_counter()
        prep = prepare(config, progress=False)
        paths.append(write_baselines(prep, run_dir, meteor=meteor))
        if progress:
            print(f"baselines {cell[0]}-{cell[1]}: {time.perf_counter() - t0:.1f} s")
    return paths


def load_baselines(run_dir) -> pd.DataFrame:
    """Every baseline of ``run_dir/baselines/*.json``, one row each, scores as ``test.<key>``.

    A baseline that does not depend on the encoder (most frequent, random) is kept once per target.
    """
    rows = []
    for path in sorted((store.project_path(run_dir) / "baselines").glob("*.json")):
        d = read_json(path)
        for name, b in d["baselines"].items():
            rows.append({"label": b["label"], "baseline": name, "encoder": d["encoder"], "target": d["target"],
                         "smoke": bool(d["config"].get("smoke")), "n": d["n"], "file": path.name,
                         "seconds": d.get("seconds"),
                         **{f"test.{k}": (math.nan if v is None else v) for k, v in b["test"].items()}})
    cols = ["label", "baseline", "encoder", "target", "smoke", "n", "file", "seconds"]
    if not rows:
        return pd.DataFrame(columns=cols)
    frame = pd.DataFrame(rows)
    frame["order"] = frame.baseline.map({name: i for i, name in enumerate(BASELINE_ORDER)}).fillna(len(BASELINE_ORDER))
    frame = frame.sort_values(["target", "order", "encoder"], kind="stable").drop(columns="order")
    return frame.drop_duplicates(["target", "label"]).reset_index(drop=True)


def main(argv=None) -> list[Path]:
    """``python -m capkit.baselines RUN_DIR [--refresh]``: :func:`ensure_baselines` from the command line
    (``make run`` scores them as the last job beside the training runs, so that ``05_results`` finds them
    written); prints each file and returns their paths."""
    parser = argparse.ArgumentParser(
        prog="python -m capkit.baselines", description="Score the baselines of every encoder x target that has a "
        "run folder in RUN_DIR (what 05_results reads from RUN_DIR/baselines/).")
    parser.add_argument("run_dir")
    parser.add_argument("--refresh", action="store_true", help="recompute files that are up to date")
    args = parser.parse_args(argv)
    paths = ensure_baselines(args.run_dir, refresh=args.refresh)
    for path in paths:
        print(path, flush=True)
    return paths


if __name__ == "__main__":
    main()
