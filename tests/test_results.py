"""Tests for capkit.results: the study's table layout from hand-made run folders, recomputing a run's
scores from predictions.jsonl, the baselines on a small prepared dataset, the Markdown / CSV writers."""

import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from capkit import metrics, results, train

TEXT = {"study_bleu1": 0.1, "study_rouge_l": 0.2, "study_meteor": 0.3, "BLEU-1": 0.11, "BLEU-2": 0.05,
        "BLEU-3": 0.02, "BLEU-4": 0.01, "METEOR": 0.04, "ROUGE-L": 0.12, "CIDEr-D": None, "n_images": 10}
TAGS = {"precision": 0.3, "recall": 0.2, "f1": 0.24, "macro_f1": 0.2, "precision@1": 0.5, "recall@1": 0.1,
        "n_images": 10, "n_with_true": 10}


def fake_run(run_dir, encoder, decoder, target, scores=None, name=None, smoke=False):
    """A run folder with config.json and (given scores) metrics.json, as train writes them."""
    name = name or f"{encoder}-{decoder}-{target}"
    folder = run_dir / name
    folder.mkdir(parents=True)
    config = train.TrainConfig(encoder=encoder, decoder=decoder, target=target, run_name=name, smoke=smoke)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    if scores is not None:
        m = {"run": name, "encoder": encoder, "decoder": decoder, "target": target, "dataset": "sample",
             "n": 10, "test": scores, "epochs_run": 3, "best_epoch": 2, "train_seconds": 12.5,
             "decode_images_per_second": 40.0}
        (folder / "metrics.json").write_text(json.dumps(m))
    return folder


@pytest.fixture
def hand_runs(tmp_path):
    """Three of the four text cells (one only trained, not tested), one hashtag cell, one extra run."""
    fake_run(tmp_path, "efficientnet_lite0", "soft", "text", TEXT)
    fake_run(tmp_path, "efficientnet_lite2", "lookback", "text", {**TEXT, "study_bleu1": 0.4}, smoke=True)
    fake_run(tmp_path, "efficientnet_lite2", "soft", "text", None)  # trained, no metrics.json
    fake_run(tmp_path, "efficientnet_lite0", "lookback", "hashtag", TAGS)
    fake_run(tmp_path, "efficientnet_lite0", "soft", "hashtag", {**TAGS, "f1": 0.5}, name="lite0-soft-beam1")
    return tmp_path


# ---------------------------------------------------------------- the study's layout


def test_text_table_layout(hand_runs):
    runs = results.collect(hand_runs)
    assert len(runs) == 5 and set(runs.status) == {"done", "not tested"}
    table = results.study_table(runs, "text")
    assert list(table.index) == ["EfficientNet-Lite0 + soft (baseline)", "EfficientNet-Lite2 + soft",
                                 "EfficientNet-Lite0 + Look-Back", "EfficientNet-Lite2 + Look-Back"]
    assert list(table.columns) == ["BLEU-1", "ROUGE-L", "METEOR", "run", "note"]
    base = table.loc["EfficientNet-Lite0 + soft (baseline)"]
    assert (base["BLEU-1"], base["ROUGE-L"], base["METEOR"]) == (0.1, 0.2, 0.3)
    assert base.note == "" and base.run == "efficientnet_lite0-soft-text"
    assert table.loc["EfficientNet-Lite2 + Look-Back", "BLEU-1"] == 0.4
    assert table.loc["EfficientNet-Lite2 + Look-Back", "note"] == "smoke"
    assert table.loc["EfficientNet-Lite2 + soft", "note"] == "not tested"
    assert math.isnan(table.loc["EfficientNet-Lite2 + soft", "BLEU-1"])
    missing = table.loc["EfficientNet-Lite0 + Look-Back"]
    assert missing.note == "missing" and missing[["BLEU-1", "ROUGE-L", "METEOR"]].isna().all()


def test_hashtag_table_layout_and_extra_runs(hand_runs):
    table = results.study_table(results.collect(hand_runs), "hashtag")
    assert list(table.columns[:3]) == ["F1", "Precision", "Recall"]
    assert table.loc["EfficientNet-Lite0 + Look-Back", ["F1", "Precision", "Recall"]].tolist() == [0.24, 0.3, 0.2]
    # the soft cell's only run has another name: it fills the cell
    assert table.loc["EfficientNet-Lite0 + soft (baseline)", "F1"] == 0.5
    assert table.note.tolist().count("missing") == 2 and len(table) == 4
    extra = results.study_table(results.collect(hand_runs), "hashtag", columns=results.EXTRA_COLUMNS["hashtag"])
    assert extra.loc["EfficientNet-Lite0 + Look-Back", "macro F1"] == 0.2
    assert extra.loc["EfficientNet-Lite0 + Look-Back", "P@1"] == 0.5
    assert math.isnan(extra.loc["EfficientNet-Lite0 + Look-Back", "P@3"])  # key absent: NaN


