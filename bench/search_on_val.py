"""Choose a trained text run's test search on the validation split only: greedy, beam search of several widths and
minimum Bayes-risk decoding with and without the nearest images' references as evidence and beam 5's caption as a
candidate, each scored with pycocoevalcap (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D) against all references of the
validation images, and timed. Several run folders: their ensemble (capkit.ensemble; on one encoder or several),
searched the same ways.

    python bench/search_on_val.py RUN_FOLDER [RUN_FOLDER ...] [--out runs/search.json] [--limit N]

The (first) run folder's config (data, tokenizer, encoder) is reused as it is; the test split is never read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from capkit import ensemble, inference, metrics, runs, settings, store
from capkit.prepare import prepare

SEARCHES = [  # (label, search, beam_size, mbr_neighbours, mbr_beam)
    ("greedy", "beam", 1, 0, 0),
    ("beam 3", "beam", 3, 0, 0),
    ("beam 5", "beam", 5, 0, 0),
    ("MBR, samples only", "mbr", 1, 0, 0),
    ("MBR + 40 neighbours' references", "mbr", 1, 40, 0),
    ("MBR + 40 neighbours' references + beam 5's caption", "mbr", 1, 40, 5),
]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="a finished text run folder (several: their ensemble)")
    ap.add_argument("--out", default="runs/search_on_val.json")
    ap.add_argument("--limit", type=int, default=None, help="the first N validation images only")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.runs]
    path = paths[0]
    config = settings.TrainConfig.from_dict(json.loads((path / "config.json").read_text()))
    if config.target != "text":
        raise SystemExit(f"{path}: a text run is needed (target {config.target!r})")
    prep = prepare(config, progress=False)
    loaded = [runs.load_run(p) for p in paths]
    if len(loaded) > 1:
        ensemble.check_members(loaded)
    model = loaded[0].model.eval() if len(loaded) == 1 else ensemble.mixture(loaded, prep)
    refs = prep.tokens["val"][: args.limit]
    rows = []
    for label, search, beam, neighbours, mbr_beam in SEARCHES:
        prep.config.mbr_neighbours, prep.config.mbr_beam = neighbours, mbr_beam
        t0 = time.perf_counter()
        with torch.inference_mode():
            hyps = inference.predict(model, prep, "val", beam_size=beam, search=search, limit=args.limit)
        seconds = time.perf_counter() - t0
        scores = metrics.coco_text_scores(refs, [h["tokens"] for h in hyps])
        rows.append({"search": label, **{k: round(v, 4) for k, v in scores.items() if k in metrics.COCO_KEYS},
                     "images_per_second": round(len(hyps) / seconds, 1),
                     "mean_words": round(sum(len(h["tokens"]) for h in hyps) / max(len(hyps), 1), 2)})
        print(json.dumps(rows[-1]), flush=True)
    out = {"run": str(path) if len(paths) == 1 else [str(p) for p in paths], "split": "val", "images": len(refs), "rows": rows}
    store.write_json(Path(args.out), out)
    return out


if __name__ == "__main__":
    main()
