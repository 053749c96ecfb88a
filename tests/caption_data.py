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
