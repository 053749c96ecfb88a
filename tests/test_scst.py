"""CIDEr-D at work: self-critical training (reward, baseline, gradient sign), MBR decoding, epoch selection."""

import math

import pytest
import torch

from capkit import decode, evaluation, mbr, metrics, retrieval, scst, train
from capkit.models import CaptionDecoder, DecoderConfig

START, END, UNK = 2, 3, 1


def test_fixed_df_cider_equals_pycocoevalcap_on_its_own_corpus():
    refs = [[["a", "b", "c", "d"], ["a", "b", "x"]], [["e", "f", "g"]], [["a", "f", "g", "h", "i"], ["b", "c"]]]
    hyps = [["a", "b", "c"], ["e", "f"], ["a", "f", "g", "h"]]
    cider = metrics.CiderD(refs)  # document frequencies from the same three images pycocoevalcap would use
    ours = [cider.score(h, r) for h, r in zip(hyps, refs)]
    assert sum(ours) / 3 == pytest.approx(metrics.cider_d(refs, hyps), abs=1e-12)
    assert cider.score(hyps[0], cider.refs(refs[0])) == pytest.approx(ours[0])  # precomputed references
    assert cider.score([], refs[0]) == 0.0
    # the statistics stay those of the corpus given: scoring one image alone does not change its score
    assert cider.score(hyps[2], refs[2]) == pytest.approx(ours[2])


def test_reward_minus_baseline_sets_the_sign_of_the_update():
    """A sample above the greedy reward gets likelier after a step on the loss, one below it less likely."""
    torch.manual_seed(0)
    logits = torch.zeros(2, requires_grad=True)  # two "captions", their log-probabilities from one softmax
    lp = torch.log_softmax(logits, 0)
    loss = scst.self_critical_loss(lp, rewards=[0.9, 0.1], baselines=[0.5, 0.5])
    assert float(loss.detach()) == pytest.approx(-(0.4 * float(lp[0].detach()) - 0.4 * float(lp[1].detach())) / 2)
    loss.backward()
    assert logits.grad[0] < 0 < logits.grad[1]  # gradient descent raises caption 0 and lowers caption 1
    logits.grad = None
    scst.self_critical_loss(torch.log_softmax(logits, 0), [0.5, 0.5], [0.5, 0.5]).backward()
    assert torch.all(logits.grad == 0)  # no better or worse than greedy: no update


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return CaptionDecoder(DecoderConfig(vocab_size=12, encoder_dim=6, embed_dim=5, attention_dim=7, decoder_dim=8,
                                        dropout=0.0))


def test_sequence_logprobs_equal_the_step_by_step_sum():
    model = tiny_model().eval()
    feats = torch.randn(3, 4, 6)
    caps, fin = [[5, 6, 7], [8], []], [True, False, True]
    got = scst.sequence_logprobs(model, feats, caps, fin, START, END)
    state = model.init_state(feats)
    for b, (c, f) in enumerate(zip(caps, fin)):
        s = model.init_state(feats[b:b + 1])
        tok, total = torch.tensor([START]), 0.0
        for w in c + ([END] if f else []):
            lp, _, s = model.step(tok, s)
            total += float(lp[0, w])
            tok = torch.tensor([w])
        assert float(got[b]) == pytest.approx(total, abs=1e-5)
    del state


def test_sampling_is_seeded_and_never_emits_start_or_unk():
    model = tiny_model().eval()
    feats = torch.randn(5, 4, 6)
    a = decode.sample(model, feats, START, END, max_len=6, unk_id=UNK, generator=torch.Generator().manual_seed(1))
    b = decode.sample(model, feats, START, END, max_len=6, unk_id=UNK, generator=torch.Generator().manual_seed(1))
    assert a == b
    caps, fin = a
    assert all(t not in (START, UNK, END) for c in caps for t in c)
    assert all(len(c) == 6 for c, f in zip(caps, fin) if not f)


