"""Parallel-safe caches: several processes filling one empty feature cache, and one token cache, at the same time.

Each test starts real processes ('spawn': papermill jobs and DDP ranks are separate interpreters), lets them all
import first and then releases them together through a barrier, so their writes overlap; their results must equal
one process's on another empty cache.
"""

import multiprocessing as mp
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

N_PROCS = 3
ENCODER = "efficientnet_lite0"


def start_together(jobs):
    """Start one spawned process per ``(target, args)``, called as ``target(barrier, *args)``; returns exit codes.

    The barrier holds everyone (this process too) until all have imported, so the work starts at once."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(jobs) + 1)
    procs = [ctx.Process(target=target, args=(barrier, *args)) for target, args in jobs]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)
    for p in procs:
        p.join(timeout=300)
    for p in procs:
        if p.is_alive():  # a hung child fails the test instead of hanging it
            p.kill()
            p.join()
    return [p.exitcode for p in procs]


# ----------------------------------------------------------------------------- features


def extract_in_child(barrier, images, cache_dir, out):
    """Child: random Lite0 weights seeded alike in every process, so whoever writes, the features are the same."""
    import torch

    from capkit import features as FT

    torch.set_num_threads(1)
    barrier.wait(timeout=300)
    torch.manual_seed(0)
    store = FT.extract_features(ENCODER, images, cache_dir, weights="random", batch_size=2, progress=False)
    save_store(store, out)


def poll_in_child(barrier, images, cache_dir, out):
    """Child: a reader that takes no lock; it opens the entry the moment it looks finished."""
    import time

    from capkit import encoders as E
    from capkit import features as FT

    key = FT.cache_key(ENCODER, "random", sorted(images), E.ENCODERS[ENCODER])
    final = Path(cache_dir) / "features" / f"{ENCODER}-{key}.f16"
    barrier.wait(timeout=300)
    deadline = time.monotonic() + 240
    while not (final.exists() and final.with_suffix(".json").exists()):  # the check extract_features makes
        if time.monotonic() > deadline:
            raise TimeoutError(f"{final} never appeared")
        time.sleep(0.002)
    save_store(FT.FeatureStore(final), out)


def save_store(store, out):
    np.savez(out, grid=np.array(store.feats), pooled=np.array(store.global_feats),
             images=np.array(store.meta["images"]), failed=np.array(sorted(store.failed.items())),
             name=np.array(store.path.name))


@pytest.fixture()
def images(tmp_path):
    """Six small drawn images (all different) and one corrupt file, which every process must report alike."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(6):
        img = Image.new("RGB", (96 + 16 * i, 80), (40 * i, 200 - 30 * i, 90))
        ImageDraw.Draw(img).ellipse((10 + 5 * i, 10, 60 + 5 * i, 70), fill=(255 - 40 * i, 30 * i, 200))
        paths.append(folder / f"im{i}.png")
        img.save(paths[-1])
    paths.append(folder / "broken.jpg")
    paths[-1].write_bytes(b"\xff\xd8 not really a jpeg")
    return [str(p) for p in paths]


def test_three_processes_extract_into_one_empty_cache(tmp_path, images):
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    outs = [tmp_path / f"out{i}.npz" for i in range(N_PROCS + 2)]
    # three writers and one lock-free reader on one empty cache, released at once; each writer gets the images
    # in another order (the entry is keyed by the set)
    jobs = [(extract_in_child, (images[i:] + images[:i], str(shared), str(outs[i]))) for i in range(N_PROCS)]
    jobs.append((poll_in_child, (images, str(shared), str(outs[N_PROCS]))))
    assert start_together(jobs) == [0] * (N_PROCS + 1)
    # the reference: one process, another empty cache
    assert start_together([(extract_in_child, (images, str(alone), str(outs[-1])))]) == [0]

    ref = np.load(outs[-1])
    broken = ref["images"].tolist().index(images[-1])  # rows follow the sorted paths
    good = [i for i in range(7) if i != broken]
    assert ref["grid"].shape == (7, 196, 112) and all(np.abs(ref["grid"][i]).max() > 0 for i in good)
    assert ref["failed"].tolist() == [[images[-1], "corrupt_image"]] and not ref["grid"][broken].any()
    for out in outs[:-1]:
        got = np.load(out)
        for name in ("grid", "pooled", "images", "failed", "name"):
            assert np.array_equal(got[name], ref[name]), (out.name, name)
    # one finished entry (and its lock file); no partial, temporary or second file left behind
    stem = str(ref["name"]).removesuffix(".f16")
    left = {p.name.removeprefix(stem) for p in (shared / "features").iterdir()}
    assert left - {".lock"} == {".f16", ".json", ".pooled.f32"}


# ----------------------------------------------------------------------------- tokens


def tokenize_in_child(barrier, texts, cache_dir, out, commit_every):
    """Child: whitespace tokens through the sqlite cache, committing every few texts (many write transactions)."""
    import json

    from capkit import text

    text._COMMIT_EVERY = commit_every
    barrier.wait(timeout=300)
    got = text.tokenize_all(texts, "whitespace", cache_dir)
    Path(out).write_text(json.dumps({"tokens": got, "misses": got.stats.misses}, ensure_ascii=False))


def cache_rows(cache_dir):
    con = sqlite3.connect(Path(cache_dir) / "tokens.sqlite")
    try:
        return sorted(con.execute("SELECT tokenizer, text, tokens FROM tokens"))
    finally:
        con.close()


def test_three_processes_tokenize_into_one_empty_cache(tmp_path):
    import json

    texts = [f"오늘 {i}번째 사진 날씨 {'좋다' if i % 3 else '흐림'} #일상{i % 50} ㅋㅋ" for i in range(3000)]
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    outs = [tmp_path / f"tok{i}.json" for i in range(N_PROCS + 1)]
    # each process its own order of the same texts (plus repeats), 8 texts per write transaction
    orders = [texts, texts[::-1], texts[1500:] + texts[:1500] + texts[:100]]
    jobs = [(tokenize_in_child, (orders[i], str(shared), str(outs[i]), 8)) for i in range(N_PROCS)]
    assert start_together(jobs) == [0] * N_PROCS
    assert start_together([(tokenize_in_child, (texts, str(alone), str(outs[-1]), 8))]) == [0]

    ref = dict(zip(texts, json.loads(outs[-1].read_text())["tokens"]))
    assert ref[texts[4]] == ["오늘", "4번째", "사진", "날씨", "좋다", "#일상4", "ㅋㅋ"]
    for order, out in zip(orders, outs):
        assert json.loads(out.read_text())["tokens"] == [ref[t] for t in order]
    rows = cache_rows(shared)
    assert len(rows) == len(texts) and rows == cache_rows(alone)  # every text once, the same tokens
