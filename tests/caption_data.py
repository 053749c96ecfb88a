"""Small captioning datasets in the field's layouts, built on disk with PIL (used by test_data and
test_notebooks): COCO 2017 (``annotations/`` beside ``train2017/`` and ``val2017/``) and a Karpathy split file
with its images in a subfolder."""

import json

from PIL import Image

COLORS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 200), "yellow": (220, 200, 40)}
THINGS = ["dog", "cat", "boat", "bird"]


def picture(path, i: int, size=(48, 40)) -> None:
    """A tiny JPEG whose colour follows `i` (what its captions say)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color = list(COLORS.values())[i % len(COLORS)]
    Image.new("RGB", size, color).save(path, "JPEG")


def captions(i: int, n: int = 5) -> list[str]:
    """`n` different English captions for picture `i`."""
    color, thing = list(COLORS)[i % len(COLORS)], THINGS[i % len(THINGS)]
    forms = ["A {c} {t} in the picture.", "The {t} is {c}.", "A photo of a {c} {t}.", "Some {c} {t} here.",
             "This is a {c} {t}."]
    return [forms[k % len(forms)].format(c=color, t=thing) for k in range(n)]


def coco_2017(root, n_train: int = 16, n_val: int = 4, missing_val: int = 1) -> dict:
    """``root/annotations/captions_{train,val}2017.json`` (5 captions an image) with the images in
    ``root/train2017/`` and ``root/val2017/``; the last `missing_val` val images are listed but have no file.
    A non-caption annotation file lies beside them, as in the download. Returns the expected counts."""
    ann = root / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    next_id = 1
    for subset, n, missing in (("train2017", n_train, 0), ("val2017", n_val, missing_val)):
        images, annotations = [], []
        for k in range(n):
            image_id = 100 + next_id
            name = f"{image_id:012d}.jpg"
            images.append({"id": image_id, "file_name": name, "width": 48, "height": 40})
            if k < n - missing:
                picture(root / subset / name, next_id)
            for c in captions(next_id):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "caption": c})
            next_id += 1
        (ann / f"captions_{subset}.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    (ann / "instances_val2017.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    n_carve = round(n_train / 8)
    return {"read": n_train + n_val, "missing_image": missing_val,
            "splits": {"train": n_train - n_carve, "val": n_carve, "test": n_val - missing_val}}


KARPATHY_SPLITS = ["train"] * 8 + ["restval"] * 2 + ["val"] * 3 + ["test"] * 3


def karpathy(root, name: str = "dataset_flickr8k.json", folder: str = "Flicker8k_Dataset", missing: int = 1) -> dict:
    """A Karpathy split file ``root/<name>`` for 16 images in ``root/<folder>/`` (Flickr style: no filepath),
    all four split values; each image has 5 sentences with ``raw`` and ``tokens``, except that image 1's first
    sentence has no tokens (its raw text is used). The last `missing` images have no file. Returns the expected
    counts."""
    images = []
    for i, split in enumerate(KARPATHY_SPLITS):
        filename = f"{1000 + i}_{i:04x}.jpg"
        if i < len(KARPATHY_SPLITS) - missing:
            picture(root / folder / filename, i)
        sentences = []
        for raw in captions(i):
            tokens = raw.lower().rstrip(".").split()
            sentences.append({"raw": raw, "tokens": tokens, "imgid": i})
        if i == 1:
            del sentences[0]["tokens"]
        images.append({"filename": filename, "imgid": i, "split": split, "sentences": sentences,
                       "sentids": list(range(5 * i, 5 * i + 5))})
    (root / name).write_text(json.dumps({"images": images, "dataset": "flickr8k"}))
    counts = {"train": 10, "val": 3, "test": 3}
    last = {"train": "train", "restval": "train", "val": "val", "test": "test"}[KARPATHY_SPLITS[-1]]
    counts[last] -= missing
    return {"read": len(images), "missing_image": missing, "splits": counts}


def flickr8k_release(root, layout: str = "official", n: int = 12) -> dict:
    """The Flickr8k release in miniature, with its quirks: `n` photos with five captions each (image 0's fourth
    caption repeats its first, as a few real ones do).

    ``official``: ``Flickr8k_text/Flickr8k.token.txt`` (``<image>#<k><tab>caption``) and the three split lists
    (n - 5 train, 2 dev, 2 test; one photo with captions is in no list), photos in ``Flicker8k_Dataset/``;
    ``nested``: the same with the photos one level down, ``Flickr8k_Dataset/Flicker8k_Dataset/``, and the whole
    release inside ``root/Flickr8k/``; ``csv``: ``captions.txt`` (``image,caption``, commas inside captions
    quoted) beside ``Images/``, no split lists. Quirks: the captions of a photo that is not there (4 lines), a
    ``.jpg.1`` name and, in the token file, a line without a tab. Returns the expected counts."""
    names = [f"{3000 + i}_{i:04x}a.jpg" for i in range(n)]
    base = root / "Flickr8k" if layout == "nested" else root
    photos = {"official": base / "Flicker8k_Dataset", "nested": base / "Flickr8k_Dataset" / "Flicker8k_Dataset",
              "csv": base / "Images"}[layout]
    for i, name in enumerate(names):
        picture(photos / name, i)
    caps = {name: captions(i) for i, name in enumerate(names)}
    caps[names[0]][3] = caps[names[0]][0]
    caps[names[1]][2] = "A dog, a cat, and a boat."
    lines = [(name, c) for name in names for c in caps[name]]
    missing = "9999_ffff.jpg"
    lines[7:7] = [(missing, c) for c in captions(3, 4)] + [("2258277193_586949ec62.jpg.1", "people waiting")]
    if layout == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["image", "caption"])
        writer.writerows(lines)
        (base / "captions.txt").write_text(buf.getvalue())
        return {"read": len(lines), "records": n,
                "skipped": {"missing_image": 4, "bad_image_name": 1}}
    text_dir = base / "Flickr8k_text"
    text_dir.mkdir(parents=True, exist_ok=True)
    numbered, k = [], {}
    for name, c in lines:
        k[name] = k.get(name, -1) + 1
        numbered.append(f"{name}#{k[name]}\t{c}")
    numbered.insert(20, "this line has no tab")
    (text_dir / "Flickr8k.token.txt").write_text("\n".join(numbered) + "\n")
    splits = {"train": names[: n - 5], "dev": names[n - 5: n - 3], "test": names[n - 3: n - 1]}  # last: no list
    for split, members in splits.items():
        (text_dir / f"Flickr_8k.{split}Images.txt").write_text("\n".join(members) + "\n")
    return {"read": len(numbered), "records": n - 1, "splits": {"train": n - 5, "val": 2, "test": 2},
            "skipped": {"missing_image": 4, "bad_image_name": 1, "malformed_line": 1, "not_in_split": 5},
            "in_no_list": names[-1]}
