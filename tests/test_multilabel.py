"""capkit.multilabel: the set-prediction hashtag model, its loss, and the output rule chosen on validation."""

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from capkit import metrics, models
from capkit import multilabel as ML
from capkit.text import END_ID, PAD_ID, START_ID, UNK_ID

V, L, D = 4 + 10, 5, 8  # 4 special ids, 10 tags


def captions_of(tag_lists):
    """captions [B, T] = <start> ids <end> <pad>.. and lengths, as prepare.batches builds them."""
    lengths = torch.tensor([len(t) + 2 for t in tag_lists])
    caps = torch.full((len(tag_lists), int(lengths.max())), PAD_ID, dtype=torch.long)
    for b, t in enumerate(tag_lists):
        caps[b, : len(t) + 2] = torch.tensor([START_ID, *t, END_ID])
    return caps, lengths


def tagger(pooling="label", dropout=0.0, hidden=16, seed=0):
    torch.manual_seed(seed)
    return ML.MultilabelTagger(ML.MultilabelConfig(vocab_size=V, encoder_dim=D, hidden_dim=hidden, dropout=dropout,
                                                   pooling=pooling))


@pytest.mark.parametrize("pooling", ML.POOLINGS)
def test_overfits_a_handful_of_images(pooling):
    torch.manual_seed(1)
    feats = torch.randn(6, L, D)
    tags = [[4, 5], [6, 7, 8], [9], [10, 11, 4], [12, 13], [5, 8, 13, 6]]  # distinct sets of different sizes
    caps, lengths = captions_of(tags)
    model = tagger(pooling, hidden=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss, parts = model.loss(feats, caps, lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert parts["loss"] < 0.05
    probs = model.scores(feats)
    assert ML.apply_rule(probs, {"kind": "threshold", "value": 0.5}) == [sorted(t, key=lambda v: -probs[b, v])
                                                                        for b, t in enumerate(tags)]
    for b, t in enumerate(tags):
        assert set(ML.apply_rule(probs[b:b + 1], {"kind": "k", "value": len(t)})[0]) == set(t)
    assert ML.choose_rule(probs, tags)["val_f1"] == 1.0


def test_loss_is_bce_summed_over_the_tags_and_averaged_over_images():
    model = tagger(dropout=0.0)
    feats = torch.randn(3, L, D)
    # row 0: UNK inside is no target; row 1: a tag after <end> (beyond its length) is no target; row 2: a repeat
    caps = torch.tensor([[START_ID, 4, UNK_ID, 9, END_ID, PAD_ID],
                         [START_ID, 5, END_ID, 6, PAD_ID, PAD_ID],
                         [START_ID, 7, 7, 13, 8, END_ID]])
    lengths = torch.tensor([5, 3, 6])
    y = ML.targets(caps, lengths, V)
    want = torch.zeros(3, V)
    want[0, [4, 9]] = want[1, 5] = want[2, [7, 8, 13]] = 1.0
    assert torch.equal(y, want)

    loss, parts = model.loss(feats, caps, lengths, lambda_att=1.0)
    logits = model(feats)
    tags = slice(4, V)  # the special ids are 0..3
    expected = F.binary_cross_entropy_with_logits(logits[:, tags], want[:, tags], reduction="sum") / 3
    p = torch.sigmoid(logits[:, tags])
    by_hand = -(want[:, tags] * p.log() + (1 - want[:, tags]) * (1 - p).log()).sum() / 3
    assert torch.allclose(loss, expected) and torch.allclose(loss, by_hand, atol=1e-5)
    assert set(parts) == {"ce", "att", "loss"} and float(parts["att"]) == 0.0
    assert not parts["loss"].requires_grad and torch.allclose(parts["ce"], loss.detach())
    # the special ids' logits get no gradient: they are never targets
    loss.backward()
    assert model.out.weight.grad[list(ML.SPECIAL_IDS)].abs().sum() == 0
    assert model.out.weight.grad[tags].abs().sum() > 0

    smoothed, _ = model.loss(feats, caps, lengths, label_smoothing=0.2)
    soft = want[:, tags] * 0.8 + 0.1
    assert torch.allclose(smoothed, F.binary_cross_entropy_with_logits(logits[:, tags], soft, reduction="sum") / 3)


def test_scores_and_attention():
    model = tagger(dropout=0.5)
    model.train()
    feats = torch.randn(2, L, D).half()  # float16 features from the cache
    probs = model.scores(feats)
    assert model.training  # restored
    assert probs.shape == (2, V) and probs.dtype == torch.float32
    assert (probs[:, list(ML.SPECIAL_IDS)] == 0).all() and (probs[:, 4:] > 0).all() and (probs <= 1).all()
    assert torch.equal(probs, model.scores(feats))  # eval mode: no dropout
    alpha = model.attention(feats)
    assert alpha.shape == (2, V, L) and torch.allclose(alpha.sum(2), torch.ones(2, V))
    assert not torch.allclose(alpha, torch.full_like(alpha, 1 / L))  # label-wise: not uniform
    # its logits are sum_i alpha_vi (u_v . h_i) + c_v
    model.eval()
    with torch.no_grad():
        h = model._regions(feats)
        s = torch.einsum("bvl,blh,vh->bv", alpha, h, model.out.weight) + model.out.bias
        assert torch.allclose(s, model(feats), atol=1e-5)
    assert torch.allclose(tagger("mean").attention(feats), torch.full((2, V, L), 1 / L))


def test_mil_pooling_is_a_soft_maximum_of_the_regions_scores():
    model = tagger("mil")
    model.eval()
    feats = torch.randn(2, L, D)
    with torch.no_grad():
        h = model._regions(feats)  # [2, L, H]
        s = torch.einsum("blh,vh->blv", h, model.out.weight)  # u_v . h_i
        # s_v = log(1/L sum_i exp(u_v . h_i)) + c_v, by hand
        by_hand = torch.log(torch.exp(s).sum(1) / L) + model.out.bias
        assert torch.allclose(model(feats), by_hand, atol=1e-5)
        # never below the mean of the regions' scores (Jensen), equal to it when the regions are alike
        assert (model(feats) >= s.mean(1) + model.out.bias - 1e-5).all()
        alike = feats[:, :1].expand(2, L, D)
        mean = tagger("mean")
        mean.load_state_dict(model.state_dict())
        assert torch.allclose(model(alike), mean.eval()(alike), atol=1e-5)
    # the map of tag v: each region's share of exp(u_v . h_i), where its gradient goes
    alpha = model.attention(feats)
    assert torch.allclose(alpha, torch.softmax(s, dim=1).transpose(1, 2), atol=1e-6)
    x = model._regions(feats).detach().requires_grad_(True)
    logits = torch.logsumexp(x @ model.out.weight.t(), dim=1)
    logits[0, 6].backward()
    share = (x.grad[0] @ model.out.weight[6]) / (model.out.weight[6] @ model.out.weight[6])
    assert torch.allclose(share, alpha[0, 6], atol=1e-5)
    # one region that shows a tag raises it far more than under the mean
    bright = torch.zeros(1, L, D)
    bright[0, 2] = 5 * torch.randn(D)
    with torch.no_grad():
        h = model._regions(bright)[0]
        model.out.weight[6] = 4 * (h[2] - h[0]) / (h[2] - h[0]).norm() ** 2  # u_6 . (h_2 - h_other) = 4
        mean.load_state_dict(model.state_dict())
        gap = (model(bright) - mean(bright))[0]
    # mil: log((L - 1 + e^4) / L) = 2.46 above the other regions' score; mean: 4 / L = 0.8 above it
    assert torch.isclose(gap[6], torch.log(torch.tensor((L - 1 + math.exp(4)) / L)) - 4 / L, atol=1e-4)
    assert (gap[4:] >= -1e-5).all()


def test_apply_rule_orders_by_probability_and_respects_the_rule():
    probs = torch.zeros(3, V)
    probs[0, 4:9] = torch.tensor([0.2, 0.9, 0.5, 0.7, 0.1])  # ids 4..8
    probs[1, 10], probs[1, 6] = 0.3, 0.4  # everything below 0.5
    probs[2, 12] = probs[2, 5] = 0.8  # a tie: lower id first
    probs[:, UNK_ID] = probs[:, END_ID] = 0.99  # special ids are never predicted, whatever their score
    assert ML.apply_rule(probs, {"kind": "k", "value": 2}) == [[5, 7], [6, 10], [5, 12]]
    assert ML.apply_rule(probs, {"kind": "k", "value": 1}) == [[5], [6], [5]]
    assert ML.apply_rule(probs, {"kind": "threshold", "value": 0.5}) == [[5, 7, 6], [6], [5, 12]]  # >= t
    assert ML.apply_rule(probs, {"kind": "threshold", "value": 0.5, "min_tags": 0}) == [[5, 7, 6], [], [5, 12]]
    assert ML.apply_rule(probs, {"kind": "threshold", "value": 0.35, "min_tags": 3})[1] == [6, 10, 4]
    allk = ML.apply_rule(probs, {"kind": "k", "value": 50})  # more than the tags: every tag, no special id
    assert all(sorted(p) == list(range(4, V)) for p in allk)
    with pytest.raises(ValueError):
        ML.apply_rule(probs, {"kind": "best", "value": 1})


def _brute_force_best(probs, true, labels, max_k, thresholds):
    """Every candidate rule through apply_rule and metrics.hashtag_scores on strings: the best micro F1."""
    rules = [{"kind": "k", "value": k} for k in range(1, max_k + 1)]
    rules += [{"kind": "threshold", "value": t, "min_tags": 1} for t in thresholds]
    f1s = [metrics.hashtag_scores(true, [[labels[v] for v in p] for p in ML.apply_rule(probs, r)])["f1"]
           for r in rules]
    return max(f1s)


def test_rule_is_chosen_on_validation_only_and_its_f1_is_metrics_micro_f1():
    assert list(inspect.signature(ML.choose_rule).parameters)[:2] == ["val_probs", "val_true"]
    labels = ["<pad>", "<unk>", "<start>", "<end>"] + [f"t{i}" for i in range(V - 4)]
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(40, V, generator=g) * 0.3
    # validation: one true tag per image, ranked first with p 0.9 -> top-1 (or t > 0.3) is best
    val_true, test_true = [], []
    for n in range(20):
        probs[n, 4 + n % 10] = 0.9
        val_true.append({labels[4 + n % 10]})
    # "test": four true tags per image, ranked first -> top-4 is best there
    for n in range(20, 40):
        tags = [4 + (n + j) % 10 for j in range(4)]
        probs[n, tags] = torch.tensor([0.9, 0.85, 0.8, 0.75])
        test_true.append({labels[v] for v in tags} | ({"not_in_vocab"} if n % 5 == 0 else set()))
    val_probs, test_probs = probs[:20], probs[20:]
    thresholds = (0.1, 0.5, 0.95)

    rule = ML.choose_rule(val_probs, val_true, max_k=6, thresholds=thresholds, labels=labels)
    on_test = ML.choose_rule(test_probs, test_true, max_k=6, thresholds=thresholds, labels=labels)
    assert rule["kind"] == "k" and rule["value"] == 1 and rule["val_f1"] == 1.0  # the first of the ties
    assert on_test["kind"] == "k" and on_test["value"] == 4
    # the validation choice does not move when the test images change
    assert ML.choose_rule(val_probs, val_true, max_k=6, thresholds=thresholds, labels=labels) == rule

    # its F1 is metrics.hashtag_scores' micro F1, for the chosen rule and as the best over all candidates,
    # also with true tags outside the vocabulary (test_true) and with noisy probabilities
    noisy = (probs + torch.rand(40, V, generator=g) * 0.6).clamp(max=1)
    true = val_true + test_true
    for p, t in ((test_probs, test_true), (noisy, true)):
        chosen = ML.choose_rule(p, t, max_k=6, thresholds=thresholds, labels=labels)
        preds = [[labels[v] for v in row] for row in ML.apply_rule(p, chosen)]
        scores = metrics.hashtag_scores([sorted(s) for s in t], preds)
        assert chosen["val_f1"] == pytest.approx(scores["f1"], abs=1e-12)
        assert chosen["val_precision"] == pytest.approx(scores["precision"], abs=1e-12)
        assert chosen["val_f1"] == pytest.approx(_brute_force_best(p, [sorted(s) for s in t], labels, 6, thresholds))
    # on ids (no labels): the same numbers when every true tag is in the vocabulary
    ids_true = [{labels.index(x) for x in s} for s in val_true]
    assert ML.choose_rule(noisy[:20], ids_true, max_k=6, thresholds=thresholds) == \
        ML.choose_rule(noisy[:20], val_true, max_k=6, thresholds=thresholds, labels=labels)
    with pytest.raises(ValueError):
        ML.choose_rule(val_probs, val_true[:-1])


def test_a_threshold_rule_wins_when_set_sizes_vary():
    probs = torch.zeros(4, V)
    true = [[4], [5, 6, 7], [8, 9], [10, 11, 12, 13]]
    for n, (tags, wrong) in enumerate(zip(true, [13, 4, 5, 6])):
        probs[n, tags] = 0.8
        probs[n, wrong] = 0.2  # one wrong tag, lower
    rule = ML.choose_rule(probs, true, max_k=5, thresholds=(0.3, 0.5))
    assert rule["kind"] == "threshold" and rule["value"] == 0.3 and rule["val_f1"] == 1.0
    assert [set(p) for p in ML.apply_rule(probs, rule)] == [set(t) for t in true]


def test_config_roundtrip_and_registry():
    cfg = ML.MultilabelConfig(vocab_size=V, encoder_dim=D, hidden_dim=24, dropout=0.1, pooling="mean")
    assert ML.MultilabelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        ML.MultilabelConfig(vocab_size=V, encoder_dim=D, pooling="max")

    spec = models.decoder_spec("multilabel")
    assert spec.search == "set" and spec.targets == ("hashtag",) and spec.config is ML.MultilabelConfig
    # the trainer's sizes: what the config does not have is dropped
    model = spec.build(vocab_size=V, encoder_dim=D, embed_dim=300, attention_dim=512, decoder_dim=512,
                       dropout=0.25, gate="scalar")
    assert isinstance(model, ML.MultilabelTagger)
    assert model.config == ML.MultilabelConfig(vocab_size=V, encoder_dim=D, dropout=0.25)
    # a checkpoint: config dict + state dict -> the same scores
    feats = torch.randn(2, L, D)
    again = spec.load(model.config.to_dict())
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.scores(feats), model.scores(feats))
    for pooling in ML.POOLINGS:
        m = tagger(pooling)
        back = spec.load(m.config.to_dict())
        back.load_state_dict(m.state_dict())  # "special" is not in the state dict: nothing to mismatch
        assert torch.equal(back.scores(feats), m.scores(feats))


def test_neighbour_votes_and_the_blend_by_hand():
    # four training posts over tags 4..7; special ids in a list are never votes
    hot = ML.multi_hot([[4, 5], [5], [5, 6, PAD_ID], [7, 99]], 8)
    assert hot.tolist() == [[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1, 0, 0],
                            [0, 0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0, 1]]
    near = torch.tensor([[2, 1, 0], [3, 0, 1]])  # each image's training posts, closest first
    votes = ML.neighbour_votes(hot, near, 2)
    assert votes[0].tolist() == [0, 0, 0, 0, 0, 1.0, 0.5, 0]  # posts 2 and 1: tag 5 twice, tag 6 once
    assert votes[1].tolist() == [0, 0, 0, 0, 0.5, 0.5, 0, 0.5]  # posts 3 and 0
    assert torch.equal(ML.neighbour_votes(hot, near, 3, chunk=1), ML.neighbour_votes(hot, near, 3))
    with pytest.raises(ValueError, match="at least k = 4"):
        ML.neighbour_votes(hot, near, 4)
    probs = torch.tensor([[0, 0, 0, 0, 0.8, 0.2, 0.0, 0.4]])
    assert ML.blend(probs, votes[:1], 0.25)[0].tolist() == pytest.approx([0, 0, 0, 0, 0.6, 0.4, 0.125, 0.3])
    assert torch.equal(ML.blend(probs, votes[:1], 0.0), probs)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ML.blend(probs, votes[:1], 1.5)