def plain_sample(model, feats, max_len, generator, temperature):
    """The plain sampler: every step the rows that are done leave the batch, the others draw."""
    state, tokens = model.init_state(feats), torch.full((len(feats),), START)
    rows, out, fin = torch.arange(len(feats)), [[] for _ in feats], [False] * len(feats)
    for _ in range(max_len):
        logprobs, _, state = model.step(tokens, state)
        logprobs[:, [START, UNK]] = -math.inf
        tokens = torch.multinomial((logprobs / temperature).exp(), 1, generator=generator).squeeze(1)
        for r, w in zip(rows.tolist(), tokens.tolist()):
            fin[r] = w == END
            if w != END:
                out[r].append(w)
        keep = (tokens != END).nonzero().squeeze(1)
        if not len(keep):
            break
        state, rows, tokens = model.reorder_state(state, keep), rows[keep], tokens[keep]
    return out, fin


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_sampling_draws_what_the_plain_sampler_draws(temperature):
    """decode.sample keeps rows that are done in the batch until they are a quarter of it (and sets each image
    up once for its repeats): the draws stay those of a sampler that drops every row the step it ends."""
    model = tiny_model(3).eval()
    with torch.no_grad():
        model.L_o.bias[END] += 0.3  # captions of many lengths: rows end at different steps
    feats = torch.randn(6, 4, 6)
    got = decode.sample(model, feats, START, END, max_len=9, unk_id=UNK, temperature=temperature, repeats=5,
                        generator=torch.Generator().manual_seed(4))
    want = plain_sample(model, feats.repeat_interleave(5, 0), 9, torch.Generator().manual_seed(4), temperature)
    assert got == want
    assert len({len(c) for c in want[0]}) >= 4 and not all(want[1]) and any(want[1])


def test_leave_one_out_baseline():
    # K = 3 samples of image 0 rewarded 1, 2, 3; K = 3 of image 1 all 4
    assert scst.leave_one_out([1.0, 2.0, 3.0, 4.0, 4.0, 4.0], 3) == [2.5, 2.0, 1.5, 4.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="baseline"):
        scst.scst_step(tiny_model(), None, torch.randn(1, 4, 6), [[]], metrics.CiderD([]), 2, 3, START, END, UNK,
                       baseline="median")


@pytest.mark.parametrize("baseline", ["greedy", "mean"])
def test_scst_steps_raise_the_reward(baseline):
    """References say 5 6 7: a few self-critical steps make the sampled captions score much higher."""
    model = tiny_model(1)
    feats = torch.randn(4, 4, 6)
    refs = [[[5, 6, 7]]] * 4
    cider = metrics.CiderD(refs + [[[8, 9]], [[10, 11]]])
    vecs = [cider.refs(r) for r in refs]
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    rewards = [scst.scst_step(model, opt, feats, vecs, cider, samples=4, max_len=5, start_id=START, end_id=END,
                              unk_id=UNK, generator=gen, baseline=baseline)["reward"] for _ in range(20)]
    assert sum(rewards[-5:]) / 5 > 3 * rewards[0]


def test_mbr_picks_the_samples_consensus():
    model = tiny_model(2).eval()
    feats = torch.randn(3, 4, 6)
    cider = metrics.CiderD([[[5, 6, 7]], [[8, 9]], [[10, 11, 5]]])
    got = mbr.mbr_decode(model, feats, cider, START, END, samples=6, temperature=0.7, max_len=5, unk_id=UNK,
                         generator=torch.Generator().manual_seed(3))
    caps, fin = decode.sample(model, feats.repeat_interleave(6, 0), START, END, max_len=5, unk_id=UNK,
                              generator=torch.Generator().manual_seed(3), temperature=0.7)
    for b, pick in enumerate(got):
        group = caps[6 * b:6 * b + 6]
        means = [sum(cider.score(c, [d]) for k, d in enumerate(group) if k != j) / 5 for j, c in enumerate(group)]
        j = max(range(6), key=means.__getitem__)
        assert pick["tokens"] == group[j] and pick["score"] == pytest.approx(means[j])
        assert pick["finished"] == fin[6 * b + j]


def test_an_extra_candidate_joins_the_samples():
    """mbr_beam's path: the same samples are drawn; an extra caption the evidence backs is chosen (unfinished as
    given), and one that nothing backs changes no choice: each pick is the consensus of samples + extra."""
    model = tiny_model(2).eval()
    feats = torch.randn(3, 4, 6)
    cider = metrics.CiderD([[[5, 6, 7]], [[8, 9]], [[10, 11, 5]]])
    kw = dict(samples=6, temperature=0.7, max_len=5, unk_id=UNK)
    plain = mbr.mbr_decode(model, feats, cider, START, END, generator=torch.Generator().manual_seed(3), **kw)
    backed = mbr.mbr_decode(model, feats, cider, START, END, generator=torch.Generator().manual_seed(3),
                            evidence=[[[10, 11, 5]] * 10] * 3, extra=[[([10, 11, 5], False)]] * 3, **kw)
    assert all(p["tokens"] == [10, 11, 5] and p["finished"] is False for p in backed)
    caps, _ = decode.sample(model, feats.repeat_interleave(6, 0), START, END, max_len=5, unk_id=UNK,
                            generator=torch.Generator().manual_seed(3), temperature=0.7)
    odd = [[4] * 5]  # a caption no sample shares a word with: it scores 0 and takes no vote from anyone
    lone = mbr.mbr_decode(model, feats, cider, START, END, generator=torch.Generator().manual_seed(3),
                          extra=[[(odd[0], True)]] * 3, **kw)
    for b, (p, q) in enumerate(zip(plain, lone)):
        group = caps[6 * b:6 * b + 6] + odd
        j, score = cider.consensus_plain(group)
        assert q["tokens"] == group[j] and q["score"] == pytest.approx(score)
        if not any(4 in c for c in caps[6 * b:6 * b + 6]):
            assert q["tokens"] == p["tokens"]


