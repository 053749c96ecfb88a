"""The Flickr8k release in its two layouts (fixtures written here, quirks included) and the English tokenizer
that scores raw captions as the field does."""

import shutil

import pytest

from capkit import data as D
from capkit import text

from caption_data import flickr8k_release


@pytest.mark.parametrize("layout", ["official", "nested"])
def test_official_layout_with_its_quirks(tmp_path, layout):
    want = flickr8k_release(tmp_path, layout)
    records, report = D.load("flickr8k", tmp_path)
    assert report.read == want["read"] and dict(report.skipped) == want["skipped"]
    assert report.splits == want["splits"] and len(records) == want["records"]
    # every skip names the file and its line
    for reason, examples in report.examples.items():
        assert all("Flickr8k.token.txt:" in e for e in examples), (reason, examples)
    assert any(e.endswith("('2258277193_586949ec62.jpg.1')") for e in report.examples["bad_image_name"])
    assert want["in_no_list"] in report.examples["not_in_split"][0]
    # five references an image, a caption written twice kept twice (the field's scorers count both)
    assert all(len(r.texts) == 5 for r in records)
    first = next(r for r in records if r.key.startswith("3000_"))
    assert first.texts[0] == first.texts[3] and first.split == "train"
    assert all(r.image.endswith(r.key) and r.category is None for r in records)


def test_the_data_dir_may_be_the_text_folders_parent_or_above(tmp_path):
    flickr8k_release(tmp_path / "release", "official")
    direct, _ = D.load("flickr8k", tmp_path / "release")
    above, _ = D.load("flickr8k", tmp_path)
    assert [(r.key, r.split, r.texts) for r in direct] == [(r.key, r.split, r.texts) for r in above]


def test_repackaged_copy_gets_the_seeded_split_then_the_official_one(tmp_path):
    want = flickr8k_release(tmp_path, "csv")
    records, report = D.load("flickr8k", tmp_path)
    assert report.read == want["read"] and dict(report.skipped) == want["skipped"]
    assert len(records) == want["records"] and sum(report.splits.values()) == want["records"]
    assert all(e.startswith(str(tmp_path / "captions.txt") + ":") for ex in report.examples.values() for e in ex)
    assert any(t == "A dog, a cat, and a boat." for r in records for t in r.texts)  # a quoted comma stays
    seeded = {r.key: r.split for r in records}
    assert seeded == {r.key: r.split for r in D.load("flickr8k", tmp_path, seed=0)[0]}
    # the official lists beside captions.txt decide the split when they are there
    names = sorted(seeded)
    (tmp_path / "Flickr_8k.trainImages.txt").write_text("\n".join(names[:8]))
    (tmp_path / "Flickr_8k.devImages.txt").write_text("\n".join(names[8:10]))
    (tmp_path / "Flickr_8k.testImages.txt").write_text("\n".join(names[10:]))
    records, report = D.load("flickr8k", tmp_path)
    assert report.splits == {"train": 8, "val": 2, "test": 2}
    assert {r.key: r.split for r in records}[names[9]] == "val"


def test_what_is_missing_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="Flickr8k.token.txt.*captions.txt"):
        D.load("flickr8k", tmp_path)
    flickr8k_release(tmp_path, "official")
    shutil.rmtree(tmp_path / "Flicker8k_Dataset")
    with pytest.raises(FileNotFoundError, match="no photo folder"):
        D.load("flickr8k", tmp_path)


ENGLISH = [
    ("A child in a pink dress is climbing up a set of stairs in an entry way .",
     "a child in a pink dress is climbing up a set of stairs in an entry way"),
    ("The dog's T-shirt, isn't it? It costs $3.50!", "the dog 's t-shirt is n't it it costs $ 3.50"),
    ("We cannot see Mr. Potato Head in Washington D.C.", "we can not see mr. potato head in washington d.c."),
    ("Two men ( one in red ) play \"soccer\" ; they're happy...", "two men one in red play soccer they 're happy"),
    ("A greyhound wearing # 7 & running", "a greyhound wearing # 7 & running"),
    ("Ein Mädchen läuft über die Straße.", "ein mädchen läuft über die straße"),
]


@pytest.mark.parametrize("raw,tokens", ENGLISH)
def test_english_tokens_are_the_evaluations(raw, tokens):
    assert text.get_tokenizer("english")(raw) == tokens.split()


def test_english_tokens_match_pycocoevalcaps_ptb_tokenizer():
    """The Java PTB tokenizer of pycocoevalcap on the same captions (it lower-cases and drops punctuation; its
    brackets come out as -lrb- / -rrb-, which it then fails to drop: the one known difference)."""
    if shutil.which("java") is None:
        pytest.skip("pycocoevalcap's PTB tokenizer needs Java")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    raws = [raw for raw, _ in ENGLISH] + ["A man's bike , and the woman's ; next to it .", "Kids don't swim!"]
    ptb = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(raws)})
    ours = text.get_tokenizer("english")
    for i, raw in enumerate(raws):
        theirs = [t for t in ptb[i][0].split() if t not in ("-lrb-", "-rrb-")]
        assert ours(raw) == theirs, raw


def test_auto_picks_english_for_english_sources_and_latin_texts():
    assert text.resolve_tokenizer("auto", "flickr8k") == "english"
    assert text.resolve_tokenizer("auto", "coco") == "english"
    assert text.resolve_tokenizer("auto", "manifest", ["A dog runs on the beach.", "Une fille au café."]) == "english"
    assert text.resolve_tokenizer("auto", "manifest", ["바다가 정말 예뻐요 #여행", "ok 좋아요 맛집"]) == "okt"
    assert text.resolve_tokenizer("kiwi", "flickr8k") == "kiwi"  # a named tokenizer is kept
    with pytest.raises(ValueError, match="auto"):
        text.get_tokenizer("auto")
