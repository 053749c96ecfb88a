"""One way in for every model: a decoder registered from outside capkit trains, decodes, loads and shows up in the
results table; the registered decoders train end to end (Predict-Forward, the set-prediction hashtag model)."""

import dataclasses
import json
import math
from dataclasses import asdict, dataclass

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from capkit import evaluation, inference, models, results, retrieval, runs, train


@dataclass
class BagConfig:
    vocab_size: int
    encoder_dim: int
    embed_dim: int = 16

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BagConfig":
        return cls(**d)


class BagDecoder(nn.Module):
    """A toy decoder, known only to this file: p(y_t) = softmax(W [mean_i a_i ; E y_{t-1}]), no recurrence, no
    attention (its maps are uniform). Enough of the registry's interface for training and search."""

    STATIC_STATE = ("mean",)

    def __init__(self, config: BagConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim)
        self.out = nn.Linear(config.encoder_dim + config.embed_dim, config.vocab_size)

    def _logits(self, mean, prev):
        return self.out(torch.cat([mean, self.embedding(prev)], dim=-1))

    def loss(self, feats, captions, lengths, lambda_att=0.0, label_smoothing=0.0):
        mean = feats.float().mean(1)  # [B, D]
        steps = lengths - 1
        mask = torch.arange(captions.size(1) - 1).unsqueeze(0) < steps.unsqueeze(1)  # [B, T-1]
        logits = self._logits(mean.unsqueeze(1).expand(-1, captions.size(1) - 1, -1), captions[:, :-1])
        ce = F.cross_entropy(logits[mask], captions[:, 1:][mask], label_smoothing=label_smoothing)
        return ce, {"ce": ce.detach(), "att": ce.new_zeros(()), "loss": ce.detach()}

    def init_state(self, feats):
        feats = feats.float()
        return {"mean": feats.mean(1), "L": torch.zeros(feats.size(0), feats.size(1))}

    def step(self, tokens, state):
        logp = F.log_softmax(self._logits(state["mean"], tokens), dim=-1)
        alpha = torch.full_like(state["L"], 1.0 / state["L"].size(1))
        return logp, alpha, state

    def reorder_state(self, state, index, static=True):
        keep = () if static else self.STATIC_STATE
        return {k: v if k in keep else v.index_select(0, index) for k, v in state.items()}


@pytest.fixture()
def bag_registered(monkeypatch):
    monkeypatch.setitem(models.DECODERS, "bag", models.DecoderSpec("Bag of features", BagDecoder, config=BagConfig))
    yield "bag"


def smoke_config(sample_dir, cache_dir, run_dir, **kw):
    kw = {"epochs": 2, "batch_size": 8, **kw}
    return train.TrainConfig(data_dir=str(sample_dir), run_dir=str(run_dir), smoke=True, cache_dir=str(cache_dir),
                             **kw)


def test_a_decoder_registered_outside_capkit_trains_decodes_loads_and_is_listed(bag_registered, sample_dir,
                                                                                 cache_dir, tmp_path, one_thread):
    for search in ("beam", "mbr"):
        cfg = smoke_config(sample_dir, cache_dir, tmp_path, decoder="bag", target="text", search=search,
                           run_name=f"efficientnet_lite0-bag-text-{search}")
        result = train.train(cfg, progress=False)
        assert result["decoder"] == "bag" and result["n"] > 0
        assert math.isfinite(result["test"]["CIDEr-D"])
        history = json.loads((cfg.path / "history.json").read_text())
        assert len(history) == 2 and history[1]["train_ce"] < history[0]["train_ce"] + 1e-6  # it learns
    run = runs.load_run(tmp_path / "efficientnet_lite0-bag-text-beam")
    assert isinstance(run.model, BagDecoder)
    lines = run.predictions()
    feats = train.prepare(run.config, progress=False).features([lines[0]["image"]])
    cap = run.caption_features(feats, beam_size=2)[0]
    assert cap["alphas"].shape == (len(cap["tokens"]), feats.shape[1])
    table = results.study_table(results.collect(tmp_path), "text")
    rows = [label for label in table.index if "Bag of features" in label]
    assert len(rows) == 2 and table.loc[rows, "BLEU-1"].notna().all()


def test_an_unregistered_decoder_is_refused_with_the_registered_names():
    with pytest.raises(ValueError, match="registered: soft, lookback"):
        train.TrainConfig(decoder="nonesuch")
    with pytest.raises(ValueError, match="is for target 'hashtag'"):
        train.TrainConfig(decoder="multilabel", target="text")
    with pytest.raises(ValueError, match="self-critical"):
        train.TrainConfig(decoder="multilabel", target="hashtag", scst_epochs=1)