def test_a_second_run_of_a_cell_becomes_an_extra_row(hand_runs):
    fake_run(hand_runs, "efficientnet_lite0", "soft", "text", {**TEXT, "study_bleu1": 0.9}, name="lite0-again")
    table = results.study_table(results.collect(hand_runs), "text")
    assert table.loc["EfficientNet-Lite0 + soft (baseline)", "BLEU-1"] == 0.1  # the default-named run
    assert table.loc["EfficientNet-Lite0 + soft [lite0-again]", "BLEU-1"] == 0.9
    assert len(table) == 5


def test_empty_run_dir(tmp_path):
    runs = results.collect(tmp_path)
    table = results.study_table(runs, "text", baselines=results.load_baselines(tmp_path))
    assert len(table) == 4 and (table.note == "missing").all()
    assert results.best_run(table, "BLEU-1") is None
    assert "no tested model" in results.summary(table, "BLEU-1")


def test_the_study_encoders_lead_the_grid_when_present(tmp_path):
    fake_run(tmp_path, "resnet101", "soft", "text", TEXT)
    cells = results.grid(results.collect(tmp_path))
    assert cells[0] == ("resnet101", "soft") and cells[-1] == ("efficientnet_lite2", "lookback")
    assert results.study_table(results.collect(tmp_path), "text").index[0] == "ResNet-101 + soft (baseline)"
    both = results.side_by_side(results.collect(tmp_path), "text")  # ResNet-101 vs Lite0, as ResNeXt's stand-in
    assert both.ours.tolist() == ["ResNet-101 + soft (baseline)", "EfficientNet-Lite0 + soft",
                                  "ResNet-101 + Look-Back", "EfficientNet-Lite0 + Look-Back"]


def test_published_numbers_and_side_by_side(hand_runs):
    pub = results.published_table("text")
    assert pub.loc["baseline: ResNet-101 + soft"].tolist() == [0.0639, 0.0897, 0.0573]
    assert results.published_table("hashtag").loc["ResNeXt: ResNeXt-101 32x8d WSL + soft", "F1"] == 0.1709
    both = results.side_by_side(results.collect(hand_runs), "text")
    assert list(both.index) == ["baseline", "ResNeXt", "Look-Back Attention", "ResNeXt + Look-Back"]
    assert both.loc["baseline", "ours"] == "EfficientNet-Lite0 + soft (baseline)"
    assert both.loc["baseline", "ours: BLEU-1"] == 0.1 and both.loc["baseline", "study: BLEU-1"] == 0.0639
    assert both.loc["ResNeXt + Look-Back", "study: ROUGE-L"] == 0.0982


def test_baseline_rows_from_files(hand_runs):
    folder = hand_runs / "baselines"
    folder.mkdir()
    for enc in ("efficientnet_lite0", "efficientnet_lite2"):
        b = {"encoder": enc, "target": "hashtag", "split": "test", "n": 10, "config": {"smoke": False},
             "baselines": {
                 "most_frequent": {"label": "Baseline: 5 most frequent training hashtags", "test": {**TAGS, "f1": 0.7}},
                 "nearest_neighbour": {"label": results.baseline_label("nearest_neighbour", enc, "hashtag"),
                                       "test": {**TAGS, "f1": 0.1}}}}
        (folder / f"{enc}-hashtag.json").write_text(json.dumps(b))
    base = results.load_baselines(hand_runs)
    assert len(base) == 3  # most frequent kept once, nearest neighbour per encoder
    table = results.study_table(results.collect(hand_runs), "hashtag", baselines=base)
    assert table.index[4:].tolist() == ["Baseline: nearest neighbour (EfficientNet-Lite0, cosine)",
                                        "Baseline: nearest neighbour (EfficientNet-Lite2, cosine)",
                                        "Baseline: 5 most frequent training hashtags"]
    assert table.loc["Baseline: 5 most frequent training hashtags", "F1"] == 0.7
    assert results.best_run(table, "F1") == "lite0-soft-beam1"  # baselines never count as the best run
    assert "does not beat the best baseline, 5 most frequent" in results.summary(table, "F1")
    assert len(results.study_table(results.collect(hand_runs), "text", baselines=base)) == 4


# ---------------------------------------------------------------- Markdown and CSV


