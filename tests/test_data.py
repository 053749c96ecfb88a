"""The data layer: every loader on small fixtures built here, and every bad-input case."""

import json
import unicodedata
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from capkit import data as D
from capkit import images, sources, store, targets

from caption_data import coco_2017, karpathy


def jpeg(path, size=(64, 48), color=(200, 30, 30), mode="RGB", fmt="JPEG", **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, color)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, fmt, **save)
    return path


# ----------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_read_json_any_encoding(tmp_path, encoding):
    obj = [{"img_name": "a.jpg", "text": "바다가 예뻐요 😍", "hashtag": ["#바다"]}]
    p = tmp_path / "x.json"
    p.write_bytes(json.dumps(obj, ensure_ascii=False).encode(encoding))
    assert store.read_json(p) == obj


def test_not_json_names_file_and_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[{"img_name": "a.jpg",\n "text": }]')
    with pytest.raises(D.DataError, match=r"bad\.json.*line 2"):
        store.read_json(p)


def test_jsonl_bad_line_names_record(tmp_path):
    p = tmp_path / "manifest.jsonl"
    p.write_text('{"image": "a.jpg", "text": "하나"}\n{"image": "b.jpg", "text": \n')
    with pytest.raises(D.DataError, match=r"manifest\.jsonl: record at line 2"):
        store.read_jsonl(p)


# ----------------------------------------------------------------------------- KTS


def kts_tree(root, split_dirs=("train", "valid", "test"), encoding="utf-16"):
    """The KTS layout: <split>/<group>/<category>/<category>.json + images/ (UTF-16 as released)."""
    n = 0
    for split in split_dirs:
        for group, cat in (("nature-scene", "beach"), ("person-made", "palace")):
            folder = root / split / group / cat
            rows = []
            for i in range(3):
                name = f"{cat}_{split}_{i}.jpg"
                jpeg(folder / "images" / name, color=(i * 40, 100, 200))
                rows.append({"img_name": name, "text": f"{cat} 여행 {i}번째 사진이에요", "hashtag": ["#여행", f"#{cat}"],
                             "likes": i})
                n += 1
            (folder / f"{cat}.json").write_bytes(json.dumps(rows, ensure_ascii=False).encode(encoding))
    return n


def test_kts_with_split_folders(tmp_path):
    n = kts_tree(tmp_path)
    records, report = D.load("kts", tmp_path)
    assert len(records) == n == report.kept
    assert {r.category for r in records} == {"beach", "palace"}
    assert D.split_counts(records) == {"train": 6, "val": 6, "test": 6}  # valid -> val
    r = next(r for r in records if r.key == "beach/beach_train_1.jpg")
    assert r.texts == ["beach 여행 1번째 사진이에요"] and r.hashtags == ["여행", "beach"]
    assert r.image.endswith("train/nature-scene/beach/images/beach_train_1.jpg")


def test_kts_total_gets_seeded_split(tmp_path):
    kts_tree(tmp_path, split_dirs=("total",), encoding="utf-8")
    a, _ = D.load("kts", tmp_path, seed=1)
    b, _ = D.load("kts", tmp_path, seed=1)
    assert [(r.key, r.split) for r in a] == [(r.key, r.split) for r in b]
    assert all(r.split in D.SPLITS for r in a)


def test_kts_field_missing_everywhere_is_an_error(tmp_path):
    folder = tmp_path / "total" / "nature-scene" / "lake"
    folder.mkdir(parents=True)
    (folder / "lake.json").write_text(json.dumps([{"image": "a.jpg", "text": "호수"}]))
    with pytest.raises(D.DataError, match=r"lake\.json.*'img_name'.*every record"):
        D.load("kts", tmp_path)


def test_kts_field_missing_in_one_record_is_skipped(tmp_path):
    folder = tmp_path / "total" / "nature-scene" / "lake"
    jpeg(folder / "images" / "a.jpg")
    (folder / "lake.json").write_text(json.dumps([{"img_name": "a.jpg", "text": "호수 산책"}, {"text": "이름 없음"}]))
    records, report = D.load("kts", tmp_path)
    assert len(records) == 1 and report.skipped["missing_field:img_name"] == 1
    assert "lake.json#1" in report.examples["missing_field:img_name"][0]


