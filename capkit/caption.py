"""Caption image files from a shell with a trained run.

    python -m capkit.caption RUN_DIR IMAGE_OR_FOLDER... [--beam K] [--hashtags RUN_DIR] [--batch 16]

Each run decodes as its test decoded (``metrics.json``: MBR with the same number of samples, temperature, seed and
evidence, or beam search of its width) unless ``--beam K`` asks for beam search of width K. MBR draws a batch's
samples from one stream seeded with the run's seed, so an image's MBR caption can depend on the batch it is decoded
in (and differ from its test's); beam search's does not.

Prints one JSON line per image on stdout, in the order given (a folder stands for its image files, sorted; its
subfolders are not entered):

- a captioned image: ``image``, ``text`` (readable), ``tokens``, ``score`` (the sum of the caption's token
  log-probabilities, ``<end>`` included when ``finished``), ``finished``; with ``--hashtags``, also ``hashtags``
  (without '#'), ``hashtag_text`` (``#a #b``) and ``hashtag_score``.
- an image that cannot be used: ``image``, ``error`` (the data layer's skip reason: ``missing_image``,
  ``empty_image``, ``truncated_image``, ``corrupt_image``, ``decompression_bomb``, or ``unreadable_image``) and
  ``detail``. The other images are captioned all the same.

A count goes to stderr at the end. The exit status is 0 when at least one image was captioned, 1 when none was,
2 for a usage error (e.g. a folder that holds no run). Images of any size and mode are opened as training opened
them (:func:`capkit.data.open_image`: EXIF rotation, any mode to RGB, transparency on white, decompression bombs
refused), shrunk to the encoder's input at once, and run through the encoder in batches of ``--batch``; with
``--hashtags`` on a run of the same encoder, each batch is encoded once for both runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from capkit import encoders, runs, store
from capkit.images import BadImage, open_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def image_files(paths) -> list[Path]:
    """The files to caption: each folder's image files (by suffix, any case; sorted), other paths as given."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        else:
            out.append(p)  # a missing or unreadable file is reported when it is opened
    return out


def load_input(path: Path, sizes: tuple[int, ...]):
    """``([tensor [3, s, s] for s in sizes], None)`` for a usable image (opened once), ``(None, {"error",
    "detail"})`` otherwise. Only the encoder inputs are kept, never the full-size image."""
    try:
        img = open_image(path, draft=(max(sizes),) * 2)  # a large JPEG decodes at a reduced scale
        return [encoders.image_tensor(img, s) for s in sizes], None
    except BadImage as e:
        return None, {"error": e.reason, "detail": e.detail}
    except Exception as e:  # anything else a broken file may raise: report it, never stop the others
        return None, {"error": "unreadable_image", "detail": f"{type(e).__name__}: {e}"}


def caption_batch(paths: list[Path], run: runs.Run, tag_run: runs.Run | None, beam: int | None,
                  pool: ThreadPoolExecutor) -> list[dict]:
    """One output dict per path, in order: a caption, or an error for an image that cannot be used."""
    shared = tag_run is None or same_encoder(run, tag_run)  # one encoding serves both runs
    sizes = (input_size(run),) if shared else (input_size(run), input_size(tag_run))
    loaded = list(pool.map(lambda p: load_input(p, sizes), paths))
    good = [i for i, (x, _) in enumerate(loaded) if x is not None]
    rows = [{"image": str(p), **(err or {})} for p, (_, err) in zip(paths, loaded)]
    if not good:
        return rows
    feats, pooled = encode(run, [loaded[i][0][0] for i in good])
    for i, cap in zip(good, run.caption_features(feats, beam, pooled=pooled)):
        rows[i].update(text=cap["text"], tokens=cap["tokens"], score=cap["score"], finished=cap["finished"])
    if tag_run is not None:
        tag_feats, tag_pooled = (feats, pooled) if shared else encode(tag_run, [loaded[i][0][1] for i in good])
        for i, cap in zip(good, tag_run.caption_features(tag_feats, beam, pooled=tag_pooled)):
            rows[i].update(hashtags=cap["hashtags"], hashtag_text=cap["text"], hashtag_score=cap["score"])
    return rows


def encode(run: runs.Run, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[n, L, D]`` and final pooled vectors ``[n, P]`` of a batch of encoder inputs, from the run's
    own encoder (one pass gives both)."""
    x = torch.stack(inputs).to(next(run.model.parameters()).device)
    with torch.inference_mode():
        feats, pooled = run.encoder()(x, pooled=True)
        return feats.float(), pooled.float()


def input_size(run: runs.Run) -> int:
    return encoders.ENCODERS[run.config.encoder].image_size


def same_encoder(a: runs.Run, b: runs.Run) -> bool:
    """Whether two runs read the same features (same encoder and weights), so one encoding serves both."""
    return (a.config.encoder, a.config.encoder_weights) == (b.config.encoder, b.config.encoder_weights)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m capkit.caption",
        description="Caption images with a trained capkit run: one JSON line per image on stdout.")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run folder (holding best.pt), e.g. runs/default/efficientnet_lite0_multi-soft-text")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="image files, or folders whose image files are captioned (sorted)")
    parser.add_argument("--beam", type=int, default=None,
                        help="beam search of this width (1: greedy); default: decode as each run's test did "
                             "(MBR or beam search, as its metrics.json says)")
    parser.add_argument("--hashtags", metavar="RUN_DIR", help="a hashtag run: also predict each image's hashtags")
    parser.add_argument("--batch", type=int, default=16, help="images per encoder batch (default 16)")
    parser.add_argument("--device", default="cpu", help="torch device for the models (default cpu)")
    args = parser.parse_args(argv)
    if (args.beam is not None and args.beam < 1) or args.batch < 1:
        parser.error("--beam and --batch must be at least 1")
    return args


def usage_error(message: str):
    print(f"python -m capkit.caption: {message}", file=sys.stderr)
    raise SystemExit(2)


def load(path, device: str, what: str) -> runs.Run:
    """A run folder, or exit 2 with the reason (a usage error, not an image's)."""
    try:
        return runs.load_run(path, device=device)
    except (store.CheckpointError, OSError) as e:
        usage_error(f"{what} {path} is not a run folder ({e})")


def main(argv=None) -> int:
    args = parse_args(argv)
    run = load(args.run_dir, args.device, "RUN_DIR")
    tag_run = None
    if args.hashtags:
        tag_run = load(args.hashtags, args.device, "--hashtags")
        if tag_run.config.target != "hashtag":
            usage_error(f"--hashtags {args.hashtags} is a {tag_run.config.target} run, not a hashtag run")
    paths = image_files(args.images)
    errors = Counter()
    with ThreadPoolExecutor(2) as pool:  # decode the files of a batch side by side
        for start in range(0, len(paths), args.batch):
            for row in caption_batch(paths[start:start + args.batch], run, tag_run, args.beam, pool):
                if "error" in row:
                    errors[row["error"]] += 1
                print(json.dumps(row, ensure_ascii=False))
            sys.stdout.flush()
    done = len(paths) - sum(errors.values())
    skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(errors.items()))
    print(f"captioned {done} of {len(paths)} images" + (f"; skipped {skipped}" if skipped else ""), file=sys.stderr)
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
