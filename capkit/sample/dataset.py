"""The dataset: every post made from its seeds, written as images, a manifest and a stamp.

`generate()` writes ``images/<key>.jpg``, ``manifest.jsonl`` and a ``.sample.json`` stamp; the same seed gives
byte-identical files. A post's scene, text and picture are drawn from seeds that depend only on (seed,
category, index) (`make_post`), so posts can be made in any order, by any number of processes. Each category's
posts are split 7:1:2 by `data.split_names`, the split rule of every source. `ensure()` generates only when the
stamp is missing or differs; `main()` is ``python -m capkit.sample``.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import random
import re
import signal
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from capkit import store
from capkit.data import split_names
from capkit.sample.grammar import CATEGORIES, sample_scene
from capkit.sample.posts import write_post
from capkit.sample.render import finish_photo, render

VERSION = 1


def generate(out_dir, n_per_category=200, seed=0, size=224, workers=None):
    """Write the dataset into out_dir (images, manifest.jsonl, .sample.json stamp last); returns out_dir."""
    if size < 224:
        raise ValueError(f"size must be at least 224, got {size}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for name in (".sample.json", "manifest.jsonl"):  # a run that dies now leaves nothing that looks complete
        (out / name).unlink(missing_ok=True)
    jobs = [(c, i, seed, size, str(out)) for c in CATEGORIES for i in range(n_per_category)]
    workers = workers or (min(4, os.cpu_count() or 1) if len(jobs) >= 200 else 1)
    if workers > 1:
        # forked workers (no re-import of the caller's script), with the default signal handlers and no cyclic GC
        # (_worker_start): a fork copies the caller's signal handlers and objects, e.g. an in-process JVM's (Okt),
        # whose finalisers must not run in a child. A worker that dies anyway breaks the pool (never a hang): the
        # photos are then rendered here, the same files.
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                     initializer=_worker_start) as pool:
                records = list(pool.map(_work, jobs, chunksize=16))
        except BrokenProcessPool:
            warnings.warn("capkit.sample: a rendering worker died; rendering the photos in this process instead")
            records = [_work(j) for j in jobs]
    else:
        records = [_work(j) for j in jobs]
    splits = {c: split_names(n_per_category, f"capkit-sample:{seed}:{c}:split") for c in CATEGORIES}
    keep = set()
    for r in records:
        r["split"] = splits[r["category"]][int(r["key"].rsplit("-", 1)[1])]
        keep.add(Path(r["image"]).name)
    for old in (out / "images").glob("*.jpg"):  # images of an earlier, larger run
        if old.name not in keep and re.fullmatch(r"[a-z_]+-\d{4,}\.jpg", old.name):
            old.unlink()
    store.write_jsonl(out / "manifest.jsonl", records)
    store.write_text_atomic(out / ".sample.json", json.dumps(_stamp(seed, n_per_category, size)))
    return out


def ensure(out_dir, n_per_category=200, seed=0, size=224):
    """Generate the dataset only when its stamp is missing or differs; returns out_dir."""
    out = Path(out_dir)
    try:
        stamp = json.loads((out / ".sample.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamp = None
    if stamp != _stamp(seed, n_per_category, size) or not (out / "manifest.jsonl").is_file():
        generate(out, n_per_category, seed, size)
    return out


def main(argv=None) -> None:
    """``python -m capkit.sample data/sample [--seed 0] [--n-per-category 200]``: generate when missing."""
    import argparse
    import time

    ap = argparse.ArgumentParser(description="Generate the embedded synthetic dataset (skipped when up to date).")
    ap.add_argument("out_dir", nargs="?", default="data/sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-per-category", type=int, default=200)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    ensure(args.out_dir, args.n_per_category, args.seed, args.size)
    n = sum(1 for _ in open(Path(args.out_dir) / "manifest.jsonl", encoding="utf-8"))
    print(f"{args.out_dir}: {n} posts over {len(CATEGORIES)} categories (seed {args.seed}), "
          f"ready in {time.perf_counter() - t0:.1f} s")


def make_post(category, index, seed, size):
    """Everything about one post, from seeds that depend only on (seed, category, index)."""
    tag = f"capkit-sample:{seed}:{category}:{index}"
    scene = sample_scene(category, random.Random(tag + ":scene"))
    text, hashtags, words = write_post(category, scene, random.Random(tag + ":text"))
    img, objects = render(category, scene, random.Random(tag + ":draw"), size)
    img = finish_photo(img, np.random.default_rng([seed, CATEGORIES.index(category), index]))
    boxes = []
    for label, box in objects:
        x0, y0, x1, y1 = (min(1.0, max(0.0, v / size)) for v in box)
        boxes.append({"label": label, "word": words[label], "box": [round(x0, 4), round(y0, 4), round(x1, 4),
                                                                     round(y1, 4)]})
    scene = dict(scene, objects=[b["label"] for b in boxes])
    key = f"{category}-{index:04d}"
    record = {"key": key, "image": f"images/{key}.jpg", "text": text, "hashtags": hashtags, "split": None,
              "category": category, "boxes": boxes, "scene": scene}
    return record, img


def _worker_start() -> None:
    gc.disable()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def _work(job):
    category, index, seed, size, out_dir = job
    record, img = make_post(category, index, seed, size)
    img.save(Path(out_dir) / record["image"], "JPEG", quality=90)
    return record


def _stamp(seed, n_per_category, size):
    return {"seed": seed, "n_per_category": n_per_category, "size": size, "version": VERSION}