@pytest.fixture(scope="module")
def multilabel_run(sample_dir, cache_dir, tmp_path_factory):
    cfg = smoke_config(sample_dir, cache_dir, tmp_path_factory.mktemp("ml"), decoder="multilabel", target="hashtag",
                       epochs=3)
    prep = train.prepare(cfg, progress=False)
    model, _ = train.fit(prep, progress=False)
    return prep, model, train.test(model, prep)


def test_the_set_model_writes_a_run_folder_the_tables_read(multilabel_run):
    prep, model, result = multilabel_run
    assert result["search"] == "set" and result["rule"]["kind"] in ("k", "threshold")
    lines = [json.loads(x) for x in (prep.config.path / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == result["n"] == len(prep.records["test"])
    for key in ("f1", "precision", "recall", "macro_f1", "precision@1", "recall@5"):
        assert 0.0 <= result["test"][key] <= 1.0
    assert all(line["hashtags"] and len(set(line["hashtags"])) == len(line["hashtags"]) for line in lines)
    rows = results.study_table(results.collect(prep.config.run_dir), "hashtag")
    assert any("set prediction" in label for label in rows.index)
    # a second test() on the same weights reads the stored results back
    assert train.test(model, prep) == result


def test_the_set_rule_is_chosen_on_validation_only(multilabel_run):
    prep, model, result = multilabel_run
    rule = inference.set_rule(model, prep)
    assert rule == result["rule"]
    # other test labels change nothing; other validation labels change the rule's validation F1
    test_changed = dataclasses.replace(prep, tokens={**prep.tokens, "test": [[["x"]] for _ in prep.tokens["test"]]})
    assert inference.set_rule(model, test_changed) == rule
    val_changed = dataclasses.replace(prep, tokens={**prep.tokens, "val": [[["x"]] for _ in prep.tokens["val"]]})
    assert inference.set_rule(model, val_changed)["val_f1"] == 0.0 != rule["val_f1"]


def test_a_set_run_loads_and_tags_an_image_with_its_rule(multilabel_run):
    prep, model, result = multilabel_run
    run = runs.load_run(prep.config.path)
    images = [r.image for r in prep.records["test"][:3]]
    caps = run.caption_features(prep.features(images), pooled=prep.store.global_pooled(images))
    preds = inference.predict_set(model, prep, "test", result["rule"], limit=3)
    assert [c["hashtags"] for c in caps] == [p["tokens"] for p in preds]
    assert all(c["alphas"].shape == (len(c["tokens"]), prep.store.meta["shape"][1]) for c in caps)


def test_predict_forward_trains_end_to_end(sample_dir, cache_dir, tmp_path, one_thread):
    cfg = smoke_config(sample_dir, cache_dir, tmp_path, decoder="lbpf", target="text", search="beam")
    result = train.train(cfg, progress=False)
    run = runs.load_run(cfg.path)
    assert run.model.config.forward_weight == pytest.approx(0.5) and hasattr(run.model, "L_f")
    assert result["decoder"] == "lbpf" and math.isfinite(result["test"]["CIDEr-D"])


def test_a_blending_set_run_writes_its_bank_and_tags_new_images_as_its_test_did(multilabel_run, monkeypatch):
    prep, model, result = multilabel_run
    cfg = dataclasses.replace(prep.config, run_name=prep.config.run_name + "-blend")
    cfg.path.mkdir(parents=True)
    for name in ("best.pt", "history.json", "last.pt", "vocab.json"):
        (cfg.path / name).write_bytes((prep.config.path / name).read_bytes())
    blend_prep = dataclasses.replace(prep, config=cfg)
    rule = {**result["rule"], "neighbours": 5, "weight": 0.75}
    monkeypatch.setattr(evaluation, "set_rule", lambda model, prep: rule)
    blended = train.test(model, blend_prep)
    assert blended["rule"] == rule and (cfg.path / retrieval.NEIGHBOURS_FILE).exists()
    alone = inference.predict_set(model, prep, "test", {**rule, "weight": 0.0})
    lines = [json.loads(x) for x in (cfg.path / "predictions.jsonl").read_text().splitlines()]
    assert [x["hashtags"] for x in lines] != [p["tokens"] for p in alone]  # the votes changed the tags
    # a loaded run blends the same votes into new images' tags (pooled vectors from the feature cache)
    run = runs.load_run(cfg.path)
    assert run.needs_pooled()
    caps = run.caption_many([r.image for r in prep.records["test"]], cache_dir=cfg.cache_dir)
    assert [c["hashtags"] for c in caps] == [x["hashtags"] for x in lines]
    with pytest.raises(ValueError, match="final pooled vector"):
        run.caption_features(prep.features([prep.records["test"][0].image]))
    # without the bank the run says what is missing
    (cfg.path / retrieval.NEIGHBOURS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="neighbours.pt"):
        runs.load_run(cfg.path).caption_many([prep.records["test"][0].image], cache_dir=cfg.cache_dir)