def test_markdown_bold_and_missing(tmp_path):
    t = pd.DataFrame({"F1": [0.1, 0.3, math.nan, 0.3], "same": [0.0, 0.0, 0.0, 0.0], "note": ["", "", "missing", ""]},
                     index=pd.Index(["a", "b", "c", "d"], name="model"))
    md = results.markdown_table(t).splitlines()
    assert md[0] == "| model | F1 | same | note |" and md[1] == "|---|---:|---:|---|"
    assert md[2] == "| a | 0.1000 | 0.0000 |  |"
    assert md[3] == "| b | **0.3000** | 0.0000 |  |"  # ties all bold; an all-equal column none
    assert md[4] == "| c | — | 0.0000 | missing |"
    assert md[5] == "| d | **0.3000** | 0.0000 |  |"
    csv, mdpath = results.save_table(t, tmp_path, "results_x", note="on the embedded data")
    back = pd.read_csv(csv, index_col="model")
    assert back.loc["b", "F1"] == 0.3 and math.isnan(back.loc["c", "F1"])
    assert mdpath.read_text().endswith("on the embedded data\n")


def test_score_differences():
    assert results.score_differences({"a": 1.0, "b": None}, {"a": 1.0, "b": math.nan}) == {}
    assert results.score_differences({"a": 1.0}, {"a": 1.1}) == {"a": (1.0, 1.1)}
    assert results.score_differences({"a": 1.0}, {"a": 1.0, "c": 2.0}) == {"c": ("absent", 2.0)}


# ---------------------------------------------------------------- recomputing a real run from its predictions


@pytest.fixture(scope="module")
def jar():
    """One METEOR jar for the module (starting it takes seconds); None without Java (METEOR then NaN)."""
    with metrics.meteor_scorer() as meteor:
        yield meteor


@pytest.fixture(scope="module")
def smoke_run_dir(tmp_path_factory, sample_dir, cache_dir):
    """Two really trained smoke runs (text, hashtags), one epoch each."""
    run_dir = tmp_path_factory.mktemp("res_runs")
    for dec, tgt in (("soft", "text"), ("lookback", "hashtag")):
        train.train(train.TrainConfig(data_dir=str(sample_dir), run_dir=str(run_dir), cache_dir=str(cache_dir),
                                      smoke=True, epochs=1, batch_size=8, decoder=dec, target=tgt), progress=False)
    return run_dir


def test_recomputed_scores_equal_metrics_json(smoke_run_dir, jar):
    for run in ("efficientnet_lite0-soft-text", "efficientnet_lite0-lookback-hashtag"):
        stored = json.loads((smoke_run_dir / run / "metrics.json").read_text())["test"]
        again = results.recompute(smoke_run_dir / run, meteor=jar)
        assert results.score_differences(stored, again) == {}, run
        assert set(stored) == set(again) and stored["n_images"] == again["n_images"] > 0
    assert results.check_runs(smoke_run_dir, meteor=jar).differing.tolist() == ["none", "none"]


