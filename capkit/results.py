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
  is closest to the test image in the run encoder's pooled features (grid mean, cosine).
- ``random``: the text or hashtags of a training post drawn uniformly with replacement
  (``metrics.random_texts`` seeded with the run's seed).

This module sits after ``train`` in the flow and imports it, ``metrics`` and ``data``.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd

from capkit import data as D
from capkit import metrics, train

ENCODER_LABELS = {
    "resnet101": "ResNet-101",
    "resnext101_32x8d_wsl": "ResNeXt-101 32x8d WSL",
    "efficientnet_lite0": "EfficientNet-Lite0",
    "efficientnet_lite2": "EfficientNet-Lite2",
}
ENCODER_ORDER = tuple(ENCODER_LABELS)  # the study's encoders first, then ours
DEFAULT_ENCODERS = ("efficientnet_lite0", "efficientnet_lite2")  # the grid `make run` trains
DECODER_LABELS = {"soft": "soft", "lookback": "Look-Back"}
DEFAULT_DECODERS = ("soft", "lookback")
TARGETS = ("text", "hashtag")

# Display name -> key of metrics.json["test"]: the study's columns, then the extra metrics.
STUDY_COLUMNS = {
    "text": {"BLEU-1": "study_bleu1", "ROUGE-L": "study_rouge_l", "METEOR": "study_meteor"},
    "hashtag": {"F1": "f1", "Precision": "precision", "Recall": "recall"},
}
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
    "random": "Baseline: random training {what}",
}
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
            "smoke": bool(config.get("smoke", False)), "status": "done" if m else "not tested"}
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

    ``encoders`` / ``decoders`` default to those found in ``runs`` plus the grid ``make run``
    trains (EfficientNet-Lite0 / Lite2 x soft / Look-Back), so untrained cells show as missing.
    """
    encoders = list(encoders) if encoders else _ordered(runs.get("encoder", []), DEFAULT_ENCODERS, ENCODER_ORDER)
    decoders = list(decoders) if decoders else _ordered(runs.get("decoder", []), DEFAULT_DECODERS, DEFAULT_DECODERS)
    return [(e, d) for d in decoders for e in encoders]


def row_label(encoder: str, decoder: str, baseline: bool = False) -> str:
    """``"EfficientNet-Lite0 + soft (baseline)"``."""
    label = f"{ENCODER_LABELS.get(encoder, encoder)} + {DECODER_LABELS.get(decoder, decoder)}"
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
        row(f"{row_label(r.encoder, r.decoder)} [{r.run}]", r if r.status == "done" else None, note, r.run)
    if baselines is not None and not baselines.empty:
        for _, b in baselines[baselines.target == target].iterrows():
            row(b.label, b, "smoke" if b.smoke else "", b.file)
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
    """Test scores from ``predictions.jsonl`` lines alone, with the code ``train.test`` uses.

    Text: ``metrics.text_scores(reference_tokens, prediction_tokens)``; hashtags:
    ``metrics.hashtag_scores(true_hashtags, hashtags)``.
    """
    if target == "hashtag":
        return metrics.hashtag_scores([x["true_hashtags"] for x in lines], [x["hashtags"] for x in lines])
    return metrics.text_scores([x["reference_tokens"] for x in lines], [x["prediction_tokens"] for x in lines],
                               meteor=meteor)


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
    with metrics.meteor_scorer() if meteor is None else nullcontext(meteor) as jar:
        for p in run_folders(run_dir):
            m = read_json(p / "metrics.json")
            if not m or not (p / "predictions.jsonl").exists():
                continue
            t0 = time.perf_counter()
            diff = score_differences(m.get("test", {}), recompute(p, meteor=jar))
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


def baseline_predictions(prep: train.Prepared, split: str = "test", k="val") -> dict:
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
    train_images = [r.image for r in prep.records["train"]]
    nn = metrics.nearest_neighbours(prep.store.pooled(train_images),
                                    prep.store.pooled([r.image for r in prep.records[split]]), metric="cosine")
    out["nearest_neighbour"] = {"tokens": [list(train_refs[j]) for j in nn],
                                "neighbours": [prep.records["train"][j].key for j in nn]}
    drawn = metrics.random_texts(list(range(len(train_refs))), n, seed=config.seed)
    out["random"] = {"tokens": [list(train_refs[j]) for j in drawn], "seed": config.seed,
                     "drawn": [prep.records["train"][j].key for j in drawn]}
    return out


def baseline_label(name: str, encoder: str, target: str, k: int | None = None) -> str:
    what = "text" if target == "text" else "post's hashtags"
    return BASELINE_LABELS[name].format(k=k, encoder=ENCODER_LABELS.get(encoder, encoder), what=what)


def baselines(prep: train.Prepared, split: str = "test", k="val", meteor=None) -> dict:
    """Every baseline scored on ``split`` with the code the runs use.

    Returns ``{name: {"label", "test": scores (metrics.json's "test" keys), "predictions":
    {record key: tokens}, ...details}}``.
    """
    config = prep.config
    refs = prep.tokens[split]
    keys = [r.key for r in prep.records[split]]
    out = {}
    with metrics.meteor_scorer() if meteor is None and config.target == "text" else nullcontext(meteor) as jar:
        for name, b in baseline_predictions(prep, split, k=k).items():
            hyps = b.pop("tokens")
            if config.target == "text":
                scores = metrics.text_scores(refs, hyps, meteor=jar)
            else:
                scores = metrics.hashtag_scores([r[0] for r in refs], hyps)
            out[name] = {"label": baseline_label(name, config.encoder, config.target, b.get("k")),
                         "test": scores, **b, "predictions": dict(zip(keys, hyps))}
    return out


def baselines_path(run_dir, encoder: str, target: str) -> Path:
    return D.project_path(run_dir) / "baselines" / f"{encoder}-{target}.json"


def baseline_config(config: train.TrainConfig) -> dict:
    d = config.to_dict()
    return {k: d[k] for k in BASELINE_CONFIG_KEYS}


def write_baselines(prep: train.Prepared, run_dir=None, split: str = "test", meteor=None) -> Path:
    """Score the baselines of ``prep`` and write ``run_dir/baselines/<encoder>-<target>.json``."""
    config = prep.config
    t0 = time.perf_counter()
    scored = baselines(prep, split, meteor=meteor)
    path = baselines_path(run_dir or config.run_dir, config.encoder, config.target)
    path.parent.mkdir(parents=True, exist_ok=True)
    train.write_json(path, {"encoder": config.encoder, "target": config.target, "split": split,
                            "n": len(prep.records[split]), "keys": [r.key for r in prep.records[split]],
                            "config": baseline_config(config),
                            "seconds": time.perf_counter() - t0, "baselines": scored})
    return path


def _stale(old: dict | None, config: train.TrainConfig, run_path: Path) -> bool:
    """Whether a stored baseline file was made from other data than the run at ``run_path``."""
    if not old or old.get("config") != baseline_config(config):
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
        prep = train.prepare(config, progress=False)
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
    frame["order"] = frame.baseline.map({"nearest_neighbour": 0, "most_frequent": 1, "random": 2})
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


def summary(table: pd.DataFrame, column: str) -> str:
    """One line: the best model on ``column``, the best baseline, whether the model beats it."""
    is_base = table.index.str.startswith("Baseline:")
    models, bases = table[~is_base][column].dropna(), table[is_base][column].dropna()
    missing = int(table["note"].eq("missing").sum()) if "note" in table else 0
    tail = f"; {missing} grid cell(s) missing" if missing else ""
    if models.empty:
        return f"{column}: no tested model{tail}"
    line = f"{column}: best model {models.idxmax()} {models.max():.4f}"
    if len(bases):
        verdict = "beats" if models.max() > bases.max() else "does not beat"
        line += f"; it {verdict} the best baseline, {bases.idxmax()[len('Baseline: '):]} {bases.max():.4f}"
    return line + tail


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


def markdown_table(table: pd.DataFrame, digits: int = 4, bold_best: bool = True, missing: str = "—") -> str:
    """A GitHub Markdown table; the highest shown value of every numeric column in bold (all ties;
    none when every shown value of the column is the same); NaN as ``missing``."""
    frame = table.reset_index()
    best = {}
    if bold_best:  # a column whose shown values are all equal has no best
        for col in frame.columns:
            if frame[col].dtype.kind in "fi":
                shown = {round(float(v), digits) for v in frame[col] if math.isfinite(v)}
                if len(shown) > 1:
                    best[col] = max(shown)
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" if frame[c].dtype.kind not in "fi" else "---:" for c in frame.columns) + "|"
    lines = [head, rule]
    for _, r in frame.iterrows():
        cells = []
        for col in frame.columns:
            text = _cell(r[col], digits, missing)
            v = r[col]
            if col in best and isinstance(v, (float, int, np.floating, np.integer)) and math.isfinite(v) \
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
