"""Every numbered notebook: one `parameters` cell with the shared names, no committed outputs, and a
headless papermill run with smoke=True (01 -> 02 -> 03 for a few runs of the grid -> 04 -> 05)."""

import json

import nbformat
import pytest

from caption_data import coco_2017, flickr8k_release, karpathy
from conftest import NOTEBOOKS, run_notebook

SHARED = {"dataset", "data_dir", "run_dir", "seed", "smoke"}
PER_NOTEBOOK = {
    "02_vocabulary.ipynb": {"tokenizer", "min_freq"},
    "03_train.ipynb": {"encoder", "decoder", "target", "epochs", "batch_size", "lr", "lambda_att", "beam_size", "device",
                       "scst_epochs", "start_from"},
    "06_ablation.ipynb": {"encoders", "decoders", "lambdas", "epochs"},
}
ALL = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def parameter_names(nb) -> set:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    names = set()
    for line in cells[0].source.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            names.add(line.split("=")[0].strip())
    return names


@pytest.mark.parametrize("name", ALL)
def test_notebook_structure(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    names = parameter_names(nb)
    assert SHARED | PER_NOTEBOOK.get(name, set()) <= names, f"missing {SHARED - names}"
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"), \
        "notebook outputs must not be committed (papermill writes executed copies to runs/)"


def test_the_numbered_notebooks_exist():
    assert {"01_data_exploration.ipynb", "02_vocabulary.ipynb", "03_train.ipynb", "04_attention.ipynb",
            "05_results.ipynb"} <= set(ALL)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, sample_dir, cache_dir):
    """01, 02 and three runs of 03 on the small embedded dataset; shared by the 04/05 checks."""
    out = tmp_path_factory.mktemp("runs")
    common = dict(dataset="sample", data_dir=str(sample_dir), run_dir=str(out), seed=0, smoke=True,
                  cache_dir=str(cache_dir))
    figs = out / "figures"
    run_notebook("01_data_exploration.ipynb", out, **common, figures_dir=str(figs))
    if (NOTEBOOKS / "02_vocabulary.ipynb").exists():
        run_notebook("02_vocabulary.ipynb", out, **common, figures_dir=str(figs))
    # the study's grid in part, and the extra rows' decoders (Look-Back + Predict-Forward, set prediction)
    for enc, dec, tgt in (("efficientnet_lite0", "soft", "text"), ("efficientnet_lite0", "lookback", "hashtag"),
                          ("efficientnet_lite2", "lookback", "text"), ("efficientnet_lite0", "lbpf", "text"),
                          ("efficientnet_lite0", "multilabel", "hashtag")):
        run_notebook("03_train.ipynb", out / f"{enc}-{dec}-{tgt}", **common, encoder=enc, decoder=dec, target=tgt,
                     epochs=2, batch_size=8, beam_size=2)
    # self-critical epochs on a copy of a finished run, as `make run` does for the best text model
    run_notebook("03_train.ipynb", out / "scst", **common, encoder="efficientnet_lite0", decoder="soft", target="text",
                 epochs=2, batch_size=8, beam_size=2, run_name="efficientnet_lite0-soft-text-scst",
                 start_from=str(out / "efficientnet_lite0-soft-text"), scst_epochs=1)
    return out, common, figs


def test_01_data_exploration(smoke_runs):
    out, _, figs = smoke_runs
    report = json.loads((out / "data_report.json").read_text())
    assert report["records"] > 0 and set(report["splits"]) == {"train", "val", "test"}
    assert "skipped" in report
    assert (figs / "01_hashtag_rank_frequency.png").exists() and (figs / "01_samples.png").exists()