# ----------------------------------------------------------------------------- instagram


def test_instagram_parsing_filters_and_merges(tmp_path):
    for k in "abcdef":
        jpeg(tmp_path / "img" / f"{k}.jpg")
    posts = [
        {"key": "a", "img_path": "img/a.jpg", "description": "노을 지는 바다 🌅 #부산 #바다 #sunset #노을"},
        {"key": "b", "img_path": "img/b.jpg", "description": "신상 입고! 구매 문의는 DM #쇼핑 #데일리룩"},  # advertising
        {"key": "c", "img_path": "img/c.jpg", "description": "해시태그 없는 글"},  # no hashtags
        {"key": "a", "img_path": "img/a.jpg", "description": "또 왔다 #바다 #중복"},  # same key: merged
        {"key": "d", "img_path": "img/d.jpg", "description": "#only #english"},  # no Korean hashtags
        {"key": "e", "img_path": "img/e.jpg", "description": "🥰🥰 #카페 #커피"},  # emoji-only text: hashtags kept
        {"key": "a", "img_path": "img/a.jpg", "description": "노을 지는 바다 🌅 #부산 #바다 #sunset #노을"},  # crawled twice
    ]
    (tmp_path / "posts.json").write_text(json.dumps(posts, ensure_ascii=False))
    records, report = D.load("instagram", tmp_path)
    by_key = {r.key: r for r in records}
    assert set(by_key) == {"a", "e"}
    assert by_key["a"].texts == ["노을 지는 바다 🌅", "또 왔다"]
    assert by_key["a"].hashtags == ["부산", "바다", "노을", "중복"]
    assert by_key["e"].texts == [] and by_key["e"].hashtags == ["카페", "커피"]
    assert report.skipped == {"advertising": 1, "no_hashtags": 2, "duplicate": 1}
    assert "posts.json#6" in report.examples["duplicate"][0]
    assert report.read == 7 and report.kept == 3 and report.merged == 1 and report.records == len(records) == 2


def test_instagram_url_images_download_with_file_urls(tmp_path):
    src = jpeg(tmp_path / "remote" / "p.jpg")
    data = tmp_path / "ig"
    data.mkdir()
    posts = [{"key": "p1", "img_url": src.as_uri(), "description": "카페 투어 #카페"},
             {"key": "p2", "img_url": (tmp_path / "remote" / "gone.jpg").as_uri(), "description": "없는 사진 #실종"}]
    (data / "posts.jsonl").write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in posts))
    records, report = D.load("instagram", data)
    assert records == [] and report.skipped["image_not_downloaded"] == 2
    records, report = D.load("instagram", data, download=True)
    assert [r.key for r in records] == ["p1"] and report.skipped["missing_image"] == 1
    assert (data / "images").is_dir() and Image.open(records[0].image).size == (64, 48)


# ----------------------------------------------------------------------------- coco


def test_coco_several_captions(tmp_path):
    jpeg(tmp_path / "val2017" / "000001.jpg")
    jpeg(tmp_path / "val2017" / "000002.jpg")
    doc = {"images": [{"id": 1, "file_name": "000001.jpg"}, {"id": 2, "file_name": "000002.jpg"}],
           "annotations": [{"image_id": 1, "caption": "A dog on a beach."},
                           {"image_id": 1, "caption": "A brown dog runs."},
                           {"image_id": 2, "caption": "   "}]}
    (tmp_path / "captions_val2017.json").write_text(json.dumps(doc))
    records, report = D.load("coco", tmp_path)
    assert [r.texts for r in records] == [["A dog on a beach.", "A brown dog runs."]]
    assert report.skipped["no_text_or_hashtags"] == 1
    assert records[0].image.endswith("val2017/000001.jpg")


