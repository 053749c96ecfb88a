"""Real-photo benchmark tables: our text runs on a field's test split beside the retrieval baselines on the same
features and the published rows, every row saying its protocol (encoder, image size, frozen or not, search).

Scores are pycocoevalcap's (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D) on the test split against all references of each
image, as ``metrics.json`` stores them (``05_results`` shows the table). Published rows are the papers' own numbers
on the same split and references, with their own encoders, photo sizes and decoding: comparable in kind, not a
controlled replication.

This module imports ``baselines``, ``encoders``, ``folders`` and ``results``.
"""

from __future__ import annotations

import math

import pandas as pd

from capkit import baselines, encoders, folders, results

COLUMNS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")

# Flickr8k test split (1,000 photos, five references): Xu et al. 2015, Table 1 (BLEU in %, METEOR as reported).
PUBLISHED = {
    "flickr8k": [
        {"row": "Show, Attend and Tell, soft attention (Xu et al. 2015)",
         "protocol": "VGG-19 (ImageNet), frozen, full-size photos, 14x14 regions; beam search",
         "BLEU-1": 0.670, "BLEU-2": 0.448, "BLEU-3": 0.299, "BLEU-4": 0.195, "METEOR": 0.1893},
        {"row": "Show, Attend and Tell, hard attention (Xu et al. 2015)",
         "protocol": "VGG-19 (ImageNet), frozen, full-size photos, 14x14 regions; beam search",
         "BLEU-1": 0.670, "BLEU-2": 0.457, "BLEU-3": 0.314, "BLEU-4": 0.213, "METEOR": 0.2030},
    ],
}


def search_label(m: dict) -> str:
    """How a run decoded its test split, from its metrics.json: greedy, beam k or MBR."""
    fp = m.get("fingerprint") or {}
    if m.get("search") == "mbr":
        beam = f" + beam {fp['mbr_beam']}'s caption" if fp.get("mbr_beam") else ""
        extra = f" + {fp['mbr_neighbours']} neighbours' references" if fp.get("mbr_neighbours") else ""
        return f"MBR over {fp.get('mbr_samples')} samples{beam}{extra}"
    beam = m.get("beam_size") or 1
    return "greedy" if beam == 1 else f"beam {beam}"


def protocol(encoder: str, search: str = "") -> str:
    """``"EfficientNet-Lite2 (stages 5+7, 7x7), ImageNet, frozen, 224 px, 49 regions; beam 3"``; an ensemble's
    across encoders (``"a+b"``) lists each encoder's, joined with "&"."""
    if "+" in encoder:
        return " & ".join(protocol(e) for e in encoder.split("+")) + (f"; {search}" if search else "")
    spec = encoders.ENCODERS.get(encoder)
    label = encoders.ENCODER_LABELS.get(encoder, encoder)
    if spec is None:
        return label + (f"; {search}" if search else "")
    return (f"{label}, ImageNet, frozen, {spec.image_size} px, {spec.grid * spec.grid} regions"
            + (f"; {search}" if search else ""))


def real_photo_table(run_dir, dataset: str) -> pd.DataFrame:
    """One row per tested text run of ``run_dir``, per retrieval baseline of its encoders (nearest neighbour, the
    neighbours' consensus), and per published row of ``dataset``: ``protocol`` and the COLUMNS (NaN where a source
    did not report one); our rows best CIDEr-D first."""
    rows = []
    for path in folders.run_folders(run_dir):
        m = folders.read_json(path / "metrics.json")
        if not m or m.get("target") != "text":
            continue
        rows.append({"row": results.row_label(m["encoder"], m["decoder"]) + (" + self-critical"
                     if "scst" in path.name else ""), "run": path.name,
                     "protocol": protocol(m["encoder"], search_label(m)),
                     **{c: m["test"].get(c, math.nan) for c in COLUMNS}})
    rows.sort(key=lambda r: -(r["CIDEr-D"] if r["CIDEr-D"] == r["CIDEr-D"] else -1))
    base = baselines.load_baselines(run_dir)
    for _, b in base[(base.target == "text") & base.baseline.isin(["consensus", "nearest_neighbour"])].iterrows():
        rows.append({"row": b["label"], "run": "", "protocol": protocol(b["encoder"], "retrieval, final pooled vector"),
                     **{c: b.get(f"test.{c}", math.nan) for c in COLUMNS}})
    rows += [{"run": "", **{c: math.nan for c in COLUMNS}, **r} for r in PUBLISHED.get(dataset, [])]
    return pd.DataFrame(rows, columns=["row", "run", "protocol", *COLUMNS]).set_index("row")
