"""The public sources' layouts, each read into :class:`capkit.data.Record` s (``capkit.data.SOURCES`` names them):
the Korean Tourist Spot release (``kts``), crawled Instagram posts (``instagram``), COCO captions (``coco``) and
Karpathy's split files (``karpathy``). What every loader shares (the record, the skip report, text fields,
splits) is :mod:`capkit.data`'s; Flickr8k has a file of its own (:mod:`capkit.flickr8k`).

This module imports ``data`` (records, the skip report) and ``store`` (JSON files read back).
"""

from __future__ import annotations

import re
from pathlib import Path

from capkit.data import (AD_WORDS, HASHTAG_RE, DataError, LoadReport, Record, clean_text, is_korean, is_url,
                         make_record, normalize_hashtags, require_fields)
from capkit.store import read_json, read_jsonl

KTS_SPLIT_DIRS = ("train", "valid", "test")  # the split folders, named as splits by normalize_split (valid: val)


def load_kts(data_dir: Path, report: LoadReport) -> list[Record]:
    """The KTS release: split folders (or ``total``), two groups, one JSON per category.

    The key is ``<category>/<img_name>``: the same image listed twice in a category is one record with both
    texts (:func:`merge_records`)."""
    roots = [(data_dir / d, d) for d in KTS_SPLIT_DIRS if (data_dir / d).is_dir()] or [(data_dir / "total", None)]
    if not roots[0][0].is_dir():
        raise FileNotFoundError(f"{data_dir}: expected KTS folders train/ valid/ test/ or total/")
    records = []
    for root, split in roots:
        files = sorted(root.glob("*/*/*.json"))
        if not files:
            raise DataError(f"{root}: no <group>/<category>/<category>.json files")
        for path in files:
            category = path.parent.name
            rows = read_json(path)
            require_fields(rows, ("img_name",), path)
            for i, row in enumerate(rows):
                where = f"{path}#{i}"
                report.read += 1
                if not isinstance(row, dict) or not row.get("img_name"):
                    report.skip("missing_field:img_name", where)
                    continue
                rec = make_record(report, where, key=f"{category}/{row['img_name']}",
                                  image=path.parent / "images" / row["img_name"],
                                  texts=[row.get("text")], hashtags=row.get("hashtag"),
                                  category=category, split=split)
                if rec:
                    records.append(rec)
    return records


IMAGE_FIELDS = ("image", "img_path", "image_path", "img", "img_url", "image_url", "display_url", "url")


def parse_instagram(description: str) -> tuple[str, list[str]]:
    """Split a post description into its text (hashtags removed) and its Korean hashtags."""
    tags = [t for t in normalize_hashtags(HASHTAG_RE.findall(description)) if is_korean(t)]
    text = clean_text(HASHTAG_RE.sub(" ", description))
    return text, tags


def load_instagram(data_dir: Path, report: LoadReport) -> list[Record]:
    """Crawled posts (``*.json`` lists or ``*.jsonl``): Korean hashtags from the description,
    advertising and hashtag-less posts dropped. Posts with the same key are merged by :func:`load`
    (:func:`merge_records`: a post crawled twice is a ``duplicate``)."""
    files = sorted(p for p in data_dir.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file())
    if not files:
        raise FileNotFoundError(f"{data_dir}: no *.json or *.jsonl post files")
    records = []
    for path in files:
        rows = read_jsonl(path) if path.suffix == ".jsonl" else read_json(path)
        if isinstance(rows, dict) and isinstance(rows.get("posts"), list):
            rows = rows["posts"]
        require_fields(rows, ("key", "description", IMAGE_FIELDS), path)
        for i, row in enumerate(rows):
            where = f"{path}#{i}"
            report.read += 1
            image = next((row.get(f) for f in IMAGE_FIELDS if isinstance(row, dict) and row.get(f)), None)
            desc = row.get("description") if isinstance(row, dict) else None
            if not image or not isinstance(desc, str) or not row.get("key"):
                report.skip("missing_field", where)
                continue
            if any(w in desc for w in AD_WORDS):
                report.skip("advertising", where)
                continue
            text, tags = parse_instagram(desc)
            if not tags:
                report.skip("no_hashtags", where)
                continue
            rec = make_record(report, where, key=row["key"], texts=[text], hashtags=tags,
                              image=image if is_url(image) else path.parent / image,
                              category=row.get("category"), split=row.get("split"))
            if rec:
                records.append(rec)
    return records


def coco_files(data_dir: Path) -> list[Path]:
    """The captions JSONs of a COCO folder: in ``data_dir`` itself (the flat layout, or ``data_dir`` is the
    ``annotations/`` folder), else in ``data_dir/annotations/`` (the 2017 download layout)."""
    for folder in (data_dir, data_dir / "annotations"):
        files = sorted(folder.glob("*.json"))
        files = [p for p in files if "caption" in p.name] or files
        if files:
            return files
    raise FileNotFoundError(f"{data_dir}: no COCO captions *.json here or in {data_dir / 'annotations'} "
                            "(expected annotations/captions_train2017.json, annotations/captions_val2017.json)")


def coco_image(json_dir: Path, subset: str, name: str) -> Path:
    """Where a COCO image is: the first that exists of the candidate paths (else the first, reported missing).

    Next to an ``annotations/`` folder the images are in its parent's ``<subset>/`` (``train2017/``), else
    beside the JSON, in ``images/`` or in ``<subset>/`` there.
    """
    if json_dir.name == "annotations":
        root = json_dir.parent
        candidates = [root / subset / name, root / name, root / "images" / name, json_dir / name]
    else:
        candidates = [json_dir / name, json_dir / "images" / name, json_dir / subset / name]
    return next((c for c in candidates if c.exists()), candidates[0])


