"""`make bench`: capkit against the study's algorithm (bench/reference.py), side by side on one machine.

    python bench/run.py [--data-dir data/sample] [--out runs/bench.json] [--smoke]

Measures, at the study's sizes (encoder_dim 1024 on a 14x14 grid, attention 512, decoder 512, embedding 300,
batch 32, texts up to 30 tokens, a 10,000-word vocabulary unless noted):

1. matmul: the machine's float32 matrix-multiply rate (the best of several 2048^3 products; 8192^3 on CUDA), the
   yardstick for 5;
2. train step: one decoder training step (loss, backward, clipping, Adam) on the same batch with the same weights,
   capkit vs the reference; the two losses are also compared without dropout;
3. decoding: images per second, capkit batched greedy and beam 3 against the reference's one-image-at-a-time
   greedy; capkit's greedy captions are checked to be the reference's, token for token;
4. epoch: one training epoch over the embedded dataset's training texts *including the encoder*: capkit reads its
   feature cache (the frozen CNN ran once, timed separately) while the reference re-runs the CNN on every batch.
   The CNN is the study's: ResNet-101 cut after layer3 at 256 px, 1024 x 14 x 14. Its weights are random here (the
   real ones are a download away; the arithmetic is the same), and the reference uses capkit's own encoder module
   (channels-last), so its CNN time is, if anything, flattered;
5. GFLOP/s: the matmul FLOPs of capkit's training step (counted by torch.utils.flop_counter, forward + backward)
   per second of step time, against 1;
6. tokenization: Okt sentences per second over the embedded texts, cold (empty cache, JVM warm) and cached
   (skipped where no Java is found; ``--token-cache data/cache/tokens`` then supplies the texts' tokens), and the
   same for the Java-free ``kiwi`` tokenizer (kiwipiepy; its model loaded and warm), so the two compare cold.

Targets (on a 2-core machine): step >= 4x, epoch >= 10x, greedy >= 20x images/s, step >= 50% of matmul.
Prints a table and writes JSON. ``--smoke`` shrinks every size so the whole script runs in seconds (the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference  # noqa: E402

from capkit import data as D  # noqa: E402
from capkit import build, decode, encoders, features, inference, loops, models, text, train, vocab_report  # noqa: E402
from capkit.prepare import batches, resolve_device  # noqa: E402

STUDY = dict(encoder_dim=1024, grid=14, embed_dim=300, attention_dim=512, decoder_dim=512, batch=32, max_tokens=30,
             vocab=10_000)
SMOKE = dict(encoder_dim=32, grid=4, embed_dim=16, attention_dim=16, decoder_dim=24, batch=4, max_tokens=8, vocab=60)
TARGETS = {"train_step_speedup": 4.0, "epoch_speedup": 10.0, "greedy_speedup": 20.0, "matmul_fraction": 0.5}


def timed(fn, repeat: int, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeat`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": "cpu"}
    if torch.cuda.is_available():
        info.update(device="cuda", gpu=torch.cuda.get_device_name(0))
    return info


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- 1. matmul


def bench_matmul(device, n: int = 2048, repeat: int = 5) -> dict:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)

    def run():
        torch.mm(a, b, out=out)
        sync(device)

    for _ in range(2):
        run()
    best = min(timed(run, 1, 0) for _ in range(repeat))
    return {"n": n, "dtype": "float32", "seconds": best, "gflops": 2 * n**3 / best / 1e9}


# ----------------------------------------------------------------------------- 2. training step


def lengths_like_data(token_lengths: list[int], batch: int, max_tokens: int, gen) -> torch.Tensor:
    """A batch of caption lengths (<start> and <end> included) drawn from the data's token counts, longest first
    (as prepare.batches orders a batch)."""
    pool = torch.tensor([min(n, max_tokens) + 2 for n in token_lengths if n > 0] or [max_tokens + 2])
    return pool[torch.randint(len(pool), (batch,), generator=gen)].sort(descending=True).values


def make_batch(size: dict, lengths: torch.Tensor, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), int(lengths.max())
    caps = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        caps[b, 0], caps[b, n - 1] = text.START_ID, text.END_ID
        caps[b, 1:n - 1] = torch.randint(4, size["vocab"], (n - 2,), generator=g)
    feats = torch.randn(B, size["grid"] ** 2, size["encoder_dim"], generator=g)
    return feats.to(device), caps.to(device), lengths.to(device)


def new_decoder(size: dict, vocab: int, decoder: str = "soft", dropout: float = 0.5, seed: int = 0):
    """A decoder of the registry (``soft``, ``lookback``: the two the study's reference implements) at ``size``."""
    torch.manual_seed(seed)
    return models.decoder_spec(decoder).build(vocab_size=vocab, encoder_dim=size["encoder_dim"],
                                              embed_dim=size["embed_dim"], attention_dim=size["attention_dim"],
                                              decoder_dim=size["decoder_dim"], dropout=dropout)


def step_flops(model, feats, caps, lengths) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = model.loss(feats, caps, lengths)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench_train_step(size: dict, token_lengths: list[int], device, repeat: int, matmul_gflops: float) -> dict:
    gen = torch.Generator().manual_seed(0)
    lengths = lengths_like_data(token_lengths, size["batch"], size["max_tokens"], gen)
    feats, caps, lengths = make_batch(size, lengths, device)
    out = {"batch": size["batch"], "steps": int(lengths.max()) - 1, "tokens": int((lengths - 1).sum()),
           "vocab": size["vocab"]}
    for attention in ("soft", "lookback"):
        fast = new_decoder(size, size["vocab"], attention).to(device).train()
        ref = reference.StudyDecoder.like(fast).train()
        # the same loss without dropout (dropout masks differ between the two implementations)
        fast.eval(), ref.eval()
        with torch.no_grad():
            same = abs(float(fast.loss(feats, caps, lengths)[0]) - float(ref.loss(feats, caps, lengths)))
        fast.train(), ref.train()
        opt_fast = loops.adam(fast.parameters(), lr=5e-4)
        opt_ref = torch.optim.Adam(ref.parameters(), lr=5e-4)

        def run_fast():
            loops.train_step(fast, opt_fast, feats, caps, lengths)
            sync(device)

        def run_ref():
            reference.train_step(ref, opt_ref, feats, caps, lengths)
            sync(device)

        t_fast = timed(run_fast, repeat)
        t_ref = timed(run_ref, max(1, repeat // 2))
        flops = step_flops(fast, feats, caps, lengths)
        out[attention] = {"capkit_s": t_fast, "reference_s": t_ref, "speedup": t_ref / t_fast,
                          "loss_abs_diff": same, "flops": flops, "gflops": flops / t_fast / 1e9,
                          "matmul_fraction": flops / t_fast / 1e9 / matmul_gflops}
    return out


# ----------------------------------------------------------------------------- 3. decoding


def calibrate_end(model, feats, max_len: int, mean_words: float) -> float:
    """Set the <end> logit's bias so that greedy captions of ``feats`` average about ``mean_words`` words.

    An untrained decoder almost never (or always) says <end>, so every caption would run to the cap (or stop at
    once); a trained one stops after about as many words as the data's texts have, which changes how much work
    batched decoding saves. Bisection on the bias; returns the mean length reached.
    """
    lo, hi, got = -20.0, 20.0, 0.0
    base = float(model.L_o.bias[text.END_ID].detach())
    for _ in range(14):
        mid = (lo + hi) / 2
        with torch.no_grad():
            model.L_o.bias[text.END_ID] = base + mid
        got = statistics.mean(len(h.tokens) for h in decode.greedy(model, feats, text.START_ID, text.END_ID, max_len))
        lo, hi = (mid, hi) if got > mean_words else (lo, mid)
    return got


def bench_decoding(size: dict, device, n_images: int, n_reference: int, max_len: int, mean_words: float) -> dict:
    model = new_decoder(size, size["vocab"]).to(device).eval()
    with torch.no_grad():  # untrained: make the image matter to the words (as training does)
        model.L_o.weight.mul_(30)
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(n_images, size["grid"] ** 2, size["encoder_dim"], generator=g).to(device)
    calibrated = calibrate_end(model, feats[:64], max_len, mean_words)
    ref = reference.StudyDecoder.like(model).eval()
    batch = inference.decode_batch(device)  # capkit's default: 64 images at once on the CPU, 256 on CUDA

    def capkit_decode(beam):
        hyps = []
        for i in range(0, n_images, batch):
            f = feats[i:i + batch]
            if beam == 1:
                hyps += decode.greedy(model, f, text.START_ID, text.END_ID, max_len=max_len)
            else:
                hyps += decode.beam_search(model, f, text.START_ID, text.END_ID, beam_size=beam, max_len=max_len)
        sync(device)
        return hyps

    out = {"images": n_images, "reference_images": n_reference, "max_len": max_len, "batch": batch,
           "target_mean_words": mean_words, "calibrated_mean_words": calibrated}
    for beam in (1, 3):
        capkit_decode(beam)  # warm-up
        t0 = time.perf_counter()
        hyps = capkit_decode(beam)
        dt = time.perf_counter() - t0
        out[f"capkit_beam{beam}_images_per_s"] = n_images / dt
        out[f"capkit_beam{beam}_mean_words"] = statistics.mean(len(h.tokens) for h in hyps)
        if beam == 1:
            greedy_tokens = [h.tokens for h in hyps]
    ref.greedy_one(feats[:1], text.START_ID, text.END_ID, max_len)  # warm-up
    t0 = time.perf_counter()
    ref_tokens = [ref.greedy_one(feats[i:i + 1], text.START_ID, text.END_ID, max_len) for i in range(n_reference)]
    sync(device)
    out["reference_greedy_images_per_s"] = n_reference / (time.perf_counter() - t0)
    out["greedy_speedup"] = out["capkit_beam1_images_per_s"] / out["reference_greedy_images_per_s"]
    out["beam3_speedup"] = out["capkit_beam3_images_per_s"] / out["reference_greedy_images_per_s"]
    out["same_captions"] = sum(a == b for a, b in zip(greedy_tokens, ref_tokens)) / n_reference
    return out


# ----------------------------------------------------------------------------- 4. epoch with the encoder


def bench_epoch(records, token_lists, size: dict, device, cache_dir: Path, encoder: str, image_limit: int | None,
                smoke: bool) -> dict:
    """One epoch over the training texts: capkit from its feature cache vs the reference re-running the CNN."""
    pairs_rec = [(r, toks) for r, toks in zip(records, token_lists) if toks]
    if image_limit:
        pairs_rec = pairs_rec[:image_limit]
    vocab = text.Vocab.build([t for _, t in pairs_rec], min_freq=1 if smoke else 5)
    pairs = [(r.image, vocab.encode(t, max_len=size["max_tokens"])) for r, t in pairs_rec]
    images = [r.image for r, _ in pairs_rec]
    spec = encoders.ENCODERS[encoder]
    enc = encoders.Encoder(encoder, weights="random").to(device).eval()
    config = train.TrainConfig(encoder=encoder, embed_dim=size["embed_dim"], attention_dim=size["attention_dim"],
                               decoder_dim=size["decoder_dim"], batch_size=size["batch"], smoke=False,
                               encoder_weights="random", device=str(device))
    model = build.build_model(config, len(vocab)).to(device)
    ref = reference.StudyDecoder.like(model)
    out = {"encoder": encoder, "weights": "random (timing only)", "images": len(images), "pairs": len(pairs),
           "vocab": len(vocab), "batch": size["batch"], "feature_shape": [spec.grid ** 2, spec.dim]}

    t0 = time.perf_counter()  # capkit: the frozen CNN once, into the float16 cache (paid once per encoder)
    store = features.extract_features(encoder, images, cache_dir, weights="random", device=str(device),
                                      batch_size=size["batch"], progress=False, encoder=enc)
    out["capkit_feature_extraction_s"] = time.perf_counter() - t0
    store.to_memory()  # as train.prepare does
    optimizer = loops.adam(model.parameters(), lr=config.lr)
    t0 = time.perf_counter()
    stats = loops.train_epoch(model, optimizer, store.__getitem__, pairs, config, epoch=1, device=device,
                              progress=False)
    sync(device)
    out["capkit_epoch_s"] = time.perf_counter() - t0
    out["capkit_train_loss"] = stats["loss"]

    # reference: images decoded and the CNN run again for every batch, then the study's training step
    ref_opt = torch.optim.Adam(ref.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(1)
    t0 = time.perf_counter()
    cnn_s = 0.0
    with ThreadPoolExecutor(2) as pool:
        for imgs, caps, lengths in batches(pairs, size["batch"], gen):
            c0 = time.perf_counter()
            x = torch.stack(list(pool.map(lambda p: encoders.image_tensor(p, spec.image_size), imgs))).to(device)
            with torch.no_grad():
                feats = enc(x).float()
            cnn_s += time.perf_counter() - c0
            reference.train_step(ref, ref_opt, feats, caps.to(device), lengths.to(device))
    sync(device)
    out["reference_epoch_s"] = time.perf_counter() - t0
    out["reference_images_and_cnn_s"] = cnn_s
    out["epoch_speedup"] = out["reference_epoch_s"] / out["capkit_epoch_s"]
    n = 40  # the study's epochs: capkit pays the extraction once
    out["study_40_epochs_speedup"] = n * out["reference_epoch_s"] / (out["capkit_feature_extraction_s"]
                                                                       + n * out["capkit_epoch_s"])
    return out


# ----------------------------------------------------------------------------- 6. tokenization


def bench_tokenize(texts: list[str], tokenizer: str = "okt") -> dict:
    """Sentences (and tokens) per second of `tokenizer` on `texts`, cold (an empty cache; the tokenizer started
    and warmed up first, untimed: see vocab_report.cache_speedup) and read back from the cache."""
    try:
        table = vocab_report.cache_speedup(texts, tokenizer)
    except text.TokenizerUnavailable as err:  # no Java (Okt) or no kiwipiepy here: the table says so
        return {"tokenizer": tokenizer, "sentences": len(texts), "skipped": str(err)}
    out = {"tokenizer": tokenizer, "sentences": len(texts)}
    for row in ("cold", "cached"):
        s = table.loc[row]
        out[f"{row}_sentences_per_s"] = s["texts"] / s["seconds"]
        out[f"{row}_tokens_per_s"] = float(s["tokens_per_second"])
    out["cache_speedup"] = out["cached_sentences_per_s"] / out["cold_sentences_per_s"]
    return out


# ----------------------------------------------------------------------------- report


def rows(r: dict) -> list[tuple[str, str, str, str, str]]:
    """(measure, capkit, reference, ratio, target) rows of the printed table."""
    m = r["matmul"]
    out = [(f"matmul {m['dtype']} {m['n']}^3 (the yardstick)", f"{m['gflops']:.1f} GFLOP/s", "", "", "")]
    for att in ("soft", "lookback"):
        s = r["train_step"][att]
        out.append((f"train step ({att}), s", f"{s['capkit_s']:.3f}", f"{s['reference_s']:.3f}",
                    f"{s['speedup']:.1f}x", f">= {TARGETS['train_step_speedup']:.0f}x"))
        out.append((f"train step ({att}), GFLOP/s", f"{s['gflops']:.1f}", "", f"{s['matmul_fraction']:.0%} of matmul",
                    f">= {TARGETS['matmul_fraction']:.0%}"))
    e = r["epoch"]
    out.append(("epoch incl. encoder, s", f"{e['capkit_epoch_s']:.1f}", f"{e['reference_epoch_s']:.1f}",
                f"{e['epoch_speedup']:.1f}x", f">= {TARGETS['epoch_speedup']:.0f}x"))
    out.append(("  capkit: CNN once into the cache, s", f"{e['capkit_feature_extraction_s']:.1f}", "", "", ""))
    out.append(("  40 epochs incl. that extraction", "", "", f"{e['study_40_epochs_speedup']:.1f}x", ""))
    d = r["decoding"]
    out.append(("greedy decoding, images/s", f"{d['capkit_beam1_images_per_s']:.1f}",
                f"{d['reference_greedy_images_per_s']:.1f}", f"{d['greedy_speedup']:.1f}x",
                f">= {TARGETS['greedy_speedup']:.0f}x"))
    out.append(("beam 3 decoding, images/s", f"{d['capkit_beam3_images_per_s']:.1f}", "(greedy)",
                f"{d['beam3_speedup']:.1f}x", ""))
    t = r["tokenize"]
    if "skipped" in t:
        out.append(("Okt tokenization", "skipped: no Java", "", "", ""))
    else:
        out.append(("Okt tokenization, sentences/s", f"{t['cached_sentences_per_s']:.0f} cached",
                    f"{t['cold_sentences_per_s']:.0f} cold", f"{t['cache_speedup']:.0f}x", ""))
    k = r.get("tokenize_kiwi", {"skipped": "not measured"})
    if "skipped" in k:
        out.append(("kiwi tokenization", "skipped: no kiwipiepy", "", "", ""))
    else:
        vs_okt = (f"{k['cold_sentences_per_s'] / t['cold_sentences_per_s']:.1f}x Okt cold"
                  if "skipped" not in t else "")
        out.append(("kiwi tokenization, sentences/s", f"{k['cached_sentences_per_s']:.0f} cached",
                    f"{k['cold_sentences_per_s']:.0f} cold", vs_okt, ""))
    return out


def table(r: dict) -> str:
    head = ("measure", "capkit", "reference", "ratio", "target")
    body = rows(r)
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(5)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *[line(b) for b in body]])


def verdicts(r: dict) -> dict:
    step = min(r["train_step"][a]["speedup"] for a in ("soft", "lookback"))
    frac = min(r["train_step"][a]["matmul_fraction"] for a in ("soft", "lookback"))
    got = {"train_step_speedup": step, "epoch_speedup": r["epoch"]["epoch_speedup"],
           "greedy_speedup": r["decoding"]["greedy_speedup"], "matmul_fraction": frac}
    return {k: {"value": v, "target": TARGETS[k], "met": v >= TARGETS[k]} for k, v in got.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="data/sample")
    ap.add_argument("--out", default="runs/bench.json")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--encoder", default="resnet101", help="the CNN of the epoch benchmark (random weights)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    ap.add_argument("--token-cache", default=None,
                    help="read the Okt tokens from this cache (e.g. data/cache/tokens, filled by the notebooks); "
                         "a machine without Java needs one that holds every training text")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    size = SMOKE if args.smoke else STUDY
    t_start = time.perf_counter()
    report = {"machine": machine(), "sizes": size, "smoke": args.smoke}

    records, _ = D.load("sample", args.data_dir, check=False)
    train_recs = [r for r in records if r.split == "train" and r.texts]
    if args.smoke:
        train_recs = train_recs[:12]
    print(f"{len(train_recs)} training texts from {args.data_dir}; device {device}; {report['machine']['cpu']}",
          flush=True)

    print("tokenization ...", flush=True)
    report["tokenize"] = bench_tokenize([r.text for r in train_recs])
    report["tokenize_kiwi"] = bench_tokenize([r.text for r in train_recs], "kiwi")
    with tempfile.TemporaryDirectory(prefix="capkit-bench-") as tmp:
        token_lists = list(text.tokenize_all([r.text for r in train_recs], "okt",
                                             D.project_path(args.token_cache) if args.token_cache else Path(tmp)))
        token_lengths = [len(t) for t in token_lists]
        print("matmul ...", flush=True)
        # the yardstick: a float32 matmul (the step's precision) big enough to saturate the device
        report["matmul"] = bench_matmul(device, n=256 if args.smoke else (8192 if device.type == "cuda" else 2048))
        print("training step ...", flush=True)
        report["train_step"] = bench_train_step(size, token_lengths, device, 2 if args.smoke else args.repeat,
                                                report["matmul"]["gflops"])
        print("decoding ...", flush=True)
        report["decoding"] = bench_decoding(size, device, n_images=8 if args.smoke else 4 * inference.decode_batch(device),
                                            n_reference=4 if args.smoke else 64, max_len=size["max_tokens"],
                                            mean_words=statistics.mean(min(n, size["max_tokens"]) for n in token_lengths))
        print("epoch (capkit from the feature cache, the reference re-running the CNN) ...", flush=True)
        report["epoch"] = bench_epoch(train_recs, token_lists, size, device, Path(tmp) / "cache",
                                      "efficientnet_lite0" if args.smoke else args.encoder,
                                      image_limit=None, smoke=args.smoke)
    report["targets"] = verdicts(report)
    report["seconds"] = time.perf_counter() - t_start
    print()
    print(table(report))
    print()
    for k, v in report["targets"].items():
        print(f"{k:20s} {v['value']:8.2f}  target {v['target']:5.2f}  {'met' if v['met'] else 'NOT MET'}")
    out = D.project_path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten {out} ({report['seconds']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