def test_mbr_tags_are_the_best_guess_of_the_samples():
    model = tiny_model(4).eval()
    feats = torch.randn(2, 4, 6)
    got = mbr.mbr_tags(model, feats, START, END, samples=8, max_len=4, unk_id=UNK,
                       generator=torch.Generator().manual_seed(5))
    caps, _ = decode.sample(model, feats.repeat_interleave(8, 0), START, END, max_len=4, unk_id=UNK,
                            generator=torch.Generator().manual_seed(5))
    for b, pick in enumerate(got):
        tags, f1 = metrics.best_guess_tags(caps[8 * b:8 * b + 8], 4)
        assert pick["tokens"] == tags and pick["score"] == pytest.approx(f1) and len(set(tags)) == len(tags)


def test_selection_by_cider_picks_the_right_epoch():
    # the study's BLEU-1 is flat and would keep epoch 1; CIDEr-D rises until epoch 3, a NaN never wins
    history = [{"epoch": 1, "val_bleu1": 0.645, "val_cider": 0.20}, {"epoch": 2, "val_bleu1": 0.633, "val_cider": 0.31},
               {"epoch": 3, "val_bleu1": 0.638, "val_cider": 0.35}, {"epoch": 4, "val_bleu1": 0.644, "val_cider": 0.35},
               {"epoch": 5, "val_bleu1": 0.640, "val_cider": math.nan}]
    assert evaluation.best_epoch(history, "text") == (3, 0.35)  # the earliest of equal scores
    tags = [{"epoch": 1, "val_f1": 0.2}, {"epoch": 2, "val_f1": 0.25}, {"epoch": 3, "val_f1": 0.22}]
    assert evaluation.best_epoch(tags, "hashtag") == (2, 0.25)
    assert evaluation.best_epoch([], "text") == (0, -math.inf)


def test_cosine_schedule_and_config_checks():
    cfg = train.TrainConfig(epochs=5, lr=1e-3, lr_final=0.1)
    assert cfg.lr_at(1) == pytest.approx(1e-3) and cfg.lr_at(5) == pytest.approx(1e-4)
    assert cfg.lr_at(3) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert train.TrainConfig(epochs=5, lr_schedule="constant").lr_at(4) == 5e-4
    step = train.TrainConfig(epochs=4, lr=5e-4, lr_schedule="step", lr_final=0.2)
    assert [step.lr_at(e) for e in (1, 2, 3, 4)] == pytest.approx([5e-4, 5e-4, 5e-4, 1e-4])
    with pytest.raises(ValueError, match="lr_schedule"):
        train.TrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="self-critical"):
        train.TrainConfig(target="hashtag", scst_epochs=1)
    assert train.TrainConfig(target="hashtag", search="mbr").mbr_tau == 1.0
    assert train.TrainConfig(search="mbr").mbr_tau == 0.5


