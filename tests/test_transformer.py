"""The Transformer decoder: causal (a word never sees the words after it), incremental decoding equal to the
whole-caption pass, the key/value cache growing one position a step, its options from the run's settings, and a
smoke run end to end through the trainer with its attention maps."""

import json

import pytest
import torch

from capkit import build, settings, train
from capkit.transformer import TransformerConfig, TransformerDecoder


def small(**kw):
    torch.manual_seed(0)
    return TransformerDecoder(TransformerConfig(vocab_size=19, encoder_dim=10, d_model=16, layers=2, heads=2,
                                                ff_dim=24, **kw)).eval()


def test_a_word_never_sees_the_words_after_it(one_thread):
    model = small()
    feats = torch.randn(2, 5, 10)
    caps = torch.tensor([[2, 5, 6, 7, 3], [2, 5, 6, 7, 3]])
    caps_b = caps.clone()
    caps_b[:, 3] = 9  # change the fourth word: the predictions made before it must not move
    with torch.no_grad():
        a, _ = model._teacher(feats, caps)
        b, _ = model._teacher(feats, caps_b)
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6) and not torch.allclose(a[:, 3], b[:, 3])


def test_the_cache_grows_one_position_a_step_and_beams_keep_their_images(one_thread):
    model = small()
    feats = torch.randn(3, 5, 10)
    state = model.init_state(feats)
    tokens = torch.full((3,), 2)
    for t in range(4):
        _, alpha, state = model.step(tokens, state)
        assert state["self"].shape == (3, 2, 2, 2, t + 1, 8) and alpha.shape == (3, 5)
    # beams moving within an image share its cross keys/values (no copy); moving across images copies them
    same = model.reorder_state(state, torch.tensor([0, 0, 2]), static=False)
    assert same["cross"] is state["cross"]
    moved = model.reorder_state(state, torch.tensor([2, 0]))
    assert torch.equal(moved["cross"], state["cross"][[2, 0]])


def test_options_come_from_the_run_settings(tmp_path):
    config = settings.preset("default", decoder="transformer", decoder_options={"transformer": {"layers": 3,
                                                                                               "d_model": 32}})
    model = build.build_model(config, vocab_size=50)
    assert len(model.layers) == 3 and model.config.d_model == 32
    with pytest.raises(ValueError, match="d_model.*multiple of heads"):
        TransformerConfig(vocab_size=5, encoder_dim=3, d_model=30, heads=4)


def test_longer_than_its_positions_is_an_error():
    model = small(max_positions=4)
    with pytest.raises(ValueError, match="max_positions"):
        model.loss(torch.randn(1, 5, 10), torch.tensor([[2, 4, 5, 6, 7, 3]]), torch.tensor([6]))


def test_trains_end_to_end_with_attention_maps(sample_dir, cache_dir, tmp_path, one_thread):
    config = settings.preset("default", data_dir=str(sample_dir), run_dir=str(tmp_path), smoke=True,
                             cache_dir=str(cache_dir), encoder="efficientnet_lite0", decoder="transformer",
                             decoder_options={"transformer": {"d_model": 32, "heads": 2, "ff_dim": 64}},
                             epochs=2, batch_size=8, search="beam", beam_size=2, tokenizer="whitespace")
    result = train.train(config, progress=False)
    assert result["n"] > 0 and 0 <= result["test"]["CIDEr-D"]
    from capkit import runs

    run = runs.load_run(config.path)
    cap = run.caption_many([run.predictions()[0]["image"]])[0]
    assert cap["alphas"].shape == (len(cap["tokens"]), 14 * 14)
    saved = json.loads((config.path / "config.json").read_text())
    assert saved["decoder_options"] == {"transformer": {"d_model": 32, "heads": 2, "ff_dim": 64}}
