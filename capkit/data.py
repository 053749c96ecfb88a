"""Records: one type for every source, loading a source by name (``SOURCES``: the manifest loader here, the
others in :mod:`capkit.sources` and :mod:`capkit.flickr8k`), the image check, the skip report, splits (opening an
image: :mod:`capkit.images`; reading JSON files and project paths: :mod:`capkit.store`, both also here).

Every loader returns ``(records, report)``. A record that cannot be used (missing or broken
image, no text and no hashtags, an advertising post, ...) is skipped and counted in the
report under a reason; a file that is structurally wrong (not JSON, a required field missing
in every record) raises :class:`DataError` naming the file and the record.

Sources (``dataset`` parameter of the notebooks):

- ``sample``: the embedded synthetic dataset (:mod:`capkit.sample`), generated when missing.
- ``kts``: the Korean Tourist Spot layout
  ``{total,train,valid,test}/{nature-scene,person-made}/<category>/<category>.json``.
- ``instagram``: crawled post files (``key``, an image path or URL, ``description``).
- ``coco``: COCO captions JSONs (``images`` + ``annotations``): the 2017 download layout
  (``annotations/captions_{train,val}2017.json`` beside ``train2017/``, ``val2017/``) or a flat folder.
- ``karpathy``: Karpathy's split files (``dataset_coco.json``, ``dataset_flickr8k.json``,
  ``dataset_flickr30k.json``) with their images.
- ``flickr8k``: the Flickr8k release as its archives unpack, or its ``Images/`` + ``captions.txt`` copy
  (:mod:`capkit.flickr8k`).
- ``manifest``: ``manifest.jsonl`` or ``manifest.csv`` (see README, "Bring your own data").

Several lines for the same key (one line per caption, a post crawled twice, ...) become one record
(:func:`merge_records`): their texts and hashtags are united; only exact duplicate lines are dropped.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import json
import random
import re
import shutil
import unicodedata
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from capkit import store
from capkit.images import BAD_IMAGE_REASONS, BadImage, image_issue, open_image
from capkit.store import DataError, decode_text, project_path, read_jsonl

SPLITS = ("train", "val", "test")
# dataset name -> "module:function" of its loader (data_dir, LoadReport) -> records; a new source is one entry
SOURCES = {"sample": "capkit.data:load_manifest", "manifest": "capkit.data:load_manifest",
           "kts": "capkit.sources:load_kts", "instagram": "capkit.sources:load_instagram",
           "coco": "capkit.sources:load_coco", "karpathy": "capkit.sources:load_karpathy",
           "flickr8k": "capkit.flickr8k:load_flickr8k"}
DATASETS = tuple(SOURCES)
SPLIT_RATIOS = (0.7, 0.1, 0.2)  # as KTS
AD_WORDS = ("광고", "문의", "연락", "상담")  # the study's advertising filter


@dataclass
class Record:
    """One post: an image with one or more reference texts and its hashtags."""

    key: str
    image: str  # absolute path (or URL before download)
    texts: list[str] = field(default_factory=list)
    hashtags: list[str] = field(default_factory=list)  # normalised, without '#'
    category: str | None = None
    split: str | None = None
    boxes: list[dict] = field(default_factory=list)  # {"label", "word", "box": [x0, y0, x1, y1] in 0..1}
    origin: str = field(default="", compare=False, repr=False)  # "file#record" of its (first) line

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoadReport:
    """What a loader read, kept and skipped (per reason, with examples naming file and record).

    Counts are of lines (records as the files hold them): ``read`` = ``kept`` + skipped, and ``merged`` of the
    kept lines were folded into an earlier line's record (same key), so ``records`` = ``kept`` - ``merged``.
    """

    source: str = ""
    read: int = 0
    merged: int = 0  # kept lines folded into an earlier record with the same key (their texts and hashtags kept)
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # reason -> ["file#record", ...] (first few)
    normalised: Counter = field(default_factory=Counter)  # usable images that needed fixing
    splits: dict = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(where)

    @property
    def kept(self) -> int:
        return self.read - sum(self.skipped.values())

    @property
    def records(self) -> int:
        """Records the kept lines make (lines with the same key make one)."""
        return self.kept - self.merged

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "read": self.read,
            "kept": self.kept,
            "merged": self.merged,
            "records": self.records,
            "skipped": dict(sorted(self.skipped.items())),
            "examples": self.examples,
            "normalised_images": dict(sorted(self.normalised.items())),
            "splits": self.splits,
        }

    def __str__(self) -> str:
        lines = [f"{self.source}: read {self.read}, kept {self.kept}, skipped {sum(self.skipped.values())}"
                 + (f"; {self.merged} merged into earlier records with the same key -> {self.records} records"
                    if self.merged else "")]
        for reason, n in sorted(self.skipped.items()):
            lines.append(f"  {reason:<22} {n:>6}   e.g. {self.examples[reason][0]}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- text fields

HASHTAG_RE = re.compile(r"#([^\s#]+)")
_TRAILING_PUNCT = ".,!?~…'\")]}>·"


def normalize_hashtags(tags) -> list[str]:
    """Hashtags -> whole tags: no '#', NFC, lower case, trailing punctuation cut, no empties, no repeats.

    The one hashtag normaliser: records hold its output, and so do hashtag tokens and the sample writer's tags.
    ``tags`` is a list, or one string (its ``#tags``, else its words: ``"#부산 #바다!"``,
    ``"부산 바다"``). An entry holding several tags (``"#부산 #해운대"``, ``"#부산#해운대"``) gives each of them,
    since a hashtag cannot hold '#' or white space; entries that are not strings are skipped.
    """
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = HASHTAG_RE.findall(tags) or [tags]
    out = []
    for entry in tags:
        if not isinstance(entry, str):
            continue
        for t in re.split(r"[#\s]+", unicodedata.normalize("NFC", entry)):
            t = t.rstrip(_TRAILING_PUNCT).lower()
            if t and t not in out:
                out.append(t)
    return out


def has_words(text) -> bool:
    """True when a text holds at least one letter or digit (emoji-only or blank texts are empty)."""
    return isinstance(text, str) and any(unicodedata.category(ch)[0] in "LN" for ch in text)


def clean_text(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def is_korean(tag: str) -> bool:
    return any("\uac00" <= ch <= "\ud7a3" or "\u3131" <= ch <= "\u318e" for ch in tag)


# ----------------------------------------------------------------------------- images


def check_images(records: list[Record], report: LoadReport, workers: int = 4) -> list[Record]:
    """Decode every image once (at reduced JPEG scale); drop and count the unusable ones.

    An image shared by several lines (one line per caption) is decoded once; each of its lines is counted."""

    def check(image):
        try:
            open_image(image, draft=(64, 64))
        except BadImage as e:
            return e.reason
        return image_issue(image) or ""

    images = list(dict.fromkeys(rec.image for rec in records))
    with ThreadPoolExecutor(workers) as pool:
        verdicts = dict(zip(images, pool.map(check, images)))
    kept, normalised = [], set()
    for rec in records:
        verdict = verdicts[rec.image]
        if verdict in BAD_IMAGE_REASONS:
            report.skip(verdict, f"{rec.image} (record {rec.key}{', ' + rec.origin if rec.origin else ''})")
            continue
        if verdict and rec.image not in normalised:
            normalised.add(rec.image)
            report.normalised[verdict] += 1
        kept.append(rec)
    return kept


def download_images(records: list[Record], dest, report: LoadReport, timeout: float = 20.0) -> None:
    """Fetch records whose image is a URL into ``dest/<key><ext>`` (kept across runs)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for rec in records:
        if not is_url(rec.image):
            continue
        ext = Path(urllib.parse.urlparse(rec.image).path).suffix.lower() or ".jpg"
        target = dest / (safe_name(rec.key) + ext)
        if not target.exists():
            try:  # (a failed download leaves no file behind)
                with urllib.request.urlopen(rec.image, timeout=timeout) as r, store.open_atomic(target, "wb") as f:
                    shutil.copyfileobj(r, f)
            except Exception as e:  # a dead link is skipped later as missing_image
                report.examples.setdefault("download_failed", []).append(f"{rec.image}: {e}")
        rec.image = str(target)


