"""The Flickr8k release (Hodosh, Young and Hockenmaier 2013) as its archives unpack, and its common re-packaging.

Two layouts are read (``dataset="flickr8k"``, ``data_dir`` = the folder holding them, or one level above):

- the official archives: ``Flickr8k_text/`` with ``Flickr8k.token.txt`` (``<image>#<n>\\t<caption>``, five raw
  captions an image) and the split lists ``Flickr_8k.{train,dev,test}Images.txt``; the photos in
  ``Flicker8k_Dataset/`` (the archive's own spelling) or ``Flickr8k_Dataset/``, also nested one level
  (``Flickr8k_Dataset/Flicker8k_Dataset/``) as unzipping the image archive into a folder of its name gives;
- the re-packaged copy: ``captions.txt`` (a CSV with the header ``image,caption``) beside ``Images/``.

Splits: the official lists (train / dev -> val / test) whenever they are found, in either layout; an image
named in no list is then skipped and counted (``not_in_split``). Without the lists every image gets the
seeded split (:func:`capkit.data.assign_splits`).

The release's own quirks are counted, each with its file and line: a line that is not ``<image>#<n><tab>text``
(``malformed_line``), an image name that is not a photo file name (``2258277193_586949ec62.jpg.1``:
``bad_image_name``) and captions of a photo that is not in the image folder (``missing_image``). The rest loads.

This module imports ``capkit.data`` only (records, the skip report, text decoding).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from capkit.data import LoadReport, Record, decode_text, make_record

TOKEN_FILE = "Flickr8k.token.txt"
CAPTIONS_CSV = "captions.txt"
IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images")
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}
IMAGE_NAME = re.compile(r"^[^/\\]+\.(jpe?g|png)$", re.IGNORECASE)


def _candidates(data_dir: Path) -> list[Path]:
    """``data_dir``, its sub-folders, and theirs: where the archives' folders may sit (one or two levels)."""
    subs = sorted(p for p in data_dir.iterdir() if p.is_dir()) if data_dir.is_dir() else []
    return [data_dir] + subs + [q for p in subs for q in sorted(p.iterdir()) if q.is_dir()]


def find_captions(data_dir: Path) -> tuple[Path, str]:
    """The captions file and its kind (``"token"``: the official ``Flickr8k.token.txt``; ``"csv"``:
    ``captions.txt``), the official file first."""
    folders = _candidates(data_dir)
    for kind, name in (("token", TOKEN_FILE), ("csv", CAPTIONS_CSV)):
        for d in folders:
            if (d / name).is_file():
                return d / name, kind
    raise FileNotFoundError(
        f"{data_dir}: no Flickr8k captions found: expected Flickr8k_text/{TOKEN_FILE} (the official text archive) "
        f"or {CAPTIONS_CSV} beside Images/ (the re-packaged copy), in this folder or one level below")


def find_images(data_dir: Path, captions: Path) -> Path:
    """The photo folder: one of IMAGE_DIRS beside the captions' folder or under ``data_dir`` (nested once too);
    the folder holding the most photos wins when several exist."""
    found = []
    for d in [captions.parent, captions.parent.parent] + _candidates(data_dir):
        for name in IMAGE_DIRS:
            p = d / name
            if p.is_dir() and p not in found:
                found.append(p)
    if not found:
        raise FileNotFoundError(f"{data_dir}: no photo folder ({' / '.join(IMAGE_DIRS)}) beside {captions} or "
                                f"under {data_dir}")
    return max(found, key=lambda p: sum(1 for _ in p.glob("*.jp*g")))


def read_split_lists(folder: Path, report: LoadReport) -> dict[str, str]:
    """image name -> split from the official lists in ``folder`` ({} when none is there). A name in two lists
    keeps the first (train, then val, then test); the second is counted as ``split_conflict``."""
    split_of: dict[str, str] = {}
    for split, name in SPLIT_FILES.items():
        path = folder / name
        if not path.is_file():
            continue
        for n, line in enumerate(decode_text(path.read_bytes(), path).splitlines(), 1):
            image = line.strip()
            if not image:
                continue
            if image in split_of and split_of[image] != split:
                report.skip("split_conflict", f"{path}:{n} ({image} is already in {split_of[image]})")
                continue
            split_of[image] = split
    return split_of


def caption_lines(path: Path, kind: str):
    """(line number, image name or None, caption) for each caption line of the file (None: malformed)."""
    content = decode_text(path.read_bytes(), path)
    if kind == "csv":
        reader = csv.reader(io.StringIO(content))
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["image", "caption"]:
            raise ValueError(f"{path}: expected the header 'image,caption', found {header!r}")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            # the caption may hold commas: everything after the first cell is the caption
            yield reader.line_num, (row[0].strip() if len(row) >= 2 else None), ",".join(row[1:])
        return
    for n, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        name, tab, caption = line.partition("\t")
        image, hash_, number = name.strip().rpartition("#")
        if not tab or not hash_ or not number.strip().isdigit():
            yield n, None, line
        else:
            yield n, image, caption


def load_flickr8k(data_dir: Path, report: LoadReport) -> list[Record]:
    """One record an image, keyed by its file name, with its captions in file order (all of them: a caption
    written twice for a photo stays twice, as the field's scorers count it); see the module notes for layouts,
    splits and what is skipped. Each caption line is one line read; the lines after an image's first count as
    merged into its record."""
    captions, kind = find_captions(data_dir)
    images = find_images(data_dir, captions)
    split_of = read_split_lists(captions.parent, report)
    present = {p.name for p in images.iterdir()}
    records: dict[str, Record] = {}
    for n, image, caption in caption_lines(captions, kind):
        where = f"{captions}:{n}"
        report.read += 1
        if image is None:
            report.skip("malformed_line", where)
            continue
        if not IMAGE_NAME.match(image):
            report.skip("bad_image_name", f"{where} ({image!r})")
            continue
        if image not in present:
            report.skip("missing_image", f"{where} ({images / image})")
            continue
        split = split_of.get(image)
        if split_of and split is None:
            report.skip("not_in_split", f"{where} ({image} is in none of the split lists)")
            continue
        if image in records:
            texts = make_record(report, where, key=image, image=images / image, texts=[caption], hashtags=[])
            if texts:  # (else counted: a caption without words)
                records[image].texts += texts.texts
                report.merged += 1
            continue
        rec = make_record(report, where, key=image, image=images / image, texts=[caption], hashtags=[],
                          split=split)
        if rec:
            records[image] = rec
    return list(records.values())