def load_coco(data_dir: Path, report: LoadReport) -> list[Record]:
    """COCO captions JSON files; several captions per image become ``texts``; hashtags are none.

    Layouts: ``data_dir/annotations/captions_{train,val}2017.json`` with the images in ``data_dir/train2017/``
    and ``data_dir/val2017/`` (the download), ``data_dir`` = that ``annotations/`` folder, or a flat folder
    with the JSONs and the images beside them, in ``images/`` or in ``<subset>/`` (``val2017/``). Splits: an
    image's own ``split`` field when it has one; else, when a ``captions_*train*`` file is loaded, its images
    are ``train`` and those of ``captions_*val*`` files ``test`` (:func:`load` then carves a validation set out
    of train, :func:`carve_validation`); anything else (a val file alone) gets the seeded 7:1:2 split. The key
    is ``<subset>/<image id>`` (``train2017/391895``).
    """
    files = coco_files(data_dir)
    has_train = any("train" in p.stem.lower() for p in files)
    records = []
    for path in files:
        doc = read_json(path)
        if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
            raise DataError(f"{path}: a COCO captions file needs top-level 'images' and 'annotations'")
        require_fields(doc["images"], ("id", "file_name"), f"{path} images")
        require_fields(doc["annotations"], ("image_id", "caption"), f"{path} annotations")
        caps: dict = {}
        for a in doc["annotations"]:
            if isinstance(a, dict) and isinstance(a.get("caption"), str):
                caps.setdefault(a.get("image_id"), []).append(a["caption"])
        subset = re.sub(r"^captions_", "", path.stem)
        stem = path.stem.lower()
        file_split = "train" if "train" in stem else "test" if has_train and "val" in stem else None
        for i, img in enumerate(doc["images"]):
            where = f"{path}#images[{i}]"
            report.read += 1
            if not isinstance(img, dict) or "file_name" not in img:
                report.skip("missing_field:file_name", where)
                continue
            image = coco_image(path.parent, subset, img["file_name"])
            rec = make_record(report, where, key=f"{subset}/{img['id']}", image=image,
                              texts=caps.get(img["id"], []), hashtags=[], split=img.get("split") or file_split)
            if rec:
                records.append(rec)
    return records


def karpathy_file(data_dir: Path) -> Path:
    """The Karpathy split file: `data_dir` itself, or the one ``dataset_*.json`` in it."""
    if data_dir.is_file():
        return data_dir
    files = sorted(data_dir.glob("dataset_*.json"))
    if len(files) > 1:
        raise DataError(f"{data_dir}: several Karpathy split files ({', '.join(p.name for p in files)}); "
                        "pass the one to use as data_dir (e.g. data_dir=" + str(files[0]) + ")")
    if not files:
        raise FileNotFoundError(f"{data_dir}: no Karpathy split file dataset_*.json "
                                "(dataset_flickr8k.json, dataset_flickr30k.json, dataset_coco.json)")
    return files[0]


def load_karpathy(data_dir: Path, report: LoadReport) -> list[Record]:
    """Karpathy's split files: ``{"images": [{"filepath", "filename", "split", "sentences": [{"raw",
    "tokens"}], ...}]}``, one image an entry.

    `data_dir` is the folder holding one ``dataset_*.json`` and the images, or the JSON file itself (its folder is
    then the images' root). An image is the first that exists of ``root/filepath/filename``,
    ``root/filename`` and ``root/<each folder in root>/filename`` (``Flicker8k_Dataset/``, ``Images/``,
    ``flickr30k-images/``, ``val2014/``, ...). ``split`` (:func:`normalize_split`): ``train`` and ``restval`` ->
    train, ``val`` -> val, ``test`` -> test. A sentence's text is its ``tokens`` joined by single spaces when it
    has them (so the ``whitespace`` tokenizer gives exactly Karpathy's tokens: lower case, no punctuation), else its
    ``raw``.
    The key is the image's ``cocoid``, else its ``imgid``, else its ``filename``.
    """
    path = karpathy_file(data_dir)
    root = path.parent
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise DataError(f"{path}: a Karpathy split file needs a top-level 'images' list")
    require_fields(doc["images"], ("filename", "sentences"), f"{path} images")
    folders = sorted(d for d in root.iterdir() if d.is_dir())
    records = []
    for i, img in enumerate(doc["images"]):
        where = f"{path}#images[{i}]"
        report.read += 1
        if not isinstance(img, dict) or not isinstance(img.get("filename"), str) or not img["filename"]:
            report.skip("missing_field:filename", where)
            continue
        name = img["filename"]
        candidates = ([root / img["filepath"] / name] if img.get("filepath") else []) + [root / name]
        image = next((c for c in candidates if c.exists()), None)
        image = image or next((d / name for d in folders if (d / name).exists()), candidates[0])
        texts = []
        for sent in img.get("sentences") or []:
            if not isinstance(sent, dict):
                continue
            tokens = sent.get("tokens")
            if isinstance(tokens, list) and tokens:
                texts.append(" ".join(str(t) for t in tokens))
            elif isinstance(sent.get("raw"), str):
                texts.append(sent["raw"])
        key = next(str(img[k]) for k in ("cocoid", "imgid", "filename") if img.get(k) is not None)
        rec = make_record(report, where, key=key, image=image, texts=texts, hashtags=[], split=img.get("split"))
        if rec:
            records.append(rec)
    return records