def is_url(s: str) -> bool:
    return bool(re.match(r"^(https?|file)://", str(s)))


def safe_name(key: str) -> str:
    name = re.sub(r"[^0-9A-Za-z가-힣_.-]+", "_", key)[:80]
    return name + "-" + hashlib.sha1(key.encode()).hexdigest()[:8] if name != key else name


# ----------------------------------------------------------------------------- splits


def split_names(n: int, tag: str, ratios=SPLIT_RATIOS) -> list[str]:
    """The seeded split rule, one for every source: the split of each of ``n`` items in a fixed order.

    The positions are shuffled with ``random.Random(tag)``; the first ``round(n * ratios[0])`` of the shuffled order
    are train, the next ``round(n * ratios[1])`` val, the rest test (7:1:2 by default; 8 items give 6:1:1).
    Used by :func:`assign_splits` and by the sample painter (``capkit.sample``), each with its own ``tag``.
    """
    order = list(range(n))
    random.Random(tag).shuffle(order)
    n_train, n_val = round(n * ratios[0]), round(n * ratios[1])
    names = [""] * n
    for rank, i in enumerate(order):
        names[i] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return names


def assign_splits(records: list[Record], seed: int = 0, ratios=SPLIT_RATIOS) -> None:
    """Give every record without a split one, deterministically: :func:`split_names` within each category, the
    records in key order, the tag ``f"{seed}/{category}"``."""
    by_cat: dict = {}
    for r in records:
        if r.split is None:
            by_cat.setdefault(r.category or "", []).append(r)
    for cat, recs in sorted(by_cat.items()):
        recs.sort(key=lambda r: r.key)
        for r, name in zip(recs, split_names(len(recs), f"{seed}/{cat}", ratios)):
            r.split = name