@pytest.mark.parametrize("layout", ["coco", "karpathy"])
def test_01_and_03_on_the_fields_layouts(tmp_path, cache_dir, layout):
    """COCO's 2017 download layout and a Karpathy split file (fixtures built here): 01 reports what was read and
    skipped, 03 trains a smoke text model on English captions (whitespace tokens) and scores the test split."""
    data = tmp_path / "data"
    want = coco_2017(data) if layout == "coco" else karpathy(data)
    out = tmp_path / "runs"
    common = dict(dataset=layout, data_dir=str(data), run_dir=str(out), seed=0, smoke=True, cache_dir=str(cache_dir))
    run_notebook("01_data_exploration.ipynb", out, **common, figures_dir=str(out / "figures"))
    report = json.loads((out / "data_report.json").read_text())
    assert report["read"] == want["read"] and report["skipped"] == {"missing_image": 1}
    assert report["splits"] == want["splits"] and report["merged"] == 0
    run_notebook("03_train.ipynb", out / "run", **common, encoder="efficientnet_lite0", decoder="soft", target="text",
                 epochs=1, batch_size=8, beam_size=2, tokenizer="whitespace", min_freq=1)
    folder = out / "efficientnet_lite0-soft-text"
    metrics = json.loads((folder / "metrics.json").read_text())
    lines = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    assert metrics["n"] == len(lines) == want["splits"]["test"]
    assert all(len(line["references"]) == 5 for line in lines)  # every caption of an image is a reference
    assert 0.0 <= metrics["test"]["study_bleu1"] <= 1.0


def test_01_and_03_on_the_flickr8k_release(tmp_path, cache_dir):
    """The official Flickr8k layout with its quirks: 01 counts them, 03 trains a smoke model on the official split
    with the English tokenizer (chosen by tokenizer="auto") and scores every test photo against all five captions."""
    data = tmp_path / "data"
    want = flickr8k_release(data, "official", n=20)
    out = tmp_path / "runs"
    common = dict(dataset="flickr8k", data_dir=str(data), run_dir=str(out), seed=0, smoke=True, cache_dir=str(cache_dir))
    run_notebook("01_data_exploration.ipynb", out, **common, figures_dir=str(out / "figures"))
    report = json.loads((out / "data_report.json").read_text())
    assert report["read"] == want["read"] and report["skipped"] == want["skipped"]
    assert report["splits"] == want["splits"]
    run_notebook("03_train.ipynb", out / "run", **common, encoder="efficientnet_lite0", decoder="soft", target="text",
                 epochs=1, batch_size=8, beam_size=2, tokenizer="auto", min_freq=1, search="beam")
    folder = out / "efficientnet_lite0-soft-text"
    config = json.loads((folder / "config.json").read_text())
    assert config["tokenizer"] == "english"  # "auto", resolved and recorded
    lines = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == want["splits"]["test"] and all(len(line["references"]) == 5 for line in lines)
    refs = [t for line in lines for ref in line["reference_tokens"] for t in ref]
    assert refs and all(t == t.lower() and t not in {".", ","} for t in refs)  # the evaluation's token form
    assert lines[0]["references"][0][0].isupper()  # the readable references keep the writer's form
    # 04 draws real test photos word by word; 05 puts the field's table beside the published rows
    run_notebook("04_attention.ipynb", out, **common, figures_dir=str(out / "figures"))
    assert list((out / "figures").glob("04_efficientnet_lite0-soft-text_*.png"))
    run_notebook("05_results.ipynb", out, **common, figures_dir=str(out / "figures"))
    import pandas as pd

    table = pd.read_csv(out / "results_real_photos.csv", index_col=0)
    assert "EfficientNet-Lite0 + soft" in table.index and table.loc["EfficientNet-Lite0 + soft", "CIDEr-D"] >= 0
    assert any("Show, Attend and Tell" in r for r in table.index)
    assert any(r.startswith("Baseline: nearest neighbour") for r in table.index)


def test_03_self_critical_copy(smoke_runs):
    out, _, _ = smoke_runs
    history = json.loads((out / "efficientnet_lite0-soft-text-scst" / "history.json").read_text())
    assert [r["phase"] for r in history] == ["xe", "xe", "scst"]
    source = json.loads((out / "efficientnet_lite0-soft-text" / "history.json").read_text())
    assert len(source) == 2  # the run it started from is left as it was