def test_coco_missing_annotations_key(tmp_path):
    (tmp_path / "captions_x.json").write_text(json.dumps({"images": []}))
    with pytest.raises(D.DataError, match="captions_x.json.*annotations"):
        D.load("coco", tmp_path)


def test_coco_2017_download_layout(tmp_path):
    """annotations/ beside train2017/ and val2017/: train -> train (minus a seeded 1/8 for val), val -> test."""
    want = coco_2017(tmp_path)
    records, report = D.load("coco", tmp_path, seed=0)
    assert report.read == want["read"] == 20
    assert report.skipped == {"missing_image": want["missing_image"]}
    assert "val2017/000000000120.jpg" in report.examples["missing_image"][0]
    assert D.split_counts(records) == want["splits"] == {"train": 14, "val": 2, "test": 3}
    assert all(len(r.texts) == 5 and r.hashtags == [] for r in records)
    by_key = {r.key: r for r in records}
    assert by_key["train2017/101"].image == str(tmp_path / "train2017" / "000000000101.jpg")
    assert by_key["train2017/101"].texts[0] == "A green cat in the picture."
    assert all(r.key.startswith("train2017/") for r in records if r.split in ("train", "val"))
    assert all(r.key.startswith("val2017/") for r in records if r.split == "test")
    # the same seed gives the same validation images; other seeds choose others
    val = {r.key for r in records if r.split == "val"}
    assert val == {r.key for r in D.load("coco", tmp_path, seed=0)[0] if r.split == "val"}
    assert any({r.key for r in D.load("coco", tmp_path, seed=s)[0] if r.split == "val"} != val for s in (1, 2, 3))
    # data_dir may also be the annotations/ folder itself: the images are then in its parent's subset folders
    again, report2 = D.load("coco", tmp_path / "annotations", seed=0)
    assert [(r.key, r.image, r.split, r.texts) for r in again] == [(r.key, r.image, r.split, r.texts) for r in records]
    assert report2.skipped == {"missing_image": 1}


def test_coco_without_captions_names_both_places(tmp_path):
    (tmp_path / "annotations").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no COCO captions.*annotations"):
        D.load("coco", tmp_path)


def test_carve_validation_rule():
    recs = [D.Record(key=f"k{i:03d}", image="x", texts=["t"], split="train") for i in range(100)]
    assert D.carve_validation(recs, seed=0) == 12  # round(100 / 8)
    assert D.split_counts(recs) == {"train": 88, "val": 12, "test": 0}
    many = [D.Record(key=str(i), image="x", split="train") for i in range(50_000)]
    assert D.carve_validation(many, seed=0) == 5000  # capped, as COCO's 118,287 training images


def test_karpathy_splits_and_tokens(tmp_path):
    want = karpathy(tmp_path)
    records, report = D.load("karpathy", tmp_path)
    assert report.read == 16 and report.skipped == {"missing_image": 1}
    assert D.split_counts(records) == want["splits"] == {"train": 10, "val": 3, "test": 2}  # restval joined train
    by_key = {r.key: r for r in records}  # key: imgid
    assert {by_key["8"].split, by_key["9"].split} == {"train"}  # the two restval images
    assert by_key["0"].image == str(tmp_path / "Flicker8k_Dataset" / "1000_0000.jpg")
    assert by_key["0"].texts == ["a red dog in the picture", "the dog is red", "a photo of a red dog",
                                 "some red dog here", "this is a red dog"]  # the tokens, joined by spaces
    assert by_key["1"].texts[0] == "A green cat in the picture."  # no tokens: raw
    from capkit import text as T

    assert T.get_tokenizer("whitespace")(by_key["0"].texts[0]) == ["a", "red", "dog", "in", "the", "picture"]
    # the JSON file itself as data_dir gives the same records
    again, _ = D.load("karpathy", tmp_path / "dataset_flickr8k.json")
    assert [(r.key, r.image, r.split, r.texts) for r in again] == [(r.key, r.image, r.split, r.texts) for r in records]


