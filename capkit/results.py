"""Results: collect the run folders of a ``run_dir`` into the study's two tables, score the
baselines with the same metric code, recompute a run's scores from its predictions, and write
the tables as CSV and Markdown.

The study's layout (``../shared/seed/README.md``): one row per encoder x decoder, in the order
baseline (first encoder + soft attention), stronger encoder + soft, first encoder + Look-Back,
stronger encoder + Look-Back; text columns BLEU-1 / ROUGE-L / METEOR with the study's own
definitions (``metrics.study_text_scores``), hashtag columns F1 / Precision / Recall (micro, over
sets). Our grid uses EfficientNet-Lite0 / Lite2 where the study used ResNet-101 / ResNeXt-101
WSL; a run that was not trained stays in the table as an empty ("missing") row.

Baselines and the oracle rows are :mod:`capkit.baseline_rows`' (their files: :mod:`capkit.baselines`); the tables
read them (``baselines.load_baselines``) beside the runs.

This module imports ``baseline_rows`` (the rows' labels), ``encoders`` and ``models`` (the encoders' and decoders'
labels), ``folders`` (the runs' files), ``metrics``, ``store`` and ``targets``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from capkit import metrics, models, store, targets
from capkit.baseline_rows import BASELINE_LABELS, ORACLE_BEST_PREFIX, ORACLE_LABEL, ORACLE_PREFIX
from capkit.encoders import ENCODER_LABELS
from capkit.folders import read_json, read_predictions, run_folders

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

# ----------------------------------------------------------------------------- reading run folders


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
    # (an ensemble across encoders, "a+b", is an extra row, not a grid row)
    names = list(dict.fromkeys([*defaults, *[f for f in found if isinstance(f, str) and "+" not in f]]))
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
    if "+" in decoder:  # (each decoder once: an ensemble of the 2x2 grid is "of soft & Look-Back")
        return "ensemble of " + " & ".join(decoder_label(d) for d in dict.fromkeys(decoder.split("+")))
    try:
        spec = models.decoder_spec(decoder)
    except ValueError:
        spec = None
    return spec.label if spec else decoder


def encoder_label(encoder: str) -> str:
    """``"EfficientNet-Lite2 (stages 5+7, 7x7)"``; an ensemble's across encoders (``"a+b"``) joins theirs with "&"."""
    return " & ".join(ENCODER_LABELS.get(e, e) for e in encoder.split("+"))


def row_label(encoder: str, decoder: str, baseline: bool = False) -> str:
    """``"EfficientNet-Lite0 + soft (baseline)"``."""
    label = f"{encoder_label(encoder)} + {decoder_label(decoder)}"
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
    root = store.project_path(run_dir)
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
    root = store.project_path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    csv, md = root / f"{name}.csv", root / f"{name}.md"
    table.to_csv(csv, float_format=f"%.{digits + 2}g")
    md.write_text(markdown_table(table, digits) + (f"\n{note.strip()}\n" if note else ""), encoding="utf-8")
    return csv, md
