"""The prediction targets (capkit.targets): which records each keeps, what it selects, scores and reads out, and
the command that tells the Makefile which targets a dataset has records for."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from capkit import data as D
from capkit import settings, targets
from capkit.store import ROOT


def records():
    return [D.Record(key="a", image="a.jpg", texts=["a dog runs"], hashtags=[]),
            D.Record(key="b", image="b.jpg", texts=[], hashtags=["dog"]),
            D.Record(key="c", image="c.jpg", texts=["two cats"], hashtags=["cat", "pet"])]


def test_each_target_keeps_its_records_and_counts_the_others():
    report = D.LoadReport()
    assert [r.key for r in targets.keep(records(), "text", report)] == ["a", "c"]
    assert report.skipped == {"no_text": 1}
    report = D.LoadReport()
    assert [r.key for r in targets.keep(records(), "hashtag", report)] == ["b", "c"]
    assert report.skipped == {"no_hashtags": 1}
    with pytest.raises(ValueError, match="target must be one of 'text', 'hashtag', not 'emoji'"):
        targets.keep(records(), "emoji")
    with pytest.raises(ValueError, match="'emoji'"):
        settings.TrainConfig(target="emoji")


def test_what_each_target_decodes_selects_and_reads_out():
    config = settings.TrainConfig(max_len=17, max_hashtags=6, tokenizer="english")
    text, tags = targets.TEXT, targets.HASHTAG
    assert (text.decode_len(config), tags.decode_len(config)) == (17, 6)
    assert (text.selection, tags.selection) == ("val_cider", "val_f1")
    assert not text.forbid_repeats and tags.forbid_repeats and text.mbr_consensus and not tags.mbr_consensus
    assert settings.TrainConfig(target="hashtag").mbr_n == 30 and settings.TrainConfig().mbr_tau == 0.5
    assert tags.readable(["beach", "sea"]) == "#beach #sea"
    assert text.readable(["a", "dog", "'s", "bone"], tokenizer="english") == "a dog 's bone"
    refs, stats = tags.references(records()[1:], config)
    assert refs == [[["dog"]], [["cat", "pet"]]] and stats is None
    assert tags.raw_references(records()[2]) == ["#cat #pet"] and text.raw_references(records()[2]) == ["two cats"]
    assert text.token_form(config) == "english" and tags.token_form(config) == "hashtag"
    # the validation score that selects is the field's: CIDEr-D for texts, micro F1 for tag sets
    perfect = [[["a", "dog", "runs"]], [["two", "cats"]]]
    assert text.val_score(perfect, [r[0] for r in perfect])["score"] > 1
    assert tags.val_score([[["dog"]], [["cat", "pet"]]], [["dog"], ["cat"]])["score"] == pytest.approx(0.8)
    # a predictions.jsonl line of a hashtag run rescored from its hashtags fields
    lines = [{"reference_tokens": [["dog"]], "prediction_tokens": ["dog"], "true_hashtags": ["dog"],
              "hashtags": ["cat"]}]
    assert tags.rescore(lines)["f1"] == 0.0 and tags.test_scores([[["dog"]]], [["dog"]])["f1"] == 1.0


def test_the_command_names_the_targets_a_dataset_has_records_for(tmp_path):
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(tmp_path / f"{i}.jpg")
    rows = [{"image": f"{i}.jpg", "text": f"a photo number {i}", "split": s}
            for i, s in enumerate(("train", "val", "test"))]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def run(*names):
        return subprocess.run([sys.executable, "-m", "capkit.targets", "manifest", str(tmp_path), *names], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    done = run("text", "hashtag")
    assert done.returncode == 0 and done.stdout.split() == ["text"]
    assert "SKIPPED: target hashtag" in done.stderr and "no training records with hashtags" in done.stderr
    done = run("hashtag")
    assert done.returncode == 1 and done.stdout.strip() == ""