def test_karpathy_coco_filepath_and_several_files(tmp_path):
    for name in ("COCO_val2014_000000000042.jpg", "COCO_val2014_000000000043.jpg"):
        jpeg(tmp_path / "val2014" / name)
    doc = {"images": [
        {"filepath": "val2014", "filename": "COCO_val2014_000000000042.jpg", "cocoid": 42, "imgid": 0,
         "split": "restval", "sentences": [{"raw": "A cat.", "tokens": ["a", "cat"]}]},
        {"filepath": "val2014", "filename": "COCO_val2014_000000000043.jpg", "cocoid": 43, "imgid": 1,
         "split": "test", "sentences": [{"raw": "A dog.", "tokens": ["a", "dog"]}]}]}
    (tmp_path / "dataset_coco.json").write_text(json.dumps(doc))
    records, _ = D.load("karpathy", tmp_path)
    assert [(r.key, r.split, r.texts) for r in records] == [("42", "train", ["a cat"]), ("43", "test", ["a dog"])]
    assert records[0].image == str(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg")
    (tmp_path / "dataset_flickr8k.json").write_text(json.dumps({"images": []}))
    with pytest.raises(D.DataError, match=r"dataset_coco\.json, dataset_flickr8k\.json.*data_dir"):
        D.load("karpathy", tmp_path)
    records, _ = D.load("karpathy", tmp_path / "dataset_coco.json")
    assert len(records) == 2


# ----------------------------------------------------------------------------- several lines for one image


def test_manifest_one_line_per_caption(tmp_path):
    """Flickr-style: 5 lines for an image make one record with 5 texts; only an exact repeat is dropped."""
    jpeg(tmp_path / "a.jpg")
    jpeg(tmp_path / "b.jpg", color=(0, 0, 255))
    lines = [{"image": "a.jpg", "text": f"바다 사진 {i}번째 설명", "hashtags": ["바다", f"태그{i % 2}"]} for i in range(5)]
    lines += [
        {"image": "b.jpg", "text": "파란 하늘", "hashtags": ["하늘"]},
        {"image": "a.jpg", "text": "바다 사진 0번째 설명", "hashtags": ["바다", "태그0"]},  # line 1 again: duplicate
        {"image": "b.jpg", "key": "a.jpg", "text": "다른 사진", "hashtags": []},  # key a.jpg, other image
        {"image": "b.jpg", "text": "파란 하늘", "hashtags": ["하늘", "맑음"]},  # same text, one more tag: merged
    ]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in lines))
    records, report = D.load("manifest", tmp_path)
    by_key = {r.key: r for r in records}
    assert set(by_key) == {"a.jpg", "b.jpg"}
    assert by_key["a.jpg"].texts == [f"바다 사진 {i}번째 설명" for i in range(5)]
    assert by_key["a.jpg"].hashtags == ["바다", "태그0", "태그1"]
    assert by_key["b.jpg"].texts == ["파란 하늘"] and by_key["b.jpg"].hashtags == ["하늘", "맑음"]
    assert report.read == 9 and report.skipped == {"duplicate": 1, "key_conflict": 1}
    assert report.kept == 7 and report.merged == 5 and report.records == len(records) == 2
    assert "manifest.jsonl#7" in report.examples["duplicate"][0]
    conflict = report.examples["key_conflict"][0]
    assert "manifest.jsonl#8" in conflict and "b.jpg" in conflict and "a.jpg" in conflict
    assert "5 merged" in str(report) and "2 records" in str(report)
    saved = json.loads(D.save_report(report, records, tmp_path / "run" / "data_report.json").read_text())
    assert saved["merged"] == 5 and saved["records"] == 2 and saved["skipped"] == {"duplicate": 1, "key_conflict": 1}


def test_flickr_captions_csv(tmp_path):
    """Flickr8k's captions.txt (image,caption, one line per caption) read as manifest.csv."""
    jpeg(tmp_path / "Images" / "1000.jpg")
    rows = "".join(f"Images/1000.jpg,A child in a pink dress number {i} .\n" for i in range(5))
    (tmp_path / "manifest.csv").write_text("image,caption\n" + rows)
    records, report = D.load("manifest", tmp_path)
    assert len(records) == 1 and len(records[0].texts) == 5 and report.merged == 4


