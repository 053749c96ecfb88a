"""A first look in a few minutes: ``make demo`` (``python -m capkit.demo``).

Trains two models on the embedded dataset with the ``demo`` preset (:mod:`capkit.settings`): a Show, Attend and
Tell text model (Kiwi's tokens: no Java needed) and a set-prediction hashtag model, both on EfficientNet-Lite0's 7x7
grid, for a few epochs. Then it
captions a few test photos with both, writes their texts and hashtags to ``captions.jsonl``, draws the first
photo's text word by word over its attention maps, and prints where everything is and what to run next.
Everything goes to ``--run-dir`` (default ``runs/demo``); a second call reuses the finished runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from capkit import images
from capkit import runs, settings, store, train, viz

DATA_DIR = "data/sample"


def train_run(run_dir: Path, target: str, decoder: str, data_dir: str, seed: int, smoke: bool = False) -> dict:
    config = settings.preset("demo", data_dir=data_dir, run_dir=str(run_dir), target=target, decoder=decoder,
                             seed=seed, cache_dir=str(run_dir / "cache"), smoke=smoke or None,
                             epochs=1 if smoke else None)
    t0 = time.perf_counter()
    result = train.train(config, progress=False)
    print(f"trained {config.run_name} ({target}) in {time.perf_counter() - t0:.0f} s: "
          + ", ".join(f"{k} {v:.3f}" for k, v in result["test"].items() if k in ("CIDEr-D", "BLEU-4", "f1")))
    return result


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m capkit.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", default="runs/demo")
    ap.add_argument("--data-dir", default=DATA_DIR, help="the embedded dataset (generated here when missing)")
    ap.add_argument("--images", type=int, default=4, help="test photos to caption")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny models trained for one epoch (tests)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    out = store.project_path(args.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = store.project_path(args.data_dir)
    if not (data_dir / "manifest.jsonl").exists():
        from capkit import sample

        print(f"generating the embedded dataset into {data_dir} ...", flush=True)
        sample.generate(data_dir)
    text_result = train_run(out, "text", "soft", str(data_dir), args.seed, args.smoke)
    tag_result = train_run(out, "hashtag", "multilabel", str(data_dir), args.seed, args.smoke)

    text_run = runs.load_run(out / text_result["run"])
    tag_run = runs.load_run(out / tag_result["run"])
    photos = [line["image"] for line in text_run.predictions()[: args.images]]
    texts = text_run.caption_many(photos)  # (decoded as its test was)
    tags = tag_run.caption_many(photos)
    lines = [{"image": p, "text": c["text"], "hashtags": t.get("hashtags", t["tokens"])}
             for p, c, t in zip(photos, texts, tags)]
    store.write_jsonl(out / "captions.jsonl", lines)
    for line in lines:
        print(f"\n{Path(line['image']).name}\n  text:     {line['text']}\n  hashtags: "
              + " ".join("#" + h for h in line["hashtags"]))
    fig = viz.caption_figure(images.open_image(photos[0]), texts[0], hashtags=lines[0]["hashtags"])
    figure = viz.save(fig, out / "figures", "demo_attention.png")
    print(f"\nmake demo finished in {time.perf_counter() - started:.0f} s")
    print(f"  captions and hashtags: {out / 'captions.jsonl'}")
    print(f"  word-by-word attention: {figure}")
    print(f"  the two runs (config, checkpoints, test predictions, scores): {out / text_result['run']}, "
          f"{out / tag_result['run']}")
    print("next: `make lab` and open notebooks/03_train.ipynb, or `make run` for the study's whole grid "
          "(README, 'Quick start')")
    return figure


if __name__ == "__main__":
    main()
