"""The on-disk feature cache: what the frozen encoders (:mod:`capkit.encoders`) make of each image, computed once.

:func:`extract_features` writes a float16 memory-mapped grid array ``[n, L, D]`` and a float32 global-vector array
``[n, 1280 / 2048]``, keyed by encoder (its cut), weights, image set and transform, and returns a
:class:`FeatureStore` that training, testing and captioning read rows from (``store[images]``). An entry that
covers the images asked for is reused; each entry has one writer at a time (a lock file), so parallel runs can share
one cache, and an entry is complete only once its description is written (a killed extraction is redone). Under
torchrun on one machine the ranks encode their shares into one entry (:func:`extract_sharded`).

This module imports ``dist``, ``encoders``, ``images`` and ``store``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout

from capkit import dist, store
from capkit.images import BadImage
from capkit.store import project_path
from capkit.encoders import ENCODERS, Encoder, EncoderSpec, InferenceEncoder, image_tensor

F16_MAX = float(np.finfo(np.float16).max)  # the cache's largest value


class FeatureStore:
    """Read-only features of a set of images: ``store[["a.jpg", ...]] -> float32 [n, L, D]``, and the global
    vectors ``store.global_pooled([...]) -> float32 [n, P]`` (``None`` for a cache written without them)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = json.loads(self.path.with_suffix(".json").read_text())
        self.feats = np.memmap(self.path, dtype=np.float16, mode="r", shape=tuple(self.meta["shape"]))
        gpath = pooled_path(self.path)
        self.global_feats = None
        if self.meta.get("pooled_shape") and gpath.exists():
            self.global_feats = np.memmap(gpath, dtype=np.float32, mode="r", shape=tuple(self.meta["pooled_shape"]))
        self.index = {p: i for i, p in enumerate(self.meta["images"])}
        self.failed = self.meta.get("failed", {})
        self.ram: torch.Tensor | None = None  # a private float16 copy, after to_memory()

    def to_memory(self, max_bytes: int = 2 * 2**30) -> bool:
        """Copy the features into RAM when they take less than ``max_bytes`` (training reads each row once an
        epoch; RAM is faster than the memory map). Returns whether they are in RAM now."""
        if self.ram is None and self.feats.nbytes < max_bytes:
            self.ram = torch.from_numpy(np.array(self.feats))
        return self.ram is not None

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, image) -> bool:
        return str(image) in self.index

    def rows(self, images) -> np.ndarray:
        return np.array([self.index[str(p)] for p in images], dtype=np.int64)

    def __getitem__(self, images) -> torch.Tensor:
        rows = self.rows(images)
        if self.ram is not None:
            return self.ram[torch.from_numpy(rows)].float()
        return torch.from_numpy(np.asarray(self.feats[rows], dtype=np.float32))

    def pooled(self, images=None, chunk: int = 512) -> np.ndarray:
        """Mean feature over the grid, ``[n, D]`` (the fallback for retrieval: see :meth:`global_pooled`)."""
        rows = np.arange(len(self)) if images is None else self.rows(images)
        return np.concatenate([self.feats[rows[i:i + chunk]].astype(np.float32).mean(1)
                               for i in range(0, len(rows), chunk)] or [np.zeros((0, self.meta["shape"][2]))])

    @property
    def global_dim(self) -> int | None:
        """P, the size of the global vectors (1280 for EfficientNet-Lite), or None when the cache has none."""
        return None if self.global_feats is None else int(self.global_feats.shape[1])

    def global_pooled(self, images=None) -> np.ndarray | None:
        """The network's final feature map average-pooled (what its classifier reads), float32 ``[n, P]``;
        ``None`` when this cache holds no global vectors."""
        if self.global_feats is None:
            return None
        rows = np.arange(len(self)) if images is None else self.rows(images)
        return np.array(self.global_feats[rows], dtype=np.float32)


