"""Results: collect the run folders of a ``run_dir`` into the study's two tables, score the
baselines with the same metric code, recompute a run's scores from its predictions, and write
the tables as CSV and Markdown.

The study's layout (``../shared/seed/README.md``): one row per encoder x decoder, in the order
baseline (first encoder + soft attention), stronger encoder + soft, first encoder + Look-Back,
stronger encoder + Look-Back; text columns BLEU-1 / ROUGE-L / METEOR with the study's own
definitions (``metrics.study_text_scores``), hashtag columns F1 / Precision / Recall (micro, over
sets). Our grid uses EfficientNet-Lite0 / Lite2 where the study used ResNet-101 / ResNeXt-101
WSL; a run that was not trained stays in the table as an empty ("missing") row.

Baselines (``baselines``; written to ``run_dir/baselines/<encoder>-<target>.json`` with the same
metric keys as a run's ``metrics.json["test"]``), all computed from the run's own prepared data
(``train.prepare`` with the run's config, so the same test records, tokens and vocabulary caps):

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

This module sits after ``train`` in the flow and imports it, ``metrics``, ``models`` (the decoders' labels),
``multilabel`` (the set model, for ``oracle_trained`` and the vote sizes), ``store``, ``data`` and ``sample``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from capkit import data as D
from capkit import metrics, models, multilabel, retrieval, sample, store, targets, train
from capkit.prepare import Prepared, prepare, reference_tokens

ENCODER_LABELS = {
    "resnet101": "ResNet-101",
    "resnext101_32x8d_wsl": "ResNeXt-101 32x8d WSL",
    **{f"efficientnet_lite{n}{v}": f"EfficientNet-Lite{n}{label}" for n in (0, 2)
       for v, label in (("", ""), ("_deep", " (last stage)"), ("_deep_up", " (last stage, upsampled)"),
                        ("_multi", " (stages 5+7)"), ("_multi7", " (stages 5+7, 7x7)"))},
}
ENCODER_ORDER = tuple(ENCODER_LABELS)  # the study's encoders first, then ours
# the grid `make run` trains: stages 5 + 7 at 14x14 (the dilated network) learned best and its attention points at
# the named objects (README, "Encoders")
DEFAULT_ENCODERS = ("efficientnet_lite0_multi", "efficientnet_lite2_multi")
DEFAULT_DECODERS = ("soft", "lookback")  # the study's two; any name of models.DECODERS is shown by its label
TARGETS = ("text", "hashtag")

# Display name -> key of metrics.json["test"]: the study's columns, then the extra metrics.
STUDY_COLUMNS = {
    "text": {"BLEU-1": "study_bleu1", "ROUGE-L": "study_rouge_l", "METEOR": "study_meteor"},
    "hashtag": {"F1": "f1", "Precision": "precision", "Recall": "recall"},
}
# The main tables: the study's columns, and for texts the field's criterion beside them (CIDEr-D selects epochs)
MAIN_COLUMNS = {"text": {**STUDY_COLUMNS["text"], "CIDEr-D": "CIDEr-D"}, "hashtag": STUDY_COLUMNS["hashtag"]}
EXTRA_COLUMNS = {
    "text": {k: k for k in metrics.COCO_KEYS},
    "hashtag": {"macro F1": "macro_f1", **{f"{m[0].upper()}@{k}": f"{m}@{k}" for k in (1, 3, 5, 10)
                                           for m in ("precision", "recall")}},
}

# The study's published numbers (seed/README.md): their private KTS + crawled Instagram data,
# ResNet-101 / ResNeXt-101 WSL encoders. Context only: not comparable with our runs.
STUDY_ROWS = (("baseline", "resnet101", "soft"), ("ResNeXt", "resnext101_32x8d_wsl", "soft"),
              ("Look-Back Attention", "resnet101", "lookback"),
              ("ResNeXt + Look-Back", "resnext101_32x8d_wsl", "lookback"))
PUBLISHED = {
    "text": {"baseline": (0.0639, 0.0897, 0.0573), "ResNeXt": (0.0738, 0.0982, 0.0664),
             "Look-Back Attention": (0.0649, 0.0918, 0.0592), "ResNeXt + Look-Back": (0.0736, 0.0982, 0.0657)},
    "hashtag": {"baseline": (0.1454, 0.214, 0.1101), "ResNeXt": (0.1709, 0.2595, 0.1274),
                "Look-Back Attention": (0.1475, 0.2013, 0.1164), "ResNeXt + Look-Back": (0.1617, 0.2082, 0.1322)},
}
PUBLISHED_SOURCE = ("the 2019 study's published numbers: their private data (Korean Tourist Spot posts + ~1,000 "
                    "crawled selfies), ResNet-101 / ResNeXt-101 WSL encoders; a different dataset, not comparable")

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


# ----------------------------------------------------------------------------- reading run folders


def read_json(path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def read_predictions(run_path) -> list[dict]:
    """The lines of ``<run>/predictions.jsonl``."""
    return D.read_jsonl(Path(run_path) / "predictions.jsonl")


def run_folders(run_dir) -> list[Path]:
    """Folders of ``run_dir`` that hold a run: a ``config.json`` or a ``metrics.json``."""
    root = D.project_path(run_dir)
    return sorted({p.parent for pattern in ("*/config.json", "*/metrics.json") for p in root.glob(pattern)})


def run_info(run_path) -> dict:
    """One run as a flat dict: identity, status, timings and every test score (``test.<key>``).

    ``status``: ``"done"`` (metrics.json present) or ``"not tested"`` (trained, no metrics.json yet).
    """
    run_path = Path(run_path)
    config = read_json(run_path / "config.json") or {}
    m = read_json(run_path / "metrics.json")
    info = {"run": run_path.name, "path": str(run_path),
            "encoder": (m or config).get("encoder"), "decoder": (m or config).get("decoder"),
            "target": (m or config).get("target"), "dataset": (m or config).get("dataset"),
            "smoke": bool(config.get("smoke", False)), "scst_epochs": int(config.get("scst_epochs") or 0),
            "status": "done" if m else "not tested"}
    if m:
        info.update({"n": m.get("n"), "beam_size": m.get("beam_size"), "epochs_run": m.get("epochs_run"),
                     "best_epoch": m.get("best_epoch"), "train_seconds": m.get("train_seconds"),
                     "decode_images_per_second": m.get("decode_images_per_second")})
        info.update({f"test.{k}": (math.nan if v is None else v) for k, v in m.get("test", {}).items()})
    return info


def collect(run_dir) -> pd.DataFrame:
    """Every run folder of ``run_dir``, one row each (see ``run_info``); an empty frame when none."""
    rows = [run_info(p) for p in run_folders(run_dir)]
    cols = ["run", "path", "encoder", "decoder", "target", "dataset", "smoke", "status"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)


# ----------------------------------------------------------------------------- the study's layout


def _ordered(found, defaults, order) -> list[str]:
    names = list(dict.fromkeys([*defaults, *[f for f in found if isinstance(f, str)]]))
    rank = {n: i for i, n in enumerate(order)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def grid(runs: pd.DataFrame, encoders=None, decoders=None) -> list[tuple[str, str]]:
    """(encoder, decoder) rows in the study's order: every encoder with the first decoder, then the next.

    ``encoders`` default to those found in ``runs`` plus the two ``make run`` trains (EfficientNet-Lite0 /
    Lite2), ``decoders`` to the study's two (soft / Look-Back), so untrained cells show as missing; runs of other
    decoders (Predict-Forward, set prediction, a decoder of your own) are the tables' extra rows.
    """
    encoders = list(encoders) if encoders else _ordered(runs.get("encoder", []), DEFAULT_ENCODERS, ENCODER_ORDER)
    decoders = list(decoders) if decoders else list(DEFAULT_DECODERS)
    return [(e, d) for d in decoders for e in encoders]


def decoder_label(decoder: str) -> str:
    """The registry's label of a decoder (``"Look-Back"``), the name itself for one it does not hold; an
    ensemble's (``"soft+lookback"``, capkit.ensemble) is its members' (``"ensemble of soft & Look-Back"``)."""
    if "+" in decoder:
        return "ensemble of " + " & ".join(decoder_label(d) for d in decoder.split("+"))
    try:
        spec = models.decoder_spec(decoder)
    except ValueError:
        spec = None
    return spec.label if spec else decoder


def row_label(encoder: str, decoder: str, baseline: bool = False) -> str:
    """``"EfficientNet-Lite0 + soft (baseline)"``."""
    label = f"{ENCODER_LABELS.get(encoder, encoder)} + {decoder_label(decoder)}"
    return label + (" (baseline)" if baseline else "")


def _pick(runs: pd.DataFrame, encoder: str, decoder: str, target: str):
    """The run of a grid cell: the one named ``<encoder>-<decoder>-<target>`` if present, else the first."""
    if runs.empty:
        return None
    cell = runs[(runs.encoder == encoder) & (runs.decoder == decoder) & (runs.target == target)]
    if cell.empty:
        return None
    named = cell[cell.run == f"{encoder}-{decoder}-{target}"]
    return (named if len(named) else cell).iloc[0]


def study_table(runs: pd.DataFrame, target: str, columns: dict | None = None, encoders=None, decoders=None,
                baselines: pd.DataFrame | None = None) -> pd.DataFrame:
    """The study's table for ``target`` ('text' | 'hashtag'): rows = encoder x decoder, then baselines.

    ``columns``: display name -> test-score key (default: the study's three columns). Missing runs
    are rows of NaN with ``note`` "missing"; smoke runs are noted "smoke"; runs that do not fit the
    grid (another run name for a cell) are added under their run name. ``run`` names the folder.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    columns = columns or STUDY_COLUMNS[target]
    cells = grid(runs, encoders, decoders)
    rows, used = [], set()

    def row(label, source, note, run=""):
        values = {name: float(source.get(f"test.{key}", math.nan)) if source is not None else math.nan
                  for name, key in columns.items()}
        rows.append({"model": label, **values, "run": run, "note": note})

    for i, (enc, dec) in enumerate(cells):
        r = _pick(runs, enc, dec, target)
        label = row_label(enc, dec, baseline=i == 0)
        if r is None:
            row(label, None, "missing")
            continue
        used.add(r.run)
        note = "not tested" if r.status != "done" else ("smoke" if r.smoke else "")
        row(label, r if r.status == "done" else None, note, r.run)
    others = runs[(runs.target == target) & ~runs.run.isin(used)] if not runs.empty else runs
    for _, r in others.iterrows():
        note = "not tested" if r.status != "done" else ("smoke" if r.smoke else "")
        extra = " + SCST" if r.get("scst_epochs") else ""  # self-critical epochs after cross-entropy
        row(f"{row_label(r.encoder, r.decoder)}{extra} [{r.run}]", r if r.status == "done" else None, note, r.run)
    if baselines is not None and not baselines.empty:
        for _, b in baselines[baselines.target == target].iterrows():
            best = b.label.startswith(ORACLE_BEST_PREFIX)
            oracle = b.label.startswith(ORACLE_PREFIX) and not best
            note = ", ".join(n for n, on in (("oracle", oracle), ("oracle, ceiling", best), ("smoke", b.smoke)) if on)
            row(b.label, b, note, b.file)
    return pd.DataFrame(rows).set_index("model")


def published_table(target: str) -> pd.DataFrame:
    """The study's published table for ``target``, rows as in its README."""
    names = list(STUDY_COLUMNS[target])
    rows = [{"model": f"{label}: {row_label(enc, dec)}",
             **dict(zip(names, PUBLISHED[target][label]))} for label, enc, dec in STUDY_ROWS]
    return pd.DataFrame(rows).set_index("model")


def side_by_side(runs: pd.DataFrame, target: str, encoders=None) -> pd.DataFrame:
    """Our 2 x 2 grid next to the study's four rows, position by position in its layout.

    Ours: the first two encoders of ``grid`` (or ``encoders``) x soft / Look-Back. Columns
    ``ours: <metric>`` and ``study: <metric>``; ``ours`` and ``study`` name the models. The
    study's numbers come from a different (private, real) dataset and other encoders: compare
    magnitudes and orderings, not values.
    """
    names = list(STUDY_COLUMNS[target])
    encoders = list(encoders or dict.fromkeys(e for e, _ in grid(runs)))[:2]
    ours = study_table(runs, target, encoders=encoders, decoders=DEFAULT_DECODERS).head(len(STUDY_ROWS))
    rows = []
    for (label, enc, dec), (model, r) in zip(STUDY_ROWS, ours.iterrows()):
        row = {"position": label, "ours": model, **{f"ours: {n}": r[n] for n in names},
               "study": row_label(enc, dec), **{f"study: {n}": v for n, v in zip(names, PUBLISHED[target][label])}}
        rows.append(row)
    return pd.DataFrame(rows).set_index("position")


# ----------------------------------------------------------------------------- recomputing a run's scores


def run_target(run_path, lines: list[dict] | None = None) -> str:
    """A run's target from its config.json or metrics.json, else from its predictions."""
    run_path = Path(run_path)
    for name in ("config.json", "metrics.json"):
        d = read_json(run_path / name)
        if d and d.get("target"):
            return d["target"]
    lines = read_predictions(run_path) if lines is None else lines
    return "hashtag" if lines and "true_hashtags" in lines[0] else "text"


def scores_from_predictions(lines: list[dict], target: str, meteor=None) -> dict:
    """Test scores from ``predictions.jsonl`` lines alone, with the code ``evaluation.test`` uses.

    Text: ``metrics.text_scores(reference_tokens, prediction_tokens)``; hashtags:
    ``metrics.hashtag_scores(true_hashtags, hashtags)`` (the target's ``rescore``).
    """
    return targets.target(target).rescore(lines, meteor=meteor)


def recompute(run_path, meteor=None) -> dict:
    """A run's test scores recomputed from its ``predictions.jsonl`` alone."""
    lines = read_predictions(run_path)
    return scores_from_predictions(lines, run_target(run_path, lines), meteor=meteor)


def score_differences(stored: dict, recomputed: dict, tol: float = 1e-9) -> dict:
    """``{key: (stored, recomputed)}`` for every key whose values differ by more than ``tol``.

    JSON keeps NaN as null: null and NaN count as equal. A key found on one side only counts too.
    """
    out = {}
    for key in sorted(set(stored) | set(recomputed)):
        a, b = stored.get(key, "absent"), recomputed.get(key, "absent")
        a = math.nan if a is None else a
        b = math.nan if b is None else b
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol:
                continue
        out[key] = (a, b)
    return out


def check_runs(run_dir, meteor=None) -> pd.DataFrame:
    """For every tested run: the largest difference between metrics.json and the recomputed scores."""
    rows = []
    for p in run_folders(run_dir):  # (meteor None: the process's shared jar, metrics.shared_meteor)
        m = read_json(p / "metrics.json")
        if not m or not (p / "predictions.jsonl").exists():
            continue
        t0 = time.perf_counter()
        diff = score_differences(m.get("test", {}), recompute(p, meteor=meteor))
        rows.append({"run": p.name, "keys": len(m.get("test", {})), "differing": ", ".join(diff) or "none",
                     "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows, columns=["run", "keys", "differing", "seconds"])


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
    manifest = D.project_path(config.data_dir) / "manifest.jsonl"
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
    ``sample.SCENE_FACTS``. It is trained as ``make run`` trains the set runs (``train.train_epoch`` on the
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

    tc = train.TrainConfig(decoder="multilabel", target="hashtag", seed=config.seed, epochs=ORACLE_TRAINED_EPOCHS,
                           max_hashtags=config.max_hashtags, device="cpu")
    true = [refs[0] if refs else [] for refs in prep.tokens["val"]]
    val_images = [r.image for r in prep.records["val"]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tc.seed)
        # (one region: every pooling is the same; "mean" is the plain one)
        model = multilabel.MultilabelTagger(multilabel.MultilabelConfig(len(prep.vocab), len(index), pooling="mean"))
        optimizer = train.adam(list(model.parameters()), tc.lr)
        pairs = prep.pairs("train")
        best, bad = None, 0
        for epoch in range(1, tc.epochs + 1):
            for group in optimizer.param_groups:
                group["lr"] = tc.lr_at(epoch)
            train.train_epoch(model, optimizer, features, pairs, tc, epoch, torch.device("cpu"))
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
    return D.project_path(run_dir) / "baselines" / f"{encoder}-{target}.json"


def baseline_config(config: train.TrainConfig) -> dict:
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


def _stale(old: dict | None, config: train.TrainConfig, run_path: Path) -> bool:
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

    The data come from ``train.prepare`` with the config of one run of that encoder and target
    (features from the feature cache, so no encoder runs when the run's cache is there).
    ``meteor``: an open ``metrics.meteor_scorer()`` to share (starting the jar takes seconds).
    """
    done, paths = set(), []
    for p in run_folders(run_dir):
        d = read_json(p / "config.json")
        if not d:
            continue
        config = train.TrainConfig.from_dict(d)
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
    for path in sorted((D.project_path(run_dir) / "baselines").glob("*.json")):
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


# ----------------------------------------------------------------------------- examples for the image grid


def best_run(table: pd.DataFrame, column: str) -> str | None:
    """The run folder of the model row (not a baseline) with the highest ``column``; None if none."""
    models = table[~table.index.str.startswith("Baseline:")]
    if column not in models:
        return None
    models = models[models[column].notna()]
    return None if models.empty else models.loc[models[column].idxmax(), "run"]


def prediction_examples(run_dir, text_run: str | None, hashtag_run: str | None, n: int = 8,
                        seed: int = 0) -> list[dict]:
    """``n`` test images (drawn with ``seed``, one category after another) with reference and
    generated text (from ``text_run``) and true and predicted hashtags (from ``hashtag_run``)."""
    root = D.project_path(run_dir)
    by_key: dict[str, dict] = {}
    for run, kind in ((text_run, "text"), (hashtag_run, "hashtag")):
        if not run or not (root / run / "predictions.jsonl").exists():
            continue
        for x in read_predictions(root / run):
            item = by_key.setdefault(x["key"], {"key": x["key"], "image": x["image"], "category": x.get("category")})
            if kind == "text":
                item.update(reference=x["references"][0] if x["references"] else "", generated=x["prediction"])
            else:
                item.update(true_hashtags=x["true_hashtags"], hashtags=x["hashtags"])
    items = list(by_key.values())
    if text_run and hashtag_run:  # prefer images that both runs saw
        both = [x for x in items if "generated" in x and "hashtags" in x]
        items = both or items
    rng = np.random.default_rng(seed)
    items = [items[i] for i in rng.permutation(len(items))]
    by_cat: dict = {}
    for x in items:
        by_cat.setdefault(x.get("category"), []).append(x)
    picked = []
    while len(picked) < min(n, len(items)):  # round robin over categories: a varied grid
        for group in by_cat.values():
            if group and len(picked) < n:
                picked.append(group.pop(0))
    return picked


def gap_closed(model_score: float, baseline_score: float, oracle_score: float) -> float:
    """The share of the gap from a baseline to the oracle's ceiling that a model closes:
    ``(model - baseline) / (oracle - baseline)``; 0 at the baseline, 1 at the ceiling, negative below the
    baseline, above 1 past the ceiling. NaN when a score is not finite or the oracle does not score above the
    baseline (no gap to close)."""
    m, b, o = (float(v) for v in (model_score, baseline_score, oracle_score))
    if not all(math.isfinite(v) for v in (m, b, o)) or o <= b:
        return math.nan
    return (m - b) / (o - b)


def summary(table: pd.DataFrame, column: str) -> str:
    """One line: the best model on ``column``, the best baseline, whether the model beats it and, when the table
    has the scene oracle's rows, the ceiling (``oracle_best``) with the share of the gap from the best baseline to
    it that the best model closes (``gap_closed``), the same for the set model told the scene (``oracle_trained``,
    hashtags), and the single fresh draw's score. The oracle rows are references, never the baseline to beat."""
    labels = table.index.astype(str)
    is_base = labels.str.startswith("Baseline:")
    is_oracle = labels.str.startswith(ORACLE_PREFIX)
    models = table[~is_base][column].dropna()
    bases = table[is_base & ~is_oracle][column].dropna()
    missing = int(table["note"].eq("missing").sum()) if "note" in table else 0
    tail = f"; {missing} grid cell(s) missing" if missing else ""
    refs = ""
    for label, name in ((ORACLE_BEST_PREFIX, "ceiling, "), (BASELINE_LABELS["oracle_trained"], "")):
        found = table[labels.str.startswith(label)][column].dropna()
        if not len(found):
            continue
        top = found.iloc[0]
        refs += f"; {name}{found.index[0][len('Baseline: '):]} {top:.4f}"
        if not models.empty:
            gap = gap_closed(models.max(), bases.max(), top) if len(bases) else math.nan
            if math.isfinite(gap):
                refs += f": the best model closes {gap:.0%} of the gap from the best baseline to it"
            elif top > 0:
                refs += f": the best model reaches {models.max() / top:.0%} of it"
    oracle = table[labels == ORACLE_LABEL][column].dropna()
    if len(oracle):
        refs += f"; scene oracle (fresh draw) {oracle.iloc[0]:.4f}"
    if models.empty:
        return f"{column}: no tested model{tail}{refs}"
    line = f"{column}: best model {models.idxmax()} {models.max():.4f}"
    if len(bases):
        verdict = "beats" if models.max() > bases.max() else "does not beat"
        line += f"; it {verdict} the best baseline, {bases.idxmax()[len('Baseline: '):]} {bases.max():.4f}"
    return line + refs + tail


def scores_only(table: pd.DataFrame) -> pd.DataFrame:
    """The numeric score columns of a ``study_table`` (no ``run`` / ``note``)."""
    return table[[c for c in table.columns if table[c].dtype.kind == "f"]]


# ----------------------------------------------------------------------------- writing tables


def _cell(v, digits: int, missing: str) -> str:
    if isinstance(v, (float, np.floating)):
        return missing if not math.isfinite(v) else f"{v:.{digits}f}"
    if v is None or (isinstance(v, str) and not v):
        return ""
    return str(v).replace("|", "\\|")


def markdown_table(table: pd.DataFrame, digits: int = 4, bold_best: bool = True, missing: str = "—",
                   not_bold=(ORACLE_PREFIX,)) -> str:
    """A GitHub Markdown table; the highest shown value of every numeric column in bold (all ties;
    none when every shown value of the column is the same); NaN as ``missing``. Rows whose index starts with
    one of ``not_bold`` (by default the scene oracle's two rows, references) are neither bold nor counted for
    the best."""
    frame = table.reset_index()
    ranked = ~table.index.astype(str).str.startswith(tuple(not_bold)) if len(not_bold) else \
        np.ones(len(table), dtype=bool)
    best = {}
    if bold_best:  # a column whose shown values are all equal has no best
        for col in frame.columns:
            if frame[col].dtype.kind in "fi":
                shown = {round(float(v), digits) for v, r in zip(frame[col], ranked) if r and math.isfinite(v)}
                if len(shown) > 1:
                    best[col] = max(shown)
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" if frame[c].dtype.kind not in "fi" else "---:" for c in frame.columns) + "|"
    lines = [head, rule]
    for (_, r), rank in zip(frame.iterrows(), ranked):
        cells = []
        for col in frame.columns:
            text = _cell(r[col], digits, missing)
            v = r[col]
            if rank and col in best and isinstance(v, (float, int, np.floating, np.integer)) and math.isfinite(v) \
                    and round(float(v), digits) == best[col]:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_table(table: pd.DataFrame, run_dir, name: str, note: str = "", digits: int = 4) -> tuple[Path, Path]:
    """Write ``run_dir/<name>.csv`` and ``run_dir/<name>.md`` (the Markdown with ``note`` below it)."""
    root = D.project_path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    csv, md = root / f"{name}.csv", root / f"{name}.md"
    table.to_csv(csv, float_format=f"%.{digits + 2}g")
    md.write_text(markdown_table(table, digits) + (f"\n{note.strip()}\n" if note else ""), encoding="utf-8")
    return csv, md


def main(argv=None) -> list[Path]:
    """``python -m capkit.results baselines RUN_DIR [--refresh]``: :func:`ensure_baselines` from the command line
    (``make run`` scores them as the last job beside the training runs, so that ``05_results`` finds them
    written); prints each file and returns their paths."""
    parser = argparse.ArgumentParser(
        prog="python -m capkit.results", description="Score the baselines of every encoder x target that has a "
        "run folder in RUN_DIR (what 05_results reads from RUN_DIR/baselines/).")
    parser.add_argument("command", choices=["baselines"])
    parser.add_argument("run_dir")
    parser.add_argument("--refresh", action="store_true", help="recompute files that are up to date")
    args = parser.parse_args(argv)
    paths = ensure_baselines(args.run_dir, refresh=args.refresh)
    for path in paths:
        print(path, flush=True)
    return paths


if __name__ == "__main__":
    main()