def test_06_ablation(tmp_path, sample_dir, cache_dir):
    import pandas as pd

    common = dict(dataset="sample", data_dir=str(sample_dir), run_dir=str(tmp_path), seed=0, smoke=True,
                  cache_dir=str(cache_dir), figures_dir=str(tmp_path / "figures"))
    run_notebook("06_ablation.ipynb", tmp_path, **common, encoders=["efficientnet_lite0"], decoders=["soft"],
                 lambdas=[0.0, 1.0], epochs=1)
    table = pd.read_csv(tmp_path / "ablation_lambda.csv")
    assert table.lambda_att.astype(float).tolist() == [0.0, 1.0]
    # a 1-epoch smoke model may name no drawn object: the pointing game is then NaN, never out of range
    assert {"val pointing", "test pointing", "val CIDEr-D"} <= set(table.columns)
    assert table["test pointing"].dropna().between(0, 1).all() and table["val CIDEr-D"].between(0, 10).all()
    assert (tmp_path / "figures" / "06_ablation_lambda.png").exists()


def test_03_train_writes_the_run_folder(smoke_runs):
    out, _, _ = smoke_runs
    for run in ("efficientnet_lite0-soft-text", "efficientnet_lite0-lookback-hashtag"):
        folder = out / run
        for f in ("config.json", "vocab.json", "best.pt", "last.pt", "metrics.json", "predictions.jsonl",
                  "curves.png", "history.json", "03_train.ipynb"):
            assert (folder / f).exists(), f"{run}/{f}"
        metrics = json.loads((folder / "metrics.json").read_text())
        lines = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
        assert metrics["n"] == len(lines) > 0
        key = "study_bleu1" if run.endswith("text") else "f1"
        assert 0.0 <= metrics["test"][key] <= 1.0
        assert {"image", "references", "prediction_tokens", "prediction"} <= set(lines[0])
        if run.endswith("hashtag"):
            assert "hashtags" in lines[0]
            assert "grounding" not in metrics
        else:  # the pointing game, stored for 04_attention with what it was measured on
            game = metrics["grounding"]
            assert game["measured_on"] == {**game["measured_on"], "fingerprint": metrics["fingerprint"],
                                           "beam_size": 2}
            assert 0 < game["n_images"] <= len(lines) and len(metrics["grounding_words"]) == game["n_words"]


def test_04_attention(smoke_runs):
    out, common, figs = smoke_runs
    run_notebook("04_attention.ipynb", out, **common, figures_dir=str(figs))
    # a word-by-word figure for every text run, and the pointing game kept in each text run's metrics
    for run in ("efficientnet_lite0-soft-text", "efficientnet_lite2-lookback-text", "efficientnet_lite0-lbpf-text"):
        assert list(figs.glob(f"04_{run}_*.png")), run
        game = json.loads((out / run / "metrics.json").read_text())["grounding"]
        assert game["n_images"] > 0 and 0 <= (game["hits"] or 0) <= game["n_words"]
        assert game["n_words"] == 0 or 0 <= game["chance"] <= 1  # (a smoke model may name no drawn object)
    assert (figs / "04_grounding.png").exists()


def test_05_results(smoke_runs):
    out, common, figs = smoke_runs
    run_notebook("05_results.ipynb", out, **common, figures_dir=str(figs))
    # the extra decoders are extra rows of the study's tables, with scores; the grid keeps its four cells
    import pandas as pd

    for target, label in (("text", "Look-Back + Predict-Forward"), ("hashtag", "set prediction")):
        table = pd.read_csv(out / f"results_{target}.csv", index_col=0)
        extra = [m for m in table.index if label in m]
        assert len(extra) == 1 and table.loc[extra[0]].iloc[:3].notna().all(), (target, list(table.index))
        assert not any(label in m and "missing" in str(table.loc[m, "note"]) for m in table.index)
