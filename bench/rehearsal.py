"""`make rehearsal`: docs/data.md's "Settings for real photos" run end to end on a stand-in of a real captioned set.

    python bench/rehearsal.py [--out runs/rehearsal] [--n-per-category 264] [--size 480] [--refs 5] [--seed 1]

A real set of that shape (~2,900 photos, five human captions each, `dataset=manifest`, `tokenizer=whitespace`) is
what the settings are for. This builds a set of the same shape from the embedded dataset's
generator and runs the recommended command on it, so the time the recipe takes on this machine is measured, not
estimated, and every lever it relies on (several references per image, CIDEr-D selection against all of them,
MBR decoding, retrieval baselines by the final pooled vector) runs on a manifest with `texts`:

1. ``capkit.sample`` paints 11 x ``n_per_category`` photos at ``size`` px (seed 1, not the embedded data's 0);
2. each photo gets ``refs`` texts: its post and ``refs - 1`` fresh draws of the same writer from the same scene
   (``sample.oracle_draws``), written to ``<out>/data/manifest.jsonl`` with the photos' absolute paths;
3. ``03_train`` runs through papermill with the README's parameters, timed from start to end (feature extraction,
   training, test decoding);
4. the baselines (``baseline_rows.baselines``) are scored on the same test split, and everything is written to
   ``<out>/rehearsal.json``.

The texts are the writer's Korean, split on spaces: a stand-in for the shape and the cost, not for real captions,
whose scores differ. ``tests/test_rehearsal.py`` tests the manifest it writes; the whole script runs ~15 min.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from capkit import baseline_rows, metrics, store, train  # noqa: E402
from capkit.prepare import prepare  # noqa: E402
from capkit.sample import dataset, oracle  # noqa: E402

# docs/data.md, "Settings for real photos": the command for a manifest of captioned photos
RECOMMENDED = {"tokenizer": "whitespace", "min_freq": 3, "encoder": "efficientnet_lite2_multi", "decoder": "soft",
               "target": "text", "epochs": 8, "lambda_att": 0.25}


def write_manifest(gen_dir: Path, out_dir: Path, refs: int, seed: int) -> Path:
    """``gen_dir``'s posts as a manifest with ``refs`` texts each (the post, then fresh draws from its scene)."""
    rows = [json.loads(line) for line in open(gen_dir / "manifest.jsonl", encoding="utf-8") if line.strip()]
    draws = oracle.oracle_draws(rows, seed=seed, n=refs - 1) if refs > 1 else {}
    lines = [{"key": r["key"], "image": str((gen_dir / r["image"]).resolve()),
              "texts": [r["text"]] + [d["text"] for d in draws.get(r["key"], [])], "hashtags": r["hashtags"],
              "split": r["split"], "category": r["category"]} for r in rows]
    out_dir.mkdir(parents=True, exist_ok=True)
    store.write_jsonl(out_dir / "manifest.jsonl", lines)
    return out_dir


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/rehearsal")
    ap.add_argument("--n-per-category", type=int, default=264)
    ap.add_argument("--size", type=int, default=480)
    ap.add_argument("--refs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    params, size = dict(RECOMMENDED), args.size
    t0 = time.perf_counter()
    dataset.ensure(out / "photos", args.n_per_category, args.seed, size)
    data_dir = write_manifest(out / "photos", out / "data", args.refs, args.seed)
    made = time.perf_counter() - t0
    run_name = "rehearsal-" + "-".join(str(params[k]) for k in ("encoder", "decoder", "target"))
    folder = out / "runs" / run_name
    folder.mkdir(parents=True, exist_ok=True)
    params.update(dataset="manifest", data_dir=str(data_dir), run_dir=str(out / "runs"), run_name=run_name,
                  cache_dir=str(out / "cache"))
    cmd = [sys.executable, "-m", "papermill", "--cwd", str(ROOT), "--log-level", "WARNING", "--no-progress-bar",
           str(ROOT / "notebooks" / "03_train.ipynb"), str(folder / "03_train.ipynb")]
    for k, v in params.items():
        cmd += ["-p", k, str(v)]
    t1 = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t1
    run = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    config = train.TrainConfig.from_dict(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    prep = prepare(config, progress=False)
    with metrics.meteor_scorer() as jar:
        base = baseline_rows.baselines(prep, meteor=jar)
    report = {
        "params": params, "photos": sum(len(v) for v in prep.records.values()), "size": size, "refs": args.refs,
        "made_seconds": made, "notebook_seconds": seconds, "train_seconds": run["train_seconds"],
        "best_epoch": run["best_epoch"], "epochs_run": run["epochs_run"], "test": run["test"],
        "decode_images_per_second": run["decode_images_per_second"],
        "epochs": [{k: e[k] for k in ("epoch", "val_cider", "train_seconds", "seconds")}
                   for e in json.loads((folder / "history.json").read_text(encoding="utf-8"))],
        "baselines": {k: {"label": b["label"], "test": b["test"], "k": b.get("k")} for k, b in base.items()},
    }
    store.write_json(out / "rehearsal.json", report)
    cider = run["test"]["CIDEr-D"]
    print(f"{report['photos']} photos x {args.refs} texts at {size} px; 03_train {seconds:.0f} s "
          f"(training {run['train_seconds']:.0f} s, best epoch {run['best_epoch']} of {run['epochs_run']})")
    print(f"  model CIDEr-D {cider:.3f}")
    for b in report["baselines"].values():
        ratio = cider / b["test"]["CIDEr-D"] if b["test"]["CIDEr-D"] else float("nan")
        print(f"  {b['label']}: {b['test']['CIDEr-D']:.3f} (model {ratio:.2f}x)")
    return report


if __name__ == "__main__":
    main()