def pooled_path(grid_path: Path) -> Path:
    """The global-vector file beside a cache's grid file (``x.f16`` -> ``x.pooled.f32``)."""
    return Path(grid_path).with_suffix(".pooled.f32")


def cache_key(name: str, weights: str, images: list[str], spec: EncoderSpec) -> str:
    # v2: the cut is part of the key, and every entry holds the global vectors too
    h = hashlib.sha256(f"{name}|{weights}|{spec.transform_id()}|{spec.cut_id()}|v2".encode())
    for p in images:
        st = os.stat(p) if os.path.exists(p) else None
        h.update(f"{p}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
    return h.hexdigest()[:16]


def extract_features(name: str, images, cache_dir="data/cache", weights: str = "pretrained",
                     batch_size: int = 32, device: str = "cpu", progress: bool = True,
                     encoder: Encoder | None = None, sharded: bool = False) -> FeatureStore:
    """Run the frozen encoder once over ``images`` and return their cached features.

    One pass per image gives both arrays: the float16 grid ``[n, L, D]`` (``x.f16``) and the float32 global
    vectors ``[n, P]`` (``x.pooled.f32``). The cache files are keyed by encoder (name and cut), weights,
    transform and the image set (paths, sizes, mtimes). Extraction writes to ``*.partial`` files and records
    its progress after every batch, so a killed run resumes where it stopped; the final files appear by
    atomic renames, the json (which a reader checks for) last. Images that fail to open get zero features
    and are listed in ``store.failed``.

    Any number of processes may ask for the same entry at once (parallel papermill jobs, DDP ranks): one
    writes it, holding the entry's lock file (``x.lock``), and the others wait for the lock, then read.

    ``sharded=True`` under torchrun: every rank calls it with the same images, and the ranks share the
    encoding (:func:`extract_sharded`); the same as ``False`` in one process.
    """
    spec = ENCODERS[name]
    images = sorted(dict.fromkeys(str(p) for p in images))
    key = cache_key(name, weights, images, spec)
    folder = project_path(cache_dir) / "features"
    final = folder / f"{name}-{key}.f16"
    if sharded and dist.active():
        return extract_sharded(final, name, weights, images, encoder, batch_size, device, progress)
    if is_complete(final):
        return FeatureStore(final)
    covering = covering_entry(folder, name, weights, images, spec)
    if covering is not None:
        return FeatureStore(covering)
    folder.mkdir(parents=True, exist_ok=True)
    with entry_lock(final, progress):
        if not is_complete(final):  # else another process wrote it while this one waited
            write_entry(final, name, weights, images, encoder or Encoder(name, weights), batch_size, device, progress)
    return FeatureStore(final)


def covering_entry(folder: Path, name: str, weights: str, images: list[str], spec: EncoderSpec) -> Path | None:
    """A finished entry of the same encoder, cut, transform and weights whose image set holds all of ``images``
    and whose files are unchanged since it was written (its key, recomputed from its own image list now, is still
    the one in its name), or None. The test images of a dataset are then read from the entry of the whole dataset
    (what training wrote) instead of being encoded a second time."""
    if not folder.is_dir():
        return None
    wanted = set(images)
    for meta_path in sorted(folder.glob(f"{name}-*.json")):
        final = meta_path.with_suffix(".f16")
        if not is_complete(final):
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        have = meta.get("images") or []
        if (meta.get("weights") != weights or meta.get("transform") != spec.transform_id()
                or meta.get("cut") != spec.cut_id() or len(have) < len(wanted) or not wanted.issubset(have)):
            continue
        if final.stem == f"{name}-{cache_key(name, weights, have, spec)}":
            return final
    return None


def is_complete(final: Path) -> bool:
    """Whether a cache entry is finished: its json appears last, after the arrays are in place."""
    return final.exists() and final.with_suffix(".json").exists()


@contextmanager
def entry_lock(final: Path, progress: bool = True):
    """Hold a cache entry's lock file (``x.lock`` beside ``x.f16``) across processes; says so when it must wait.

    The operating system frees the lock when its holder exits or is killed, so a killed writer never blocks the
    next one, which resumes from its ``*.partial`` files."""
    lock = FileLock(final.with_suffix(".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            print(f"{final.name}: another process is writing this feature cache entry; waiting for it",
                  file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def write_entry(final: Path, name: str, weights: str, images: list[str], enc: Encoder, batch_size: int,
                device: str, progress: bool) -> None:
    """Extract the features of ``images`` (sorted) into the cache entry ``final`` (see :func:`extract_features`);
    the caller holds the entry's lock."""
    from tqdm.auto import tqdm

    spec = ENCODERS[name]
    part, part_meta = final.with_suffix(".f16.partial"), final.with_suffix(".json.partial")
    gfinal = pooled_path(final)
    gpart = Path(str(gfinal) + ".partial")
    enc = enc.to(device).eval()
    shape = (len(images), spec.grid * spec.grid, spec.dim)
    gshape = (len(images), enc.global_dim)
    meta = {"encoder": name, "weights": weights, "transform": spec.transform_id(), "cut": spec.cut_id(),
            "shape": shape, "pooled_shape": gshape, "images": images, "done": 0, "failed": {}}
    if part.exists() and gpart.exists() and part_meta.exists():
        old = json.loads(part_meta.read_text())
        if (old.get("images") == images and list(old.get("shape", [])) == list(shape)
                and list(old.get("pooled_shape", [])) == list(gshape)):
            meta = old
    mode = "r+" if meta["done"] else "w+"
    feats = np.memmap(part, dtype=np.float16, mode=mode, shape=shape)
    gfeats = np.memmap(gpart, dtype=np.float32, mode=mode, shape=gshape)

    def load(path):
        try:
            return image_tensor(path, spec.image_size), None
        except BadImage as e:
            return torch.zeros(3, spec.image_size, spec.image_size), e.reason

    starts = range(meta["done"], len(images), batch_size)
    encode = InferenceEncoder(enc)
    with ThreadPoolExecutor(2) as pool, torch.inference_mode():
        bar = tqdm(total=len(images), initial=meta["done"], desc=f"features {name}", disable=not progress)
        nxt = pool.map(load, images[meta["done"]:meta["done"] + batch_size]) if starts else None
        for start in starts:
            batch = list(nxt)
            stop = min(start + batch_size, len(images))
            if stop < len(images):  # decode the next batch while the CNN runs
                nxt = pool.map(load, images[stop:stop + batch_size])
            grid, vec = encode(torch.stack([t for t, _ in batch]).to(device))
            out, vec = grid.float().cpu().numpy(), vec.float().cpu().numpy()
            for j, (_, err) in enumerate(batch):
                if err:
                    out[j] = 0
                    vec[j] = 0
                    meta["failed"][images[start + j]] = err
            peak = float(np.abs(out).max()) if out.size else 0.0
            if not peak < F16_MAX:  # inf / NaN in the cache would poison every epoch
                raise ValueError(f"{name} ({weights} weights) gives features up to {peak:.3g} on {images[start]}: "
                                 f"beyond float16's range ({F16_MAX:.0f}), so the feature cache cannot hold them")
            if not np.isfinite(vec).all():
                raise ValueError(f"{name} ({weights} weights) gives non-finite global vectors on {images[start]}")
            feats[start:stop] = out.astype(np.float16)
            gfeats[start:stop] = vec
            feats.flush()
            gfeats.flush()
            meta["done"] = stop
            write_entry_json(part_meta, meta)
            bar.update(stop - start)
        bar.close()
    del feats, gfeats
    meta.pop("done")
    store.publish(part, final)
    store.publish(gpart, gfinal)
    write_entry_json(final.with_suffix(".json"), meta)
    part_meta.unlink(missing_ok=True)


def extract_sharded(final: Path, name: str, weights: str, images: list[str], encoder: Encoder | None,
                    batch_size: int, device: str, progress: bool) -> FeatureStore:
    """:func:`extract_features` by all the ranks of a torchrun group on one machine (every rank calls it).

    Rank 0 decides for all (the entry or a covering one is there: nothing to do), takes the entry's lock and
    creates its ``*.partial`` arrays; every rank encodes every world_size-th batch (the batches one process
    encodes, so the same bytes) and writes its rows into those arrays; rank 0 then renames them into place and
    writes the json, as :func:`write_entry` does. A killed sharded extraction starts again from its first batch.
    """
    spec = ENCODERS[name]
    found, lock = None, None
    if dist.is_main():
        found = final if is_complete(final) else covering_entry(final.parent, name, weights, images, spec)
        if found is None:
            final.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(final.with_suffix(".lock"))
            lock.acquire()  # another job may be writing it: wait, then it is complete
            if is_complete(final):
                found = final
                lock.release()
    found = dist.broadcast(found)
    if found is not None:
        return FeatureStore(found)
    from tqdm.auto import tqdm

    enc = (encoder or Encoder(name, weights)).to(device).eval()
    part, gpart = final.with_suffix(".f16.partial"), Path(str(pooled_path(final)) + ".partial")
    shape, gshape = (len(images), spec.grid * spec.grid, spec.dim), (len(images), enc.global_dim)
    if dist.is_main():  # fresh arrays; a single writer's progress record would no longer describe them
        final.with_suffix(".json.partial").unlink(missing_ok=True)
        np.memmap(part, dtype=np.float16, mode="w+", shape=shape).flush()
        np.memmap(gpart, dtype=np.float32, mode="w+", shape=gshape).flush()
    dist.barrier()
    feats = np.memmap(part, dtype=np.float16, mode="r+", shape=shape)
    gfeats = np.memmap(gpart, dtype=np.float32, mode="r+", shape=gshape)
    failed = {}
    starts = range(0, len(images), batch_size)[dist.rank()::dist.world_size()]
    encode = InferenceEncoder(enc)
    with torch.inference_mode():
        for start in tqdm(starts, desc=f"features {name} (rank 0 of {dist.world_size()})", disable=not progress):
            batch = []
            for path in images[start:start + batch_size]:
                try:
                    batch.append(image_tensor(path, spec.image_size))
                except BadImage as e:
                    batch.append(torch.zeros(3, spec.image_size, spec.image_size))
                    failed[path] = e.reason
            grid, vec = encode(torch.stack(batch).to(device))
            out, vec = grid.float().cpu().numpy(), vec.float().cpu().numpy()
            for j, path in enumerate(images[start:start + batch_size]):
                if path in failed:
                    out[j], vec[j] = 0, 0
            if not (float(np.abs(out).max()) if out.size else 0.0) < F16_MAX or not np.isfinite(vec).all():
                raise ValueError(f"{name} ({weights} weights) gives features beyond float16's range or non-finite "
                                 f"global vectors on {images[start]}: the feature cache cannot hold them")
            feats[start:start + len(out)] = out.astype(np.float16)
            gfeats[start:start + len(out)] = vec
    feats.flush()
    gfeats.flush()
    del feats, gfeats
    failed = {k: v for part_failed in dist.gather({dist.rank(): failed}) for k, v in part_failed.items()}
    if dist.is_main():
        meta = {"encoder": name, "weights": weights, "transform": spec.transform_id(), "cut": spec.cut_id(),
                "shape": shape, "pooled_shape": gshape, "images": images,
                "failed": {im: failed[im] for im in images if im in failed}}
        store.publish(part, final)
        store.publish(gpart, pooled_path(final))
        write_entry_json(final.with_suffix(".json"), meta)
        lock.release()
    dist.barrier()
    return FeatureStore(final)


def write_entry_json(path: Path, obj) -> None:
    """A cache entry's description: compact JSON on one line, written atomically."""
    store.write_text_atomic(path, json.dumps(obj, ensure_ascii=False))
