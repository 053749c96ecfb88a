"""Ensembles of trained runs (capkit.ensemble): the mixture each step decodes, and the command that tests one."""

import json
import os
import subprocess
import sys

import pytest
import torch

from capkit import benchmarks, decode, ensemble, results, runs, store, text, train
from capkit.store import ROOT
from capkit.ensemble import Ensemble


@pytest.fixture(scope="module")
def members(tmp_path_factory, sample_dir, cache_dir):
    """Smoke soft and Look-Back text runs on one encoder, tested by MBR with beam 2's caption as a candidate."""
    base = tmp_path_factory.mktemp("ensemble_runs")
    paths = []
    for decoder in ("soft", "lookback"):
        config = train.TrainConfig(data_dir=str(sample_dir), run_dir=str(base), cache_dir=str(cache_dir), smoke=True,
                                   epochs=2, batch_size=8, encoder="efficientnet_lite0", decoder=decoder,
                                   target="text", mbr_beam=2)
        train.train(config, progress=False)
        paths.append(config.path)
    return paths


def test_a_mixture_of_one_model_with_itself_decodes_as_the_model(members, one_thread):
    model = runs.load_run(members[0]).model
    feats = torch.randn(3, 49, model.config.encoder_dim)
    pair = Ensemble([model, model]).eval()
    for beam in (1, 3):
        search = decode.greedy if beam == 1 else lambda m, f, *a, **k: decode.beam_search(m, f, *a, beam_size=3, **k)
        alone = search(model, feats, text.START_ID, text.END_ID, max_len=8, unk_id=text.UNK_ID)
        mixed = search(pair, feats, text.START_ID, text.END_ID, max_len=8, unk_id=text.UNK_ID)
        assert [h.tokens for h in mixed] == [h.tokens for h in alone]
        assert [h.score for h in mixed] == pytest.approx([h.score for h in alone], abs=1e-4)


def test_each_step_is_the_mean_of_the_members_probabilities(members, one_thread):
    soft, lookback = (runs.load_run(p).model for p in members)
    pair = Ensemble([soft, lookback]).eval()
    feats = torch.randn(2, 49, soft.config.encoder_dim)
    tokens = torch.full((2,), text.START_ID)
    with torch.inference_mode():
        s_soft, s_look, s_pair = soft.init_state(feats), lookback.init_state(feats), pair.init_state(feats)
        for word in (text.START_ID, 7, 9):  # three steps: the members' states move with the mixture's
            tokens = torch.full((2,), word)
            lp_a, al_a, s_soft = soft.step(tokens, s_soft)
            lp_b, al_b, s_look = lookback.step(tokens, s_look)
            lp, alpha, s_pair = pair.step(tokens, s_pair)
            assert torch.allclose(lp.exp(), (lp_a.exp() + lp_b.exp()) / 2, atol=1e-6)
            assert torch.allclose(alpha, (al_a + al_b) / 2, atol=1e-6)
        rows = torch.tensor([1, 1, 0])
        moved = pair.reorder_state(s_pair, rows)
        lp, _, _ = pair.step(torch.tensor([3, 3, 3]), moved)
        assert torch.allclose(lp[0], lp[1]) and not torch.allclose(lp[0], lp[2])


def test_the_command_tests_an_ensemble_as_one_more_row(members):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "capkit.ensemble", *map(str, members)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = members[0].parent / "efficientnet_lite0-soft+lookback-text"
    m = json.loads((folder / "metrics.json").read_text())
    alone = json.loads((members[0] / "metrics.json").read_text())
    assert m["decoder"] == "soft+lookback" and [x["run"] for x in m["members"]] == [p.name for p in members]
    assert m["search"] == "mbr" and m["fingerprint"]["mbr_beam"] == 2 and m["n"] == alone["n"]
    assert set(m["test"]) == set(alone["test"]) and 0 <= m["val"]["val_cider"]
    assert m["train_seconds"] == pytest.approx(sum(json.loads((p / "metrics.json").read_text())["train_seconds"]
                                                   for p in members))
    # its predictions rescore to its metrics (05's check), and the real-photo table lists it
    check = results.check_runs(members[0].parent).set_index("run")
    assert check.loc[folder.name, "differing"] == "none"
    table = benchmarks.real_photo_table(members[0].parent, "sample")
    assert "EfficientNet-Lite0 + ensemble of soft & Look-Back" in table.index
    assert "beam 2's caption" in table.loc["EfficientNet-Lite0 + ensemble of soft & Look-Back", "protocol"]
    # a second run finds its results written (same fingerprint) and decodes nothing
    before = (folder / "predictions.jsonl").stat().st_mtime_ns
    again = ensemble.test_ensemble(members)
    assert again["test"] == m["test"] and (folder / "predictions.jsonl").stat().st_mtime_ns == before


def test_members_must_share_the_data_and_the_vocabulary(members, tmp_path):
    odd = tmp_path / "odd-run"
    odd.mkdir()
    ckpt = store.load_checkpoint(members[1] / "best.pt")
    ckpt["config"]["max_len"] = 12
    store.save_checkpoint(ckpt, odd / "best.pt")
    with pytest.raises(ValueError, match=r"odd-run: max_len is 12"):
        ensemble.test_ensemble([members[0], odd])
    ckpt["config"]["max_len"] = runs.load_run(members[0]).config.max_len
    itos = ckpt["vocab"]["itos"]
    ckpt["vocab"]["itos"] = itos[:4] + itos[5:] + itos[4:5]  # the same words, two ids swapped round
    store.save_checkpoint(ckpt, odd / "best.pt")
    with pytest.raises(ValueError, match="odd-run: its vocabulary differs"):
        ensemble.test_ensemble([members[0], odd])
    with pytest.raises(ValueError, match="two members or more"):
        Ensemble([runs.load_run(members[0]).model])