SPLIT_ALIASES = {"valid": "val", "validation": "val", "dev": "val", "training": "train", "testing": "test",
                 "restval": "train"}  # restval: Karpathy's training images outside his 5,000-image val/test


def normalize_split(value) -> str | None:
    """A split name as a source writes it (``valid``, ``Validation``, KTS's ``valid/`` folder, Karpathy's
    ``restval``, ...) -> ``train`` / ``val`` / ``test``, or None (unknown: :func:`assign_splits` gives one)."""
    if value is None or value == "":
        return None
    v = str(value).strip().lower()
    v = SPLIT_ALIASES.get(v, v)
    return v if v in SPLITS else None


def split_counts(records: list[Record]) -> dict:
    c = Counter(r.split for r in records)
    return {s: c.get(s, 0) for s in SPLITS}


def subsample(records: list[Record], per_split: dict | int, seed: int = 0) -> list[Record]:
    """A small deterministic subset (``smoke`` runs): the first n of each split after shuffling."""
    if isinstance(per_split, int):
        per_split = {s: per_split for s in SPLITS}
    out = []
    for s in SPLITS:
        recs = sorted((r for r in records if r.split == s), key=lambda r: r.key)
        random.Random(f"{seed}/{s}").shuffle(recs)
        out += recs[: per_split.get(s, 0)]
    return out


# ----------------------------------------------------------------------------- loaders


