"""The baselines and oracle rows of the results tables, predicted and scored with the runs' metric code.

The rows (:func:`baselines`: the same metric keys as a run's ``metrics.json["test"]``), all computed from the run's
own prepared data (``prepare`` with the run's config, so the same test records, tokens and vocabulary caps):

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
  of a model that reads the scene perfectly (``oracles.oracle_best_predictions``). The writer draws many
  posts from each true scene (``sample.oracle_draws``, seeded per (seed, key, draw); by default
  ``oracles.ORACLE_TAG_DRAWS`` = 200 for hashtags, ``oracles.ORACLE_TEXT_DRAWS`` = 30 for texts), tokenized
  exactly as the references. Hashtags: each tag's probability is the share of draws that use it; the
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
  true scene instead of reading it from the picture (``oracles.oracle_trained_predictions``): trained on the same
  training posts, the same way, with the scene's facts as its only input. It is what a model that reads every
  scene fact right can learn from these posts: between the best guess (which knows the writer's exact tag
  probabilities) and the models, it separates what the models miss in the picture from what the training
  posts cannot teach (measured on the 2,200-post dataset: 0.385 / 0.387 / 0.387 for seeds 0 / 1 / 2, against
  the best guess's 0.405).

The oracle rows are references, not baselines to beat: tables note them "oracle" / "oracle,
ceiling" and never bold them, and ``results.summary`` reads the best model against the ceiling
(``gap_closed``: the share of the gap from the best baseline to ``oracle_best`` it closes), and against
``oracle_trained`` where the table has it.

This module imports ``encoders`` (labels), ``metrics``, ``oracles``, ``prepare``, ``retrieval`` and ``targets``;
the files of a run directory's baselines and their command are :mod:`capkit.baselines`.
"""

from __future__ import annotations

import math

import numpy as np

from capkit import metrics, oracles, retrieval, targets
from capkit.encoders import ENCODER_LABELS
from capkit.prepare import Prepared

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
CONSENSUS_TEXTS = (5, 10, 20, 40)  # consensus, texts: candidate references tried on validation (cost ~ m^2 an image)
CONSENSUS_POSTS = retrieval.VOTE_SIZES  # consensus, hashtags: neighbours tried on validation (5 .. 160)


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
    oracle = oracles.oracle_predictions(prep, split)
    if oracle is not None:
        out["oracle"] = oracle
        trained = oracles.oracle_trained_predictions(prep, split)
        if trained is not None:
            out["oracle_trained"] = trained
        best = oracles.oracle_best_predictions(prep, split)
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
        scores = prep.target.test_scores(refs, hyps, meteor=meteor)
        out[name] = {"label": baseline_label(name, config.encoder, config.target, b.get("k"), b.get("draws")),
                     "test": scores, **b, "predictions": dict(zip(keys, hyps))}
    return out