def test_a_changed_prediction_is_caught(smoke_run_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(smoke_run_dir / "efficientnet_lite0-lookback-hashtag", run)
    lines = results.read_predictions(run)
    lines[0]["hashtags"] = lines[0]["true_hashtags"]  # a perfect first prediction
    (run / "predictions.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    stored = json.loads((run / "metrics.json").read_text())["test"]
    assert "f1" in results.score_differences(stored, results.recompute(run))


def test_prediction_examples(smoke_run_dir):
    items = results.prediction_examples(smoke_run_dir, "efficientnet_lite0-soft-text",
                                        "efficientnet_lite0-lookback-hashtag", n=6, seed=0)
    assert len(items) == 6 and len({x["key"] for x in items}) == 6
    assert all({"image", "reference", "generated", "true_hashtags", "hashtags"} <= set(x) for x in items)
    assert len({x["category"] for x in items}) == 6  # one category after another
    assert items == results.prediction_examples(smoke_run_dir, "efficientnet_lite0-soft-text",
                                                "efficientnet_lite0-lookback-hashtag", n=6, seed=0)


# ---------------------------------------------------------------- baselines on a small prepared dataset


@pytest.fixture(scope="module")
def prep_tags(sample_dir, cache_dir, tmp_path_factory):
    config = train.TrainConfig(data_dir=str(sample_dir), cache_dir=str(cache_dir), smoke=True, target="hashtag",
                               run_dir=str(tmp_path_factory.mktemp("res_base")))
    return train.prepare(config, progress=False)


def test_nearest_neighbour_of_a_training_image_is_itself(prep_tags):
    b = results.baseline_predictions(prep_tags, split="train")
    keys = [r.key for r in prep_tags.records["train"]]
    assert b["nearest_neighbour"]["neighbours"] == keys
    assert b["nearest_neighbour"]["tokens"] == [refs[0] for refs in prep_tags.tokens["train"]]
    scores = results.baselines(prep_tags, split="train")["nearest_neighbour"]["test"]
    assert scores["precision"] == scores["recall"] == scores["f1"] == 1.0


def test_most_frequent_precision_by_hand(prep_tags):
    k = 3
    counts = Counter(t for refs in prep_tags.tokens["train"] for t in set(refs[0]))
    top = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
    true = [set(refs[0]) for refs in prep_tags.tokens["test"]]
    hits = sum(len(t & set(top)) for t in true)
    b = results.baselines(prep_tags, k=k)["most_frequent"]
    assert b["hashtags"] == top and b["k"] == k
    assert b["test"]["precision"] == pytest.approx(hits / (k * len(true)))
    assert b["test"]["recall"] == pytest.approx(hits / sum(len(t) for t in true))
    mean = np.mean([len(refs[0]) for refs in prep_tags.tokens["train"]])
    assert results.baseline_predictions(prep_tags, k="mean")["most_frequent"]["k"] == max(1, round(mean))


def test_k_tuned_on_validation():
    train_tags = [["a", "b", "c"], ["a", "b"], ["a", "b"], ["a"], ["c", "d"]]  # a 4, b 3, c 2, d 1
    assert results.tune_k(train_tags, [["a", "b"], ["a", "b"]], max_k=4) == 2
    assert results.tune_k(train_tags, [["a"], ["a"]], max_k=4) == 1
    assert results.tune_k(train_tags, [["a", "b", "c", "d"]], max_k=4) == 4


def test_random_baseline_is_seeded(prep_tags):
    a = results.baseline_predictions(prep_tags)["random"]
    b = results.baseline_predictions(prep_tags)["random"]
    assert a["drawn"] == b["drawn"] and len(a["drawn"]) == len(prep_tags.records["test"])
    train_keys = [r.key for r in prep_tags.records["train"]]
    expected = metrics.random_texts(train_keys, len(prep_tags.records["test"]), seed=prep_tags.config.seed)
    assert a["drawn"] == expected


def test_write_and_reuse_baselines(prep_tags, tmp_path):
    run_dir = tmp_path / "runs"
    folder = run_dir / prep_tags.config.run_name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**prep_tags.config.to_dict(), "run_dir": str(run_dir)}))
    [path] = results.ensure_baselines(run_dir, progress=False)
    assert path == run_dir / "baselines" / "efficientnet_lite0-hashtag.json"
    saved = json.loads(path.read_text())
    assert set(saved["baselines"]) == {"most_frequent", "nearest_neighbour", "random"}
    keys = set(metrics.hashtag_scores([["a"]], [["a"]]))  # what a hashtag run's metrics.json["test"] holds
    assert all(set(b["test"]) == keys for b in saved["baselines"].values())
    assert saved["n"] == len(saved["baselines"]["random"]["predictions"]) == len(prep_tags.records["test"])
    mtime = path.stat().st_mtime_ns
    results.ensure_baselines(run_dir, progress=False)
    assert path.stat().st_mtime_ns == mtime  # same data settings: reused
    results.ensure_baselines(run_dir, refresh=True, progress=False)
    assert path.stat().st_mtime_ns != mtime
    # a run whose test records differ from the stored ones (e.g. regenerated data): recomputed
    mtime = path.stat().st_mtime_ns
    (folder / "predictions.jsonl").write_text(json.dumps({"key": "another-post"}) + "\n")
    results.ensure_baselines(run_dir, progress=False)
    assert path.stat().st_mtime_ns != mtime


def test_text_baselines_have_the_text_metric_keys(sample_dir, cache_dir, jar):
    config = train.TrainConfig(data_dir=str(sample_dir), cache_dir=str(cache_dir), smoke=True, target="text")
    prep = train.prepare(config, progress=False)
    scored = results.baselines(prep, split="train", meteor=jar)
    keys = set(metrics.text_scores([[["a"]]], [["a"]], meteor=jar))
    assert set(scored) == {"nearest_neighbour", "random"}
    assert all(set(b["test"]) == keys for b in scored.values())
    nn = scored["nearest_neighbour"]["test"]  # each training text copies itself
    assert nn["study_bleu1"] == pytest.approx(1.0) and nn["study_rouge_l"] == pytest.approx(1.0)
    assert scored["random"]["test"]["study_bleu1"] < 1.0