def test_a_loaded_run_with_mbr_beam_captions_as_its_test_did(members, cache_dir):
    """mbr_beam reaches the captioning path too: the first MBR batch of a member's test photos gets the words
    its test chose (beam 2's caption among the candidates)."""
    run = runs.load_run(members[0])
    assert run.config.mbr_beam == 2 and run.tested_search() == "mbr"
    lines = run.predictions()[:16]  # the test's first MBR batch: 64 // 4 images on the CPU, one sampling stream
    caps = run.caption_many([line["image"] for line in lines], batch_size=16, cache_dir=cache_dir)
    assert [c["tokens"] for c in caps] == [line["prediction_tokens"] for line in lines]


@pytest.fixture(scope="module")
def other_encoder(tmp_path_factory, sample_dir, cache_dir, members):
    """A smoke soft run on another encoder with the same 14x14 grid (EfficientNet-Lite2's stage 5), beside the
    members."""
    config = train.TrainConfig(data_dir=str(sample_dir), run_dir=str(members[0].parent), cache_dir=str(cache_dir),
                               smoke=True, epochs=2, batch_size=8, encoder="efficientnet_lite2", decoder="soft",
                               target="text", mbr_beam=2)
    train.train(config, progress=False)
    return config.path


def test_members_on_two_encoders_each_read_their_own_features(members, other_encoder, one_thread):
    a, b = runs.load_run(members[0]), runs.load_run(other_encoder)
    slices = ensemble.feature_slices([a.config, b.config])
    da, db = a.model.config.encoder_dim, b.model.config.encoder_dim
    assert slices == [(0, da), (da, da + db)]
    fa, fb = torch.randn(2, 196, da), torch.randn(2, 196, db)
    pair = Ensemble([a.model, b.model], slices).eval()
    with torch.inference_mode():
        sa, sb, sp = a.model.init_state(fa), b.model.init_state(fb), pair.init_state(torch.cat([fa, fb], -1))
        tokens = torch.full((2,), text.START_ID)
        lp_a, al_a, _ = a.model.step(tokens, sa)
        lp_b, al_b, _ = b.model.step(tokens, sb)
        lp, alpha, _ = pair.step(tokens, sp)
    assert torch.allclose(lp.exp(), (lp_a.exp() + lp_b.exp()) / 2, atol=1e-6)
    assert torch.allclose(alpha, (al_a + al_b) / 2, atol=1e-6)


def test_an_ensemble_across_encoders_is_an_extra_row(members, other_encoder, one_thread):
    m = ensemble.test_ensemble([members[0], other_encoder])
    folder = members[0].parent / "efficientnet_lite0+efficientnet_lite2-soft+soft-text"
    assert (folder / "predictions.jsonl").exists() and m["encoder"] == "efficientnet_lite0+efficientnet_lite2"
    assert [x["encoder"] for x in m["members"]] == ["efficientnet_lite0", "efficientnet_lite2"]
    # the joined features: the second encoder's regions follow the first's, for the same photo
    prep = train.prepare(runs.load_run(members[0]).config, progress=False)
    configs = [runs.load_run(p).config for p in (members[0], other_encoder)]
    ensemble.join_features(prep, configs)
    image = prep.records["test"][0].image
    lite2 = train.prepare(configs[1], progress=False).features([image])
    assert torch.equal(prep.features([image])[..., 112:], lite2)
    check = results.check_runs(members[0].parent).set_index("run")
    assert check.loc[folder.name, "differing"] == "none"
    label = "EfficientNet-Lite0 & EfficientNet-Lite2 + ensemble of soft"
    table = benchmarks.real_photo_table(members[0].parent, "sample")
    assert label in table.index and table.loc[label, "protocol"].count("224 px") == 2
    # not a cell of the study's grid: its row is an extra one, under its folder's name
    study = results.study_table(results.collect(members[0].parent), "text")
    assert not any(i.startswith("EfficientNet-Lite0 & EfficientNet-Lite2 + soft") for i in study.index)
    assert f"{label} [{folder.name}]" in study.index


def test_members_must_share_the_grid(members, tmp_path):
    odd = tmp_path / "odd-grid"
    odd.mkdir()
    ckpt = store.load_checkpoint(members[1] / "best.pt")
    ckpt["config"]["encoder"] = "efficientnet_lite0_multi7"  # 7x7 against the members' 14x14
    store.save_checkpoint(ckpt, odd / "best.pt")
    with pytest.raises(ValueError, match=r"odd-grid: its encoder efficientnet_lite0_multi7 has a 7x7 grid"):
        ensemble.test_ensemble([members[0], odd])
    ckpt["config"]["encoder"] = runs.load_run(members[0]).config.encoder
    ckpt["config"]["encoder_weights"] = "random"  # the same encoder with other weights: other features
    store.save_checkpoint(ckpt, odd / "best.pt")
    with pytest.raises(ValueError, match=r"odd-grid: encoder_weights is 'random'"):
        ensemble.test_ensemble([members[0], odd])
