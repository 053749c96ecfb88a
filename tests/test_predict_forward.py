"""capkit.predict_forward: the decoding score against a hand computation, the loss composition, beam 1 = greedy,
overfitting a few samples, attention maps, the registry, and weight 0 = CaptionDecoder."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from capkit.decode import beam_search, greedy, sample
from capkit.decoders import DECODERS
from capkit.models import CaptionDecoder, DecoderConfig, caption_loss
from capkit.predict_forward import PredictForwardConfig, PredictForwardDecoder

PAD, START, END = 0, 1, 2
V, D, L = 23, 12, 6

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def make_pf(attention="soft", forward_weight=0.5, forward_loss_weight=1.0, dropout=0.0, seed=0, V=V):
    torch.manual_seed(seed)
    cfg = PredictForwardConfig(vocab_size=V, encoder_dim=D, embed_dim=8, attention_dim=10, decoder_dim=16,
                               dropout=dropout, attention=attention, forward_weight=forward_weight,
                               forward_loss_weight=forward_loss_weight)
    return PredictForwardDecoder(cfg).double()


def random_pf(attention="soft", forward_weight=0.5, seed=0, V=30):
    """An untrained PF decoder with peaked heads, whose captions end at different steps (as test_decode's
    random_model: the <end> logit reads one embedding channel that differs from word to word)."""
    model = make_pf(attention, forward_weight, seed=seed, V=V).eval()
    with torch.no_grad():
        for head in (model.L_o, model.L_f):
            head.weight.mul_(10)
            head.weight[:, 0] = 0
        model.L_z.weight.mul_(4)
        model.L_o.weight[END, 0] = 10.0
        model.L_o.bias[END] = -2.0
        model.embedding.weight[:, 0] = torch.linspace(-0.6, 0.6, V)[torch.randperm(V)]
    return model


def feats_for(B, seed=0, dim=D):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, L, dim, generator=g, dtype=torch.float64)


def make_batch(B=6, T=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    lengths[0], lengths[1] = T, 2  # a full-length caption, and an empty one (<start> <end>: no word after next)
    captions = torch.randint(3, V, (B, T), generator=g)
    captions[:, 0] = START
    for b, n in enumerate(lengths.tolist()):
        captions[b, n - 1] = END
        captions[b, n:] = PAD
    return feats_for(B, seed), captions, lengths


# -- 1. the decoding score by hand ----------------------------------------------------------------------------

P_ROWS = {  # p_t = P[y_{t-1}]: the next word's distribution after each word (5 words: pad, start, end, a, b)
    START: [0.0, 0.0, 0.1, 0.5, 0.4],
    3: [0.0, 0.0, 0.2, 0.3, 0.5],
    4: [0.0, 0.0, 0.6, 0.3, 0.1],
}
Q_ROWS = {  # q_t = Q[y_{t-1}]: the word after next's distribution
    START: [0.0, 0.0, 0.1, 0.8, 0.1],
    3: [0.0, 0.0, 0.5, 0.25, 0.25],
    4: [0.0, 0.0, 0.7, 0.1, 0.2],
}


def table_pf(mu):
    """A 5-word PF decoder whose heads read only the previous word: one-hot embeddings, L_h = L_z = 0,
    L_o = log P^T and L_f = log Q^T, so p_t = P[y_{t-1}] and q_t = Q[y_{t-1}] whatever the image."""
    model = PredictForwardDecoder(PredictForwardConfig(vocab_size=5, encoder_dim=4, embed_dim=5, attention_dim=4,
                                                       decoder_dim=4, dropout=0.0, forward_weight=mu)).double()
    with torch.no_grad():
        model.embedding.weight.copy_(torch.eye(5))
        for p in (model.L_h.weight, model.L_h.bias, model.L_z.weight, model.L_o.bias, model.L_f.bias):
            p.zero_()
        for head, rows in ((model.L_o, P_ROWS), (model.L_f, Q_ROWS)):
            table = torch.full((5, 5), -1e4, dtype=torch.float64)  # words never seen: anything finite
            for prev, probs in rows.items():
                table[prev] = torch.tensor([math.log(p) if p > 0 else -1e4 for p in probs], dtype=torch.float64)
            head.weight.copy_(table.t())
    return model.eval()


def by_hand(p, q, mu):
    """log of p(w) q(w)^mu / sum_v p(v) q(v)^mu, word by word in plain floats."""
    un = [pw * qw ** mu if pw > 0 and qw > 0 else 0.0 for pw, qw in zip(p, q)]
    return [math.log(u / sum(un)) if u > 0 else -math.inf for u in un]


def test_step_score_is_the_hand_computed_combination():
    mu = 0.5
    model = table_pf(mu)
    feats = torch.zeros(2, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        state = model.init_state(feats)
        s1, _, state = model.step(torch.tensor([START, START]), state)  # no forward prediction yet: s_1 = log p_1
        for row in range(2):
            for w in (END, 3, 4):
                assert math.isclose(float(s1[row, w]), math.log(P_ROWS[START][w]), abs_tol=1e-9)
        s2, _, state = model.step(torch.tensor([3, 4]), state)  # row 0 saw "a", row 1 "b"; both q_1 = Q[START]
        s3, _, _ = model.step(torch.tensor([4, 3]), model.reorder_state(state, torch.tensor([1, 0])))
    for row, prev in enumerate((3, 4)):
        want = by_hand(P_ROWS[prev], Q_ROWS[START], mu)
        for w in (END, 3, 4):
            assert math.isclose(float(s2[row, w]), want[w], abs_tol=1e-9)
    # a few of those numbers written out: after "a", s_2(b) = log(.5 * .1^.5 / (.2 * .1^.5 + .3 * .8^.5 + .5 * .1^.5))
    assert math.isclose(float(s2[0, 4]), math.log(0.5 * 0.1 ** 0.5 / (0.2 * 0.1 ** 0.5 + 0.3 * 0.8 ** 0.5
                                                                       + 0.5 * 0.1 ** 0.5)), abs_tol=1e-9)
    assert math.isclose(float(s2[0, 3]), math.log(0.3 * 0.8 ** 0.5 / (0.2 * 0.1 ** 0.5 + 0.3 * 0.8 ** 0.5
                                                                       + 0.5 * 0.1 ** 0.5)), abs_tol=1e-9)
    # step 3 after reordering the rows: row 0 now holds row 1's forward prediction q_2 = Q["b"], and reads "b"
    for row, (prev, fwd_of) in enumerate(((4, 4), (3, 3))):
        want = by_hand(P_ROWS[prev], Q_ROWS[fwd_of], mu)
        for w in (END, 3, 4):
            assert math.isclose(float(s3[row, w]), want[w], abs_tol=1e-9)
    assert torch.allclose(s3.exp().sum(1), torch.ones(2, dtype=s3.dtype))  # a proper log-distribution


def test_sampling_draws_from_the_combined_score():
    """sample() (MBR's candidates) draws from s_t: with mu large the forward prediction decides the second word."""
    model = table_pf(mu=8.0)  # s_2 after "b" (P: end .6, a .3, b .1; Q[start]: a .8): "a" gets ~.3 * 8^8 / ...
    feats = torch.zeros(400, 3, 4, dtype=torch.float64)
    def share_b_then_a(model):  # of the captions that start with "b", the share whose second word is "a"
        caps, _ = sample(model, feats, START, END, max_len=2, generator=torch.Generator().manual_seed(0))
        after_b = [c[1:] for c in caps if c[:1] == [4]]  # [] when <end> came second
        assert len(after_b) > 100
        return sum(rest == [3] for rest in after_b) / len(after_b)

    assert share_b_then_a(model) > 0.95
    assert 0.2 < share_b_then_a(table_pf(mu=0.0)) < 0.4  # p_2("a" | "b") = .3


# -- 2. beam 1 = greedy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["soft", "lookback"])
def test_beam_one_equals_greedy(attention):
    model = random_pf(attention)
    feats = feats_for(16)
    g = greedy(model, feats, START, END, max_len=12)
    b = beam_search(model, feats, START, END, beam_size=1, max_len=12)
    assert any(h.finished for h in g) and not all(h.finished for h in g)  # some end early: the batch compacts
    for x, y in zip(g, b):
        assert x.tokens == y.tokens and x.finished == y.finished
        assert x.score == y.score and torch.equal(x.alphas, y.alphas)
    # and the forward prediction does change the decoding: mu = 0 decodes differently
    model.config.forward_weight = 0.0
    plain = greedy(model, feats, START, END, max_len=12)
    assert any(x.tokens != y.tokens for x, y in zip(g, plain))


def test_beam_search_rescores_with_the_combination():
    """A beam's score is the sum of s_t over its words (re-scored with step, forward state carried along)."""
    model = random_pf("lookback", seed=1)
    feats = feats_for(4, seed=1)
    for b, h in enumerate(beam_search(model, feats, START, END, beam_size=3, max_len=10)):
        with torch.no_grad():
            state = model.init_state(feats[b : b + 1])
            score, words = 0.0, [START] + h.tokens + ([END] if h.finished else [])
            for t in range(len(words) - 1):
                logprobs, _, state = model.step(torch.tensor([words[t]]), state)
                score += float(logprobs[0, words[t + 1]])
        assert math.isclose(score, h.score, abs_tol=1e-9)


# -- 3. overfitting ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["soft", "lookback"])
def test_overfits_four_samples(attention):
    """4 random feature grids, 4 distinct short captions: both heads' cross-entropy goes to ~0 and greedy decoding
    with the combined score reproduces every caption."""
    torch.manual_seed(0)
    Vs, Ds, B = 16, 16, 4
    feats = torch.randn(B, 5, Ds)
    words = [[3, 4, 5, 6], [3, 7, 8], [9, 4, 10, 11, 12], [13, 14]]  # shared first words: the image must decide
    lengths = torch.tensor([len(w) + 2 for w in words])
    captions = torch.full((B, int(lengths.max())), PAD)
    for b, w in enumerate(words):
        captions[b, : len(w) + 2] = torch.tensor([START, *w, END])
    model = PredictForwardDecoder(PredictForwardConfig(vocab_size=Vs, encoder_dim=Ds, embed_dim=16, attention_dim=16,
                                                       decoder_dim=64, dropout=0.0, attention=attention))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss, parts = model.loss(feats, captions, lengths, lambda_att=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert parts["ce"] < 0.01 and parts["ce_fwd"] < 0.01, (attention, parts)
    model.eval()
    hyps = greedy(model, feats, START, END, max_len=10)
    assert [h.tokens for h in hyps] == words and all(h.finished for h in hyps)
    assert [h.tokens for h in beam_search(model, feats, START, END, beam_size=3, max_len=10)] == words


# -- 4. the forward head is trained, and the loss is the sum of the two ---------------------------------------


@pytest.mark.parametrize("attention", ["soft", "lookback"])
def test_loss_is_objective_plus_forward_cross_entropy(attention):
    """The loss, hand-built: CaptionDecoder's objective from the padded next-word logits (caption_loss) plus
    w_f x F.cross_entropy of the forward head's logits, collected step by step, against y_{t+1}."""
    w_f = 0.3
    model = make_pf(attention, forward_loss_weight=w_f)
    feats, captions, lengths = make_batch()
    loss, parts = model.loss(feats, captions, lengths, lambda_att=0.7)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    assert grads["L_f.weight"].abs().sum() > 0 and grads["L_f.bias"].abs().sum() > 0  # the head is trained
    model.zero_grad()

    logits, alphas = model(feats, captions, lengths)  # padded next-word logits (CaptionDecoder's forward)
    objective, obj_parts = caption_loss(logits, captions, lengths, alphas, lambda_att=0.7)
    fwd_logits = []  # L_f's output at every step, via a hook on the head (step runs it once per step)
    hook = model.L_f.register_forward_hook(lambda mod, inp, out: fwd_logits.append(out))
    state = model.init_state(feats)
    for t in range(captions.size(1) - 1):  # teacher forcing through step (dropout is 0: the same states)
        _, _, state = model.step(captions[:, t], state)
    hook.remove()
    logits, targets = [], []
    for b, n in enumerate(lengths.tolist()):
        for t in range(n - 2):  # step t predicts captions[b, t + 1]; its word after next is captions[b, t + 2]
            logits.append(fwd_logits[t][b])
            targets.append(int(captions[b, t + 2]))
    assert len(targets) == int((lengths - 2).sum())  # the <end>-predicting steps have no target
    ce_fwd = F.cross_entropy(torch.stack(logits), torch.tensor(targets))
    want = objective + w_f * ce_fwd
    # (capkit's cross-entropy op computes in float32: agreement to float32 rounding)
    assert math.isclose(float(parts["ce_fwd"]), float(ce_fwd.detach()), rel_tol=1e-6)
    assert math.isclose(float(parts["ce"]), float(obj_parts["ce"]), rel_tol=1e-6)
    assert math.isclose(float(loss.detach()), float(want.detach()), rel_tol=1e-6)
    assert float(parts["loss"]) == float(loss.detach())
    assert w_f * float(ce_fwd.detach()) > 0.1  # the term is not negligible: a loss without it would fail the line above
    want.backward()
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[name], atol=1e-7), name


def test_forward_loss_weight_and_label_smoothing():
    feats, captions, lengths = make_batch(seed=3)
    base, bparts = make_pf(forward_loss_weight=0.0).loss(feats, captions, lengths)
    full, fparts = make_pf(forward_loss_weight=2.0).loss(feats, captions, lengths)
    assert math.isclose(float((full - base).detach()), 2.0 * float(fparts["ce_fwd"]), rel_tol=1e-9)
    assert float(bparts["ce_fwd"]) == float(fparts["ce_fwd"]) > 0
    smooth, sparts = make_pf().loss(feats, captions, lengths, label_smoothing=0.1)
    assert float(sparts["ce_fwd"]) != float(fparts["ce_fwd"])  # smoothing reaches the forward head too
    # a one-word caption (<start> w <end>) has one forward target, <end>; an empty one (<start> <end>) none
    model = make_pf()
    short = torch.tensor([[START, 5, END], [START, END, PAD]])
    _, parts = model.loss(feats[:2], short, torch.tensor([3, 2]))
    with torch.no_grad():
        _, _, state = model.step(torch.tensor([START]), model.init_state(feats[:1]))  # its "fwd" = log q_1
    assert math.isclose(float(parts["ce_fwd"]), -float(state["fwd"][0, END]), rel_tol=1e-6)  # float32 CE
    empty = torch.tensor([[START, END], [START, END]])
    loss, parts = model.loss(feats[:2], empty, torch.tensor([2, 2]))
    assert float(parts["ce_fwd"]) == 0.0
    loss.backward()
    assert model.L_f.weight.grad is not None and float(model.L_f.weight.grad.abs().sum()) == 0.0


# -- 5. attention maps ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["soft", "lookback"])
def test_attention_maps_per_word(attention):
    model = random_pf(attention)
    feats = feats_for(6)
    for search in (greedy, lambda *a, **k: beam_search(*a, beam_size=3, **k)):
        hyps = search(model, feats, START, END, max_len=12)
        assert sum(len(h.tokens) for h in hyps) > 6
        for h in hyps:
            assert h.alphas.shape == (len(h.tokens), L)
            assert (h.alphas >= 0).all()
            assert torch.allclose(h.alphas.sum(-1), torch.ones(len(h.tokens), dtype=h.alphas.dtype))
    feats, captions, lengths = make_batch()
    logits, alphas = make_pf(attention)(feats, captions, lengths)  # teacher forcing: the next-word head
    B, T = captions.shape
    assert logits.shape == (B, T - 1, V) and alphas.shape == (B, T - 1, L)
    valid = torch.arange(T - 1).unsqueeze(0) < (lengths - 1).unsqueeze(1)
    assert torch.allclose(alphas[valid].sum(-1), torch.ones(int(valid.sum()), dtype=alphas.dtype))
    assert (alphas[~valid] == 0).all()


# -- 6. the registry, and weight 0 = CaptionDecoder ----------------------------------------------------------------


@pytest.mark.parametrize("name,attention,label", [("pf", "soft", "Predict-Forward"),
                                                  ("lbpf", "lookback", "Look-Back + Predict-Forward")])
def test_registry_builds_and_reloads(name, attention, label):
    spec = DECODERS[name]
    assert spec.label == label and spec.search == "sequence"
    torch.manual_seed(0)
    model = spec.build(vocab_size=V, encoder_dim=D, embed_dim=8, attention_dim=10, decoder_dim=16, dropout=0.0,
                       attention="other", lr=1e-3, forward_weight=0.7).double().eval()  # unknown keys dropped
    assert isinstance(model, PredictForwardDecoder) and model.config.attention == attention
    assert model.config.forward_weight == 0.7
    stored = json.loads(json.dumps(model.config.to_dict()))
    assert stored["forward_weight"] == 0.7 and stored["forward_loss_weight"] == 1.0
    torch.manual_seed(1)
    again = spec.load(stored).double().eval()
    assert again.config == model.config
    feats, captions, lengths = make_batch()
    assert not torch.equal(again(feats, captions, lengths)[0], model(feats, captions, lengths)[0])  # fresh weights
    again.load_state_dict(model.state_dict())
    pa, pm = again.loss(feats, captions, lengths)[1], model.loss(feats, captions, lengths)[1]
    assert float(pa["loss"]) == float(pm["loss"]) and float(pa["ce_fwd"]) == float(pm["ce_fwd"])
    ga, gm = greedy(again, feats, START, END, max_len=8), greedy(model, feats, START, END, max_len=8)
    assert [h.tokens for h in ga] == [h.tokens for h in gm] and [h.score for h in ga] == [h.score for h in gm]


def test_config_validation():
    with pytest.raises(ValueError):
        PredictForwardConfig(vocab_size=5, encoder_dim=4, forward_weight=-0.1)
    with pytest.raises(ValueError):
        PredictForwardConfig(vocab_size=5, encoder_dim=4, attention="hard")


@pytest.mark.parametrize("attention", ["soft", "lookback"])
def test_weight_zero_is_caption_decoder(attention):
    """With mu = 0 the step's log-probs are CaptionDecoder's, bit for bit (the same weights, L_f aside); with
    mu > 0 only the combination changes them: the first step (no forward prediction yet) is still the same."""
    pf = random_pf(attention, forward_weight=0.0)
    cfg = {k: v for k, v in pf.config.to_dict().items() if k not in ("forward_weight", "forward_loss_weight")}
    plain = CaptionDecoder(DecoderConfig(**cfg)).double().eval()
    missing, unexpected = plain.load_state_dict(pf.state_dict(), strict=False)
    assert not missing and sorted(unexpected) == ["L_f.bias", "L_f.weight"]
    feats = feats_for(5)
    tokens = torch.full((5,), START)
    with torch.no_grad():
        s_pf, s_plain = pf.init_state(feats), plain.init_state(feats)
        for t in range(6):
            lp_pf, a_pf, s_pf = pf.step(tokens, s_pf)
            lp, a, s_plain = plain.step(tokens, s_plain)
            assert torch.equal(lp_pf, lp) and torch.equal(a_pf, a), t
            tokens = torch.multinomial(lp.exp(), 1, generator=torch.Generator().manual_seed(t)).squeeze(1)
        pf.config.forward_weight = 0.5
        s_pf, s_plain = pf.init_state(feats), plain.init_state(feats)
        tokens = torch.full((5,), START)
        lp_pf, _, s_pf = pf.step(tokens, s_pf)
        lp, _, s_plain = plain.step(tokens, s_plain)
        assert torch.equal(lp_pf, lp)  # step 1: s_1 = log p_1
        lp_pf, _, _ = pf.step(lp.argmax(1), s_pf)
        lp, _, _ = plain.step(lp.argmax(1), s_plain)
        assert not torch.allclose(lp_pf, lp)
        assert torch.allclose(lp_pf, F.log_softmax(lp + 0.5 * s_pf["fwd"], dim=1), atol=1e-12)
    # training: the next-word head's teacher forcing is CaptionDecoder's too
    feats, captions, lengths = make_batch()
    assert torch.equal(pf(feats, captions, lengths)[0], plain(feats, captions, lengths)[0])