def test_every_lever_on_a_multi_reference_manifest(sample_dir, cache_dir, tmp_path):
    """dataset=manifest, several references per image, tokenizer=whitespace: CIDEr-D selection, the schedule,
    label smoothing and self-critical epochs all run, and every reference counts."""
    import json

    rows = [json.loads(x) for x in (sample_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    words = {}
    with open(tmp_path / "manifest.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            c = r["category"].replace("_", " ")
            texts = [f"a photo of a {c}", f"the {c} on a {words.setdefault(c, 'sunny' if len(words) % 2 else 'grey')} day",
                     f"my trip to the {c}"]
            f.write(json.dumps({"image": str(sample_dir / r["image"]), "texts": texts, "split": r["split"]}) + "\n")
    cfg = train.TrainConfig(dataset="manifest", data_dir=str(tmp_path), run_dir=str(tmp_path / "runs"), smoke=True,
                            tokenizer="whitespace", epochs=2, batch_size=8, label_smoothing=0.1, scst_epochs=1,
                            scst_batch=8, scst_samples=2, cache_dir=str(cache_dir), beam_size=2, search="mbr",
                            mbr_samples=4)
    result = train.train(cfg, progress=False)
    history = json.loads((cfg.path / "history.json").read_text())
    assert [r["phase"] for r in history] == ["xe", "xe", "scst"]
    assert all(r["val_cider"] is not None and r["val_cider"] >= 0 for r in history)
    assert result["selection"] == "val_cider" and result["test"]["CIDEr-D"] >= 0
    assert result["search"] == "mbr" and result["fingerprint"]["mbr_samples"] == 4
    lines = [json.loads(x) for x in (cfg.path / "predictions.jsonl").read_text().splitlines()]
    assert all(len(x["reference_tokens"]) == 3 for x in lines)


def test_a_copy_with_its_sources_weights_takes_its_predictions(sample_dir, cache_dir, tmp_path, monkeypatch):
    """A self-critical copy whose best weights are still its source's (its epoch never beat them) takes the
    source's test predictions instead of decoding again, and scores them itself; other weights decode."""
    import json

    common = dict(data_dir=str(sample_dir), cache_dir=str(cache_dir), run_dir=str(tmp_path), smoke=True, epochs=2,
                  batch_size=8, search="mbr", mbr_samples=3)
    source = train.TrainConfig(**common)
    first = train.train(source, progress=False)
    copy = train.TrainConfig(**common, run_name="copy", start_from=str(source.path), scst_epochs=1, scst_lr=0.0,
                             scst_batch=8, scst_samples=2)
    calls = []
    real_predict = evaluation.predict
    def counted(model, prep, split, *a, **k):
        calls.append(split)
        return real_predict(model, prep, split, *a, **k)

    monkeypatch.setattr(evaluation, "predict", counted)  # validation decodes through it, and the test would
    result = train.train(copy, progress=False)
    history = json.loads((copy.path / "history.json").read_text())
    assert [r["phase"] for r in history] == ["xe", "xe", "scst"] and result["best_phase"] == "xe"
    assert "test" not in calls and result["predictions_from"] == str(source.path)
    assert result["fingerprint"] == first["fingerprint"] and result["test"] == first["test"]
    assert result["run"] == "copy" and result["epochs_run"] == 3 and result["decode_images_per_second"] is None
    ours, theirs = ([json.loads(x)["prediction"] for x in (c.path / "predictions.jsonl").read_text().splitlines()]
                    for c in (copy, source))
    assert ours == theirs
    # other weights: decoded, never taken from the source
    prep = train.prepare(copy, progress=False)
    model, _ = train.fit(prep, progress=False)  # (finished: nothing trained, the best weights loaded)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    again = train.test(model, prep)
    assert calls[-1] == "test" and again["predictions_from"] is None and again["fingerprint"] != first["fingerprint"]


def test_the_reward_can_read_the_nearest_images_texts(sample_dir, cache_dir, tmp_path):
    """scst_neighbours=k: each image's reward references are its own, then the first reference of each of its k
    nearest other training images (cosine on the final pooled vectors, closest first, never itself); the
    self-critical epoch then rewards the same samples differently."""
    import json

    import numpy as np

    common = dict(data_dir=str(sample_dir), cache_dir=str(cache_dir), run_dir=str(tmp_path), smoke=True, epochs=2,
                  batch_size=8, search="beam", beam_size=1)
    source = train.TrainConfig(**common)
    train.train(source, progress=False)
    prep = train.prepare(source, progress=False)
    images, ref_ids = retrieval.scst_data(prep)
    assert retrieval.scst_references(prep, images, ref_ids, 0) == ref_ids
    got = retrieval.scst_references(prep, images, ref_ids, 3)
    x = prep.store.global_pooled(images).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)  # never the image itself
    for i, own in enumerate(ref_ids):
        near = np.argsort(-sim[i], kind="stable")[:3]
        assert got[i] == own + [ref_ids[j][0] for j in near]
    with pytest.raises(ValueError, match="scst_neighbours"):
        train.TrainConfig(scst_neighbours=-1)

    rewards = {}
    for k in (0, 3):  # the same start, no update (lr 0): the same samples, scored against other references
        copy = train.TrainConfig(**common, run_name=f"copy-k{k}", start_from=str(source.path), scst_epochs=1,
                                 scst_lr=0.0, scst_batch=8, scst_samples=2, scst_neighbours=k)
        train.train(copy, progress=False)
        history = json.loads((copy.path / "history.json").read_text())
        assert [r["phase"] for r in history] == ["xe", "xe", "scst"]
        rewards[k] = history[-1]["train_reward"]
    assert rewards[0] != rewards[3]
