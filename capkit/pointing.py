"""The pointing game: does a word's attention peak on the object the word names?

For a generated word that names an object of the photo (``object_mentions``: the word's surface among the object's
words), the peak of the word's attention map (``attention_peak``: the centre of the most attended cell of the
``grid x grid`` map) is a hit when it falls inside one of that object's boxes (``in_boxes``; boxes ``[x0, y0, x1,
y1]`` in 0..1 of the image). ``pointing_game`` sums hits over words, beside the chance of a hit by a uniformly
random point (``boxes_area``: the share of the image the boxes cover). ``grounding`` plays it for a trained run
(:class:`capkit.runs.Run`) on records with object boxes (the embedded dataset); ``stored_grounding`` keeps the result
in the run's ``metrics.json``.

This module imports no other capkit module (a run is handed in).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # (a run is only handed in: this module imports none)
    from capkit import runs


def attention_peak(alpha, grid: int) -> tuple[float, float]:
    """The centre of the cell where a ``grid x grid`` attention map (flat, row-major) peaks, as (x, y) in 0..1.

    Cell ``i`` is row ``i // grid``, column ``i % grid``; its centre is ``((col + 0.5) / grid, (row + 0.5) / grid)``.
    Ties go to the first cell in row-major order.
    """
    a = np.asarray(alpha, dtype=np.float64).reshape(-1)
    if a.size != grid * grid:
        raise ValueError(f"an attention map of {a.size} values is not a {grid}x{grid} grid")
    row, col = divmod(int(np.argmax(a)), grid)
    return (col + 0.5) / grid, (row + 0.5) / grid


def in_boxes(point, boxes) -> bool:
    """Whether (x, y) lies inside (edges included) any box ``[x0, y0, x1, y1]``."""
    x, y = point
    return any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in boxes)


def boxes_area(boxes) -> float:
    """Area of the union of boxes ``[x0, y0, x1, y1]`` clipped to the unit square (overlaps counted once)."""
    clipped = [(max(0.0, x0), max(0.0, y0), min(1.0, x1), min(1.0, y1)) for x0, y0, x1, y1 in boxes]
    clipped = [b for b in clipped if b[2] > b[0] and b[3] > b[1]]
    xs = sorted({v for b in clipped for v in (b[0], b[2])})
    area = 0.0
    for xa, xb in zip(xs, xs[1:]):  # vertical strips between consecutive x edges: union of y spans in each
        spans = sorted((b[1], b[3]) for b in clipped if b[0] <= xa and b[2] >= xb)
        covered, top = 0.0, -1.0
        for y0, y1 in spans:
            if y1 > top:
                covered += y1 - max(y0, top)
                top = y1
        area += (xb - xa) * covered
    return area


def pointing_game(alphas, boxes, grid: int = 14) -> dict:
    """The pointing game over words that name a drawn object.

    ``alphas[i]``: the attention map behind word ``i`` (``grid * grid`` values, row-major over the image);
    ``boxes[i]``: the boxes ``[x0, y0, x1, y1]`` (0..1) of the object that word ``i`` names. A word is a hit when
    its attention peak (:func:`attention_peak`) lies inside one of its boxes. Chance is what a peak placed
    uniformly at random would score: the boxes' share of the image, averaged over the same words.
    Returns ``n`` (words), ``hits``, ``accuracy`` = hits / n and ``chance`` (NaN when n = 0), and ``hit`` per word.
    """
    if len(alphas) != len(boxes):
        raise ValueError(f"{len(alphas)} attention maps but {len(boxes)} box lists")
    hit = [in_boxes(attention_peak(a, grid), b) for a, b in zip(alphas, boxes)]
    areas = [boxes_area(b) for b in boxes]
    n = len(hit)
    return {"n": n, "hits": int(sum(hit)), "accuracy": sum(hit) / n if n else float("nan"),
            "chance": float(np.mean(areas)) if n else float("nan"), "hit": hit}


def object_mentions(words, boxes, object_words: dict) -> list[tuple[int, str, list]]:
    """Which generated words name an object drawn in the image.

    ``words``: the surface forms of the generated words (``강아지``, not ``강아지/Noun``); ``boxes``: the image's
    objects ``[{"label", "box"}, ...]``; ``object_words[label]``: the words that name ``label``. Returns
    ``(word index, label, [boxes of that label])`` for every word that names a label boxed in this image.
    """
    by_label: dict[str, list] = {}
    for b in boxes:
        by_label.setdefault(b["label"], []).append(list(b["box"]))
    out = []
    for i, w in enumerate(words):
        for label, label_boxes in by_label.items():
            if w in object_words.get(label, ()):
                out.append((i, label, label_boxes))
                break
    return out


# ----------------------------------------------------------------------------- the pointing game on a run


def grounding(run: runs.Run, records, object_words: dict, beam_size: int = 3, batch_size: int = 32,
              cache_dir=None) -> tuple[dict, list]:
    """The pointing game for one text run on records with object boxes (the embedded dataset).

    Every record's image is captioned afresh (beam search, the attention maps kept); each generated word whose
    surface form is one of ``object_words[label]`` for a label boxed in that image is scored by
    :func:`capkit.pointing_game`. Returns the summary (for ``metrics.json``) and one row per word.
    """
    records = [r for r in records if r.boxes]
    captions = run.caption_many([r.image for r in records], beam_size=beam_size, batch_size=batch_size,
                                cache_dir=cache_dir)
    rows, alphas, boxes = [], [], []
    for rec, cap in zip(records, captions):
        for i, label, label_boxes in object_mentions(cap["words"], rec.boxes, object_words):
            x, y = attention_peak(cap["alphas"][i], cap["grid"])
            rows.append({"run": run.name, "key": rec.key, "word": cap["words"][i], "position": i, "label": label,
                         "peak_x": round(x, 4), "peak_y": round(y, 4), "hit": in_boxes((x, y), label_boxes),
                         "chance": boxes_area(label_boxes)})
            alphas.append(cap["alphas"][i])
            boxes.append(label_boxes)
    grid = captions[0]["grid"] if captions else 14
    game = pointing_game(alphas, boxes, grid)
    per_label = {}
    for label in sorted({r["label"] for r in rows}):
        mine = [r for r in rows if r["label"] == label]
        per_label[label] = {"n": len(mine), "accuracy": sum(r["hit"] for r in mine) / len(mine),
                            "chance": float(np.mean([r["chance"] for r in mine]))}
    summary = {"n_words": game["n"], "hits": game["hits"], "accuracy": game["accuracy"], "chance": game["chance"],
               "n_images": len(records), "images_with_mentions": len({r["key"] for r in rows}),
               "beam_size": beam_size, "grid": grid, "per_label": per_label,
               "method": "pointing game: argmax cell centre of the word's attention map inside a box of the object "
                         "it names; chance = the boxes' area share, averaged over the same words"}
    return summary, rows


def stored_grounding(run: runs.Run, records, object_words: dict, beam_size: int = 3, cache_dir=None) -> tuple[dict, list]:
    """:func:`grounding`, written into the run's ``metrics.json`` (``grounding`` and its word rows,
    ``grounding_words``) with what it was measured on: the run's test fingerprint (its weights), the beam size and
    the records. A rerun on the same run and records reads it back instead of decoding again."""
    keys = hashlib.sha256("\n".join(sorted(r.key for r in records)).encode()).hexdigest()[:16]
    measured_on = {"fingerprint": run.metrics.get("fingerprint"), "beam_size": beam_size, "records": keys}
    stored = run.metrics.get("grounding") or {}
    if measured_on["fingerprint"] and stored.get("measured_on") == measured_on and "grounding_words" in run.metrics:
        return stored, run.metrics["grounding_words"]
    summary, rows = grounding(run, records, object_words, beam_size=beam_size, cache_dir=cache_dir)
    summary = {**summary, "measured_on": measured_on}
    run.update_metrics(grounding=summary, grounding_words=rows)
    return summary, rows