def load(dataset: str, data_dir=None, seed: int = 0, check: bool = True, download: bool = False,
         workers: int = 4) -> tuple[list[Record], LoadReport]:
    """Load any source into records. ``check`` decodes every image once to find broken ones.

    Lines with the same key become one record (:func:`merge_records`). Records without a split get a seeded
    7:1:2 one (:func:`assign_splits`); ``coco`` without validation images carves them out of train
    (:func:`carve_validation`). ``karpathy`` also takes the path of its JSON file as `data_dir`.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, not {dataset!r}")
    data_dir = project_path(data_dir or ("data/sample" if dataset == "sample" else f"data/{dataset}"))
    if dataset == "sample":
        from capkit import sample

        if not (data_dir / "manifest.jsonl").exists():  # first use: generate it (the dataset's own seed, 0)
            sample.generate(data_dir)
    if not (data_dir.is_dir() or (dataset == "karpathy" and data_dir.is_file())):
        raise FileNotFoundError(f"data_dir {data_dir} does not exist (dataset={dataset!r}); see README, 'Data'")
    report = LoadReport(source=f"{dataset}:{data_dir}")
    module, name = SOURCES[dataset].split(":")
    loader = getattr(importlib.import_module(module), name)  # (the sources' modules import this one)
    records = loader(data_dir, report)
    if download:
        download_images(records, data_dir / "images", report)
    for r in records:
        if is_url(r.image):
            report.skip("image_not_downloaded", f"{r.image} (record {r.key}); load(..., download=True) fetches it")
    records = [r for r in records if not is_url(r.image)]
    if check:
        records = check_images(records, report, workers)
    records = merge_records(records, report)
    if dataset == "coco" and not any(r.split == "val" for r in records):
        carve_validation(records, seed)
    assign_splits(records, seed)
    report.splits = split_counts(records)
    return records, report


def merge_records(records: list[Record], report: LoadReport) -> list[Record]:
    """Fold lines with the same key into one record, losing nothing without counting it.

    A later line for a key already seen, with the same image, is merged into the first line's record: its texts
    are appended in order (a text the record already holds is not added again), its hashtags united in order,
    its boxes added, and a split or category the record lacks taken; ``report.merged`` counts it. Two kinds of
    line are skipped and counted instead, each example naming its line: an exact duplicate of an earlier line
    (same key, image, texts and hashtags) as ``duplicate``, and a line whose key names another image than the
    record's as ``key_conflict`` (both images named).
    """
    by_key: dict[str, Record] = {}
    seen_lines: dict[str, set] = {}
    out = []
    for r in records:
        line = (r.image, tuple(r.texts), tuple(r.hashtags))
        first = by_key.get(r.key)
        if first is None:
            by_key[r.key] = r
            seen_lines[r.key] = {line}
            out.append(r)
            continue
        where = r.origin or r.key
        if r.image != first.image:
            report.skip("key_conflict", f"{where}: key {r.key!r} is {r.image}, but {first.origin or 'an earlier line'}"
                                        f" gave it {first.image}")
            continue
        if line in seen_lines[r.key]:
            report.skip("duplicate", f"{where} (repeats a line of {r.key!r})")
            continue
        seen_lines[r.key].add(line)
        first.texts += [t for t in r.texts if t not in first.texts]
        first.hashtags += [t for t in r.hashtags if t not in first.hashtags]
        first.boxes += [b for b in r.boxes if b not in first.boxes]
        first.split = first.split or r.split
        first.category = first.category or r.category
        report.merged += 1
    return out


def carve_validation(records: list[Record], seed: int = 0, share: float = 1 / 8, cap: int = 5000) -> int:
    """Move ``min(round(n_train * share), cap)`` training records to ``val``; return how many.

    The records are chosen by shuffling the training records, sorted by key, with ``random.Random(f"{seed}/val")``:
    the same seed and records give the same validation set.
    """
    train = sorted((r for r in records if r.split == "train"), key=lambda r: r.key)
    n = min(round(len(train) * share), cap)
    random.Random(f"{seed}/val").shuffle(train)
    for r in train[:n]:
        r.split = "val"
    return n


def make_record(report: LoadReport, where: str, *, key, image, texts, hashtags, category=None,
                split=None, boxes=None) -> Record | None:
    """Build a record, or count why it is unusable and return None (the caller counts reads)."""
    texts = [clean_text(t) for t in texts if has_words(t)]
    hashtags = normalize_hashtags(hashtags)
    if not texts and not hashtags:
        report.skip("no_text_or_hashtags", where)
        return None
    return Record(key=str(key), image=str(image), texts=texts, hashtags=hashtags,
                  category=category, split=normalize_split(split), boxes=list(boxes or []), origin=where)


def require_fields(rows: list, fields: tuple, path) -> None:
    """A field that no record has is a structural error (names the file and the first record)."""
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of records, found {type(rows).__name__}")
    dicts = [r for r in rows if isinstance(r, dict)]
    if rows and not dicts:
        raise DataError(f"{path}: record 0 is {type(rows[0]).__name__}, expected a JSON object")
    for f in fields:
        names = f if isinstance(f, tuple) else (f,)
        if dicts and not any(any(n in r for n in names) for r in dicts):
            raise DataError(f"{path}: required field {'/'.join(names)!r} is missing in every record "
                            f"(record 0: {json.dumps(dicts[0], ensure_ascii=False)[:120]})")


def text_list(row: dict) -> list:
    """A manifest row's texts: ``texts`` (a list), else ``text``, else ``caption`` (Flickr-style captions files)."""
    if isinstance(row.get("texts"), list):
        return [t for t in row["texts"] if isinstance(t, str)]
    t = row.get("text") if row.get("text") is not None else row.get("caption")
    if isinstance(t, str) and t.startswith("[") and t.endswith("]"):  # CSV cell holding a JSON list
        try:
            return [x for x in json.loads(t) if isinstance(x, str)]
        except json.JSONDecodeError:
            pass
    return [t] if isinstance(t, str) else []