def test_kts_repeated_image_is_merged(tmp_path):
    folder = tmp_path / "total" / "nature-scene" / "lake"
    jpeg(folder / "images" / "a.jpg")
    jpeg(folder / "images" / "b.jpg")
    rows = [{"img_name": "a.jpg", "text": "호수 산책", "hashtag": ["#호수", "#산책"]},
            {"img_name": "b.jpg", "text": "물안개", "hashtag": ["#호수"]},
            {"img_name": "a.jpg", "text": "호수 산책 두 번째", "hashtag": ["#호수", "#가을"]},  # same image: merged
            {"img_name": "a.jpg", "text": "호수 산책", "hashtag": ["#호수", "#산책"]}]  # exact repeat
    (folder / "lake.json").write_text(json.dumps(rows, ensure_ascii=False))
    records, report = D.load("kts", tmp_path)
    a = next(r for r in records if r.key == "lake/a.jpg")
    assert a.texts == ["호수 산책", "호수 산책 두 번째"] and a.hashtags == ["호수", "산책", "가을"]
    assert report.read == 4 and report.merged == 1 and report.skipped == {"duplicate": 1} and len(records) == 2
    assert "lake.json#3" in report.examples["duplicate"][0]


# ----------------------------------------------------------------------------- manifest


def test_manifest_jsonl_and_csv_agree(tmp_path):
    jpeg(tmp_path / "a.jpg")
    jpeg(tmp_path / "b.jpg")
    rows = [{"image": "a.jpg", "texts": ["첫 번째 글", "두 번째 글"], "hashtags": ["#하나", "둘"], "split": "train",
             "category": "park"},
            {"image": "b.jpg", "text": "그냥 글", "hashtags": "#셋 #넷", "split": "valid"}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    j, _ = D.load("manifest", tmp_path)
    (tmp_path / "manifest.jsonl").unlink()
    with open(tmp_path / "manifest.csv", "w", encoding="utf-8-sig", newline="") as f:
        f.write("image,text,hashtags,split,category\n")
        f.write('a.jpg,"[""첫 번째 글"", ""두 번째 글""]","[""#하나"", ""둘""]",train,park\n')
        f.write("b.jpg,그냥 글,#셋 #넷,valid,\n")
    c, _ = D.load("manifest", tmp_path)
    assert [(r.texts, r.hashtags, r.split, r.category) for r in j] == [(r.texts, r.hashtags, r.split, r.category) for r in c]
    assert j[0].texts == ["첫 번째 글", "두 번째 글"] and j[0].hashtags == ["하나", "둘"]
    assert j[1].hashtags == ["셋", "넷"] and j[1].split == "val"


def test_manifest_without_split_gets_7_1_2(tmp_path):
    rows = []
    for i in range(100):
        jpeg(tmp_path / f"{i}.jpg", size=(8, 8))
        rows.append({"image": f"{i}.jpg", "text": f"글 {i}"})
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    records, report = D.load("manifest", tmp_path, seed=3)
    assert report.splits == {"train": 70, "val": 10, "test": 20}
    other, _ = D.load("manifest", tmp_path, seed=4)
    assert [r.split for r in records] != [r.split for r in other]


def test_one_split_rule_for_every_source():
    """`split_names`: 7:1:2 of a seeded shuffle (train and val each rounded, test the rest), fixed by the tag; the
    sample painter and `assign_splits` both use it."""
    assert Counter(D.split_names(200, "t")) == {"train": 140, "val": 20, "test": 40}
    assert Counter(D.split_names(8, "t")) == {"train": 6, "val": 1, "test": 1}
    assert D.split_names(200, "t") == D.split_names(200, "t") != D.split_names(200, "u")
    assert D.split_names(0, "t") == []
    # assign_splits: the rule per category, the records in key order, the tag f"{seed}/{category}"
    recs = [D.Record(key=f"k{i}", image="x", texts=["t"], category="c") for i in (3, 1, 7, 5, 0, 2, 6, 4)]
    D.assign_splits(recs, seed=2)
    by_key = {r.key: r.split for r in recs}
    assert [by_key[f"k{i}"] for i in range(8)] == D.split_names(8, "2/c")
    # split names as the sources write them (KTS's valid/ folder, Karpathy's restval, ...)
    assert [D.normalize_split(v) for v in ("Valid", " validation", "dev", "restval", "TEST", "x", None, "")] == \
        ["val", "val", "val", "train", "test", None, None, None]


# ----------------------------------------------------------------------------- bad input


def bad_image_folder(tmp_path):
    """One image for every case: usable ones to normalise and unusable ones to skip."""
    d = tmp_path
    jpeg(d / "ok.jpg")
    jpeg(d / "gray.png", mode="L", fmt="PNG")
    jpeg(d / "cmyk.jpg", mode="CMYK")
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(d / "rgba.png")  # fully transparent red -> white
    jpeg(d / "palette.gif", mode="P", fmt="GIF")
    Image.fromarray((np.arange(400).reshape(20, 20) * 100).astype(np.uint16)).save(d / "gray16.png")
    # EXIF orientation 6 (rotate 90 clockwise): stored 64x48 -> shown 48x64
    ex = Image.Exif()
    ex[0x0112] = 6
    jpeg(d / "rotated.jpg", exif=ex.tobytes())
    (d / "empty.jpg").write_bytes(b"")
    full = (d / "ok.jpg").read_bytes()
    big = Image.fromarray((np.random.default_rng(0).random((300, 300, 3)) * 255).astype(np.uint8))
    big.save(d / "big.jpg", quality=95)
    (d / "truncated.jpg").write_bytes((d / "big.jpg").read_bytes()[:5000])
    (d / "corrupt.jpg").write_bytes(b"this is not an image at all" + full[200:400])
    # a decompression bomb: a tiny PNG whose header claims 20000 x 20000 pixels
    Image.new("1", (20000, 20000)).save(d / "bomb.png")
    rows = [
        {"image": "ok.jpg", "text": "정상"}, {"image": "gray.png", "text": "흑백"},
        {"image": "cmyk.jpg", "text": "씨엠와이케이"}, {"image": "rgba.png", "text": "투명"},
        {"image": "palette.gif", "text": "팔레트"}, {"image": "gray16.png", "text": "16비트"},
        {"image": "rotated.jpg", "text": "회전"},
        {"image": "missing.jpg", "text": "없음"}, {"image": "empty.jpg", "text": "빈 파일"},
        {"image": "truncated.jpg", "text": "잘림"}, {"image": "corrupt.jpg", "text": "깨짐"},
        {"image": "bomb.png", "text": "폭탄"},
        {"image": "ok.jpg", "key": "no-text", "text": "😍🔥✨"},  # emoji-only, no hashtags
        {"image": "ok.jpg", "key": "blank", "text": "   ", "hashtags": []},
        {"image": "ok.jpg", "key": "tags-only", "hashtags": ["여행"]},
        {"text": "이미지 필드 없음"},
    ]
    (d / "manifest.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    return d


def test_bad_inputs_are_skipped_and_counted(tmp_path):
    records, report = D.load("manifest", bad_image_folder(tmp_path))
    assert report.skipped == {
        "missing_image": 1, "empty_image": 1, "truncated_image": 1, "corrupt_image": 1, "decompression_bomb": 1,
        "no_text_or_hashtags": 2, "missing_field:image": 1,
    }
    assert report.read == 16 and report.kept == len(records) == 8
    assert "truncated.jpg" in report.examples["truncated_image"][0]
    assert report.normalised["exif_rotated"] == 1 and report.normalised["mode_CMYK"] == 1
    tags_only = next(r for r in records if r.key == "tags-only")
    assert tags_only.texts == [] and tags_only.hashtags == ["여행"]
    assert len(targets.keep(records, "text")) == 7
    assert "decompression_bomb" in str(report)


def test_usable_images_are_normalised(tmp_path):
    d = bad_image_folder(tmp_path)
    for name in ("gray.png", "cmyk.jpg", "rgba.png", "palette.gif", "gray16.png", "rotated.jpg"):
        img = images.open_image(d / name)
        assert img.mode == "RGB", name
    assert images.open_image(d / "rotated.jpg").size == (48, 64)  # EXIF orientation applied
    assert images.open_image(d / "rgba.png").getpixel((5, 5)) == (255, 255, 255)  # transparent -> white
    g16 = np.asarray(images.open_image(d / "gray16.png"))
    assert g16.max() == 255 and g16.min() == 0


@pytest.mark.parametrize("name,reason", [("missing.jpg", "missing_image"), ("empty.jpg", "empty_image"),
                                         ("truncated.jpg", "truncated_image"), ("corrupt.jpg", "corrupt_image"),
                                         ("bomb.png", "decompression_bomb")])
def test_open_image_reasons(tmp_path, name, reason):
    d = bad_image_folder(tmp_path)
    with pytest.raises(images.BadImage) as e:
        images.open_image(d / name)
    assert e.value.reason == reason and name in str(e.value)


def test_hashtag_and_text_helpers():
    assert D.normalize_hashtags("#부산 #바다! #부산 #Seoul") == ["부산", "바다", "seoul"]
    assert D.normalize_hashtags("부산 바다") == ["부산", "바다"]
    assert D.normalize_hashtags(["#여행", " 여행 ", "", None, "#"]) == ["여행"]
    # whole tags, NFC, lower case, no repeats: an entry holding several tags gives each of them
    tags = ["#부산", " 해운대 ", "#Travel", "#travel", "", "#", "#부산#맛집", unicodedata.normalize("NFD", "#바다")]
    assert D.normalize_hashtags(tags) == ["부산", "해운대", "travel", "맛집", "바다"]
    assert D.normalize_hashtags(["#먹스타그램! #맛스타그램"]) == ["먹스타그램", "맛스타그램"]
    assert D.normalize_hashtags(None) == []
    assert D.normalize_hashtags(D.normalize_hashtags(tags)) == D.normalize_hashtags(tags)
    assert not D.has_words("😍🔥 ✨ !!") and D.has_words("ㅋㅋ") and D.has_words("2024")
    text, tags = sources.parse_instagram("오늘은 #카페 에서 라떼 ☕️ #라떼아트 #coffee")
    assert text == "오늘은 에서 라떼 ☕️" and tags == ["카페", "라떼아트"]


def test_subsample_is_deterministic_and_per_split(tmp_path):
    recs = [D.Record(key=f"k{i}", image="x", texts=["t"], split=D.SPLITS[i % 3]) for i in range(60)]
    a = D.subsample(recs, {"train": 5, "val": 2, "test": 3}, seed=0)
    b = D.subsample(list(reversed(recs)), {"train": 5, "val": 2, "test": 3}, seed=0)
    assert [r.key for r in a] == [r.key for r in b]
    assert D.split_counts(a) == {"train": 5, "val": 2, "test": 3}


def test_relative_paths_mean_the_repository_root_from_inside_it(tmp_path, monkeypatch):
    """JupyterLab runs notebooks in notebooks/, make and papermill in the root: 'runs/default' is one folder."""
    root = store.ROOT
    monkeypatch.chdir(root / "notebooks")
    assert store.project_path("runs/default") == root / "runs" / "default"
    monkeypatch.chdir(root)
    assert store.project_path("runs/default") == root / "runs" / "default"
    monkeypatch.chdir(tmp_path)  # capkit used as a library elsewhere: the usual meaning
    assert store.project_path("runs/default") == tmp_path.resolve() / "runs" / "default"
    assert store.project_path(tmp_path / "x") == (tmp_path / "x").resolve()