def load_manifest(data_dir: Path, report: LoadReport) -> list[Record]:
    """``manifest.jsonl`` or ``manifest.csv``: image (relative), text/texts (or caption), hashtags, split, category.

    The key is ``key``, else ``image``: a file with one line per caption (Flickr's ``captions.txt`` as a CSV with
    ``image,caption``) gives one record per image with all its captions (:func:`merge_records`)."""
    jl, cs = data_dir / "manifest.jsonl", data_dir / "manifest.csv"
    if jl.exists():
        path, rows = jl, read_jsonl(jl)
    elif cs.exists():
        path = cs
        rows = list(csv.DictReader(io.StringIO(decode_text(cs.read_bytes(), cs))))
    else:
        raise FileNotFoundError(f"{data_dir}: no manifest.jsonl or manifest.csv")
    require_fields(rows, ("image",), path)
    records = []
    for i, row in enumerate(rows):
        where = f"{path.name}#{i + 1}"
        report.read += 1
        if not row.get("image"):
            report.skip("missing_field:image", where)
            continue
        hashtags = row.get("hashtags")
        if isinstance(hashtags, str) and hashtags.strip().startswith("["):
            hashtags = json.loads(hashtags)
        image = row["image"] if is_url(row["image"]) else data_dir / row["image"]
        boxes = row.get("boxes") or []
        rec = make_record(report, where, key=row.get("key") or row["image"], image=image,
                          texts=text_list(row), hashtags=hashtags, category=row.get("category") or None,
                          split=row.get("split"), boxes=boxes if isinstance(boxes, list) else [])
        if rec:
            records.append(rec)
    return records


def records_frame(records: list[Record]):
    """A pandas DataFrame with one row a record (for exploration)."""
    import pandas as pd

    return pd.DataFrame([{**r.to_dict(), "text": r.text, "n_texts": len(r.texts),
                          "n_hashtags": len(r.hashtags)} for r in records])


def save_report(report: LoadReport, records: list[Record], path) -> Path:
    """Write ``data_report.json``: counts per split and category, skipped records per reason."""
    path = project_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cats = Counter((r.category or "-", r.split) for r in records)
    doc = {**report.to_dict(), "records": len(records), "splits": split_counts(records),
           "categories": {c: {s: cats.get((c, s), 0) for s in SPLITS} for c in sorted({c for c, _ in cats})},
           "with_text": sum(bool(r.texts) for r in records), "with_hashtags": sum(bool(r.hashtags) for r in records)}
    store.write_json(path, doc)
    return path
