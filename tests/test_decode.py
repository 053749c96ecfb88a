"""capkit.decode: batched greedy and beam search."""

import math

import pytest
import torch

from capkit.decode import Hypothesis, beam_search, greedy
from capkit.models import CaptionDecoder, DecoderConfig

PAD, START, END = 0, 1, 2


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def random_model(attention="soft", V=30, D=12, end_bias=-2.0, seed=0):
    """An untrained decoder whose captions end at different steps for different images: the <end> logit reads
    one embedding channel, which differs from word to word, so when a caption ends depends on its words."""
    torch.manual_seed(seed)
    cfg = DecoderConfig(vocab_size=V, encoder_dim=D, embed_dim=8, attention_dim=10, decoder_dim=16,
                        attention=attention, dropout=0.5)
    model = CaptionDecoder(cfg).double().eval()
    with torch.no_grad():
        model.L_o.weight.mul_(10)
        model.L_z.weight.mul_(4)
        model.L_o.weight[:, 0] = 0
        model.L_o.weight[END, 0] = 10.0
        model.L_o.bias[END] = end_bias
        model.embedding.weight[:, 0] = torch.linspace(-0.6, 0.6, V)[torch.randperm(V)]
    return model


def markov_model(P: torch.Tensor) -> CaptionDecoder:
    """A decoder whose next-word distribution is P[previous word] whatever the image: one-hot embeddings, the
    deep output reduced to L_o(E y_{t-1}) with L_o = log P^T."""
    V = P.size(0)
    model = CaptionDecoder(DecoderConfig(vocab_size=V, encoder_dim=4, embed_dim=V, attention_dim=4,
                                         decoder_dim=4, dropout=0.0)).double().eval()
    with torch.no_grad():
        model.embedding.weight.copy_(torch.eye(V))
        for p in (model.L_h.weight, model.L_h.bias, model.L_z.weight, model.L_o.bias):
            p.zero_()
        model.L_o.weight.copy_(P.double().clamp(min=1e-30).log().t().clamp(min=-1e4))
    return model


def transitions(V, rows):
    """Transition matrix over V words from {prev: {next: prob}}; unlisted rows go to <end>."""
    P = torch.zeros(V, V)
    P[:, END] = 1.0
    for prev, nxt in rows.items():
        P[prev] = 0.0
        for w, p in nxt.items():
            P[prev, w] = p
    return P


def assert_same(a: Hypothesis, b: Hypothesis, exact=True):
    assert a.tokens == b.tokens and a.finished == b.finished
    if exact:
        assert a.score == b.score and torch.equal(a.alphas, b.alphas)
    else:
        assert math.isclose(a.score, b.score, abs_tol=1e-9) and torch.allclose(a.alphas, b.alphas, atol=1e-9)


def feats_for(model, B, L=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, L, model.config.encoder_dim, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("attention", ["soft", "lookback"])
@pytest.mark.parametrize("forbid_repeats", [False, True])
def test_beam_one_equals_greedy(attention, forbid_repeats):
    model = random_model(attention)
    feats = feats_for(model, 16)
    g = greedy(model, feats, START, END, max_len=12, forbid_repeats=forbid_repeats)
    b = beam_search(model, feats, START, END, beam_size=1, max_len=12, forbid_repeats=forbid_repeats)
    lengths = {len(h.tokens) for h in g}
    assert len(lengths) >= 3 and any(h.finished for h in g) and not all(h.finished for h in g)  # varied lengths
    for x, y in zip(g, b):
        assert_same(x, y)


def test_hypothesis_contents():
    model = random_model("lookback")
    feats = feats_for(model, 8)
    for search in (greedy, beam_search):
        for h in search(model, feats, START, END, max_len=12):
            assert isinstance(h, Hypothesis)
            assert h.alphas.shape == (len(h.tokens), 6)
            assert torch.allclose(h.alphas.sum(-1), torch.ones(len(h.tokens), dtype=h.alphas.dtype))
            assert START not in h.tokens and END not in h.tokens
            assert len(h.tokens) == 12 if not h.finished else len(h.tokens) < 12
            assert h.score < 0


def test_greedy_score_and_alphas_are_the_models():
    """Re-scoring greedy's words with step() gives its score and attention maps."""
    model = random_model("soft")
    feats = feats_for(model, 5)
    for b, h in enumerate(greedy(model, feats, START, END, max_len=12)):
        with torch.no_grad():
            state = model.init_state(feats[b : b + 1])
            score, words = 0.0, [START] + h.tokens + ([END] if h.finished else [])
            for t in range(len(words) - 1):
                logprobs, alpha, state = model.step(torch.tensor([words[t]]), state)
                assert logprobs[0].argmax() == words[t + 1]
                score += float(logprobs[0, words[t + 1]])
                if t < len(h.tokens):
                    assert torch.allclose(alpha[0], h.alphas[t], atol=1e-9)
        assert math.isclose(score, h.score, abs_tol=1e-9)


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_batched_equals_one_image_at_a_time(search):
    model = random_model("lookback", seed=1)
    feats = feats_for(model, 12, seed=1)
    run = (lambda f: greedy(model, f, START, END, max_len=10)) if search == "greedy" else (
        lambda f: beam_search(model, f, START, END, beam_size=3, max_len=10))
    batched = run(feats)
    for b in range(len(feats)):
        assert_same(batched[b], run(feats[b : b + 1])[0], exact=False)


def test_beam_finds_what_greedy_misses():
    # <start> -> 3 (0.6) | 4 (0.4);  3 -> <end>/5/6 (about a third each);  4 -> <end> (0.9)
    P = transitions(8, {START: {3: 0.6, 4: 0.4}, 3: {END: 0.34, 5: 0.33, 6: 0.33}, 4: {END: 0.9, 7: 0.1}})
    model = markov_model(P)
    feats = torch.randn(2, 3, 4, dtype=torch.float64)
    g = greedy(model, feats, START, END, max_len=5)
    b = beam_search(model, feats, START, END, beam_size=2, max_len=5)
    for hg, hb in zip(g, b):
        assert hg.tokens == [3] and math.isclose(hg.score, math.log(0.6 * 0.34), rel_tol=1e-6)
        assert hb.tokens == [4] and math.isclose(hb.score, math.log(0.4 * 0.9), rel_tol=1e-6)
        assert hg.finished and hb.finished and hb.alphas.shape == (1, 3)


def test_length_penalty():
    # <start> -> <end> 0.4 (score log 0.4, 1 token) or 3 0.6 -> 4 0.9 -> <end> 0.6 (log 0.324, 3 tokens)
    P = transitions(6, {START: {END: 0.4, 3: 0.6}, 3: {4: 0.9, 5: 0.1}, 4: {END: 0.6, 5: 0.4}})
    model = markov_model(P)
    feats = torch.randn(1, 3, 4, dtype=torch.float64)
    assert beam_search(model, feats, START, END, beam_size=2, length_penalty=0.0)[0].tokens == []
    assert beam_search(model, feats, START, END, beam_size=2, length_penalty=1.0)[0].tokens == [3, 4]


def test_all_beams_finish_early():
    P = transitions(6, {START: {END: 0.9, 3: 0.1}, 3: {END: 1.0}})
    model = markov_model(P)
    feats = torch.randn(3, 3, 4, dtype=torch.float64)
    for h in beam_search(model, feats, START, END, beam_size=3, max_len=30):
        assert h.tokens == [] and h.finished and h.alphas.shape == (0, 3)
        assert math.isclose(h.score, math.log(0.9), rel_tol=1e-6)
    for h in greedy(model, feats, START, END, max_len=30):
        assert h.tokens == [] and h.finished


@pytest.mark.parametrize("beam_size", [1, 2, 4])
def test_never_ending_beams_return_max_len_tokens(beam_size):
    model = random_model("lookback")
    with torch.no_grad():
        model.L_o.bias[END] = float("-inf")  # <end> can never be emitted
    feats = feats_for(model, 5)
    for search in (greedy, lambda *a, **k: beam_search(*a, beam_size=beam_size, **k)):
        for h in search(model, feats, START, END, max_len=7):
            assert len(h.tokens) == 7 and not h.finished and h.alphas.shape == (7, 6) and math.isfinite(h.score)


def test_forbid_repeats():
    # every word wants to repeat itself
    V = 12
    P = torch.full((V, V), 0.02)
    P += torch.eye(V) * 0.6
    P[:, END] = 0.001
    P /= P.sum(1, keepdim=True)
    model = markov_model(P)
    feats = torch.randn(4, 3, 4, dtype=torch.float64)
    plain = greedy(model, feats, START, END, max_len=6)
    assert len(set(plain[0].tokens)) < len(plain[0].tokens)  # it does repeat without the flag
    for search in (greedy, lambda *a, **k: beam_search(*a, beam_size=3, **k)):
        for h in search(model, feats, START, END, max_len=9, forbid_repeats=True):
            assert len(h.tokens) == len(set(h.tokens)) and len(h.tokens) == 9


def test_max_len_zero():
    model = random_model()
    feats = feats_for(model, 2)
    for h in greedy(model, feats, START, END, max_len=0) + beam_search(model, feats, START, END, max_len=0):
        assert h.tokens == [] and not h.finished and h.alphas.shape[0] == 0


def test_tiny_model_overfits_eight_samples():
    """Eight (random feature grid, random caption) pairs: teacher forcing drives the loss to ~0, then free-running
    greedy decoding and beam search reproduce every caption."""
    torch.manual_seed(0)
    V, D, L, B = 24, 16, 5, 8
    feats = torch.randn(B, L, D)
    lengths = torch.randint(4, 10, (B,))
    captions = torch.full((B, int(lengths.max())), PAD)
    for b, n in enumerate(lengths.tolist()):
        captions[b, 0], captions[b, n - 1] = START, END
        captions[b, 1 : n - 1] = torch.randint(3, V, (n - 2,))
    for attention in ("soft", "lookback"):
        model = CaptionDecoder(DecoderConfig(vocab_size=V, encoder_dim=D, embed_dim=16, attention_dim=16,
                                             decoder_dim=64, dropout=0.0, attention=attention))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(150):
            loss, parts = model.loss(feats, captions, lengths, lambda_att=0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert parts["ce"] < 0.01, attention
        model.eval()
        want = [captions[b, 1 : n - 1].tolist() for b, n in enumerate(lengths.tolist())]
        assert [h.tokens for h in greedy(model, feats, START, END, max_len=12)] == want
        assert all(h.finished for h in greedy(model, feats, START, END, max_len=12))
        assert [h.tokens for h in beam_search(model, feats, START, END, beam_size=3, max_len=12)] == want


def test_no_word_left_to_emit():
    """forbid_repeats on a 4-word vocabulary with <end> impossible: the search stops, unfinished, after 4 words."""
    P = torch.full((6, 6), 1 / 6)
    model = markov_model(P)
    with torch.no_grad():
        model.L_o.bias[END] = float("-inf")
    feats = torch.randn(2, 3, 4, dtype=torch.float64)
    g = greedy(model, feats, START, END, max_len=10, forbid_repeats=True)
    for search in (greedy, beam_search, lambda *a, **k: beam_search(*a, beam_size=1, **k)):
        for h, hg in zip(search(model, feats, START, END, max_len=10, forbid_repeats=True), g):
            assert sorted(h.tokens) == [0, 3, 4, 5] and not h.finished and math.isfinite(h.score)
            assert math.isclose(h.score, hg.score, rel_tol=1e-9)


def test_half_features_and_autocast():
    model = random_model("lookback").float()
    feats = feats_for(model, 6).float()
    want = greedy(model, feats, START, END, max_len=8)
    half = greedy(model, feats.half(), START, END, max_len=8)  # float16 from the feature cache
    rounded = greedy(model, feats.half().float(), START, END, max_len=8)
    assert [h.tokens for h in half] == [h.tokens for h in rounded]
    assert half[0].alphas.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for search in (greedy, beam_search):
            hyps = search(model, feats, START, END, max_len=8)
            assert len(hyps) == 6 and all(h.alphas.dtype == torch.float32 for h in hyps)
    assert len(want) == 6


@pytest.mark.parametrize("beam", [1, 3])
def test_unk_is_never_emitted_when_banned(beam):
    """The best caption goes through <unk> (id 3 here); with unk_id given <unk> never appears and the best
    caption without it is found instead."""
    UNK = 3
    P = transitions(6, {START: {UNK: 0.6, 4: 0.4}, UNK: {5: 0.9, UNK: 0.1}, 4: {5: 0.9, UNK: 0.1}, 5: {END: 1.0}})
    model = markov_model(P)
    feats = torch.zeros(2, 3, 4, dtype=torch.double)
    run = (lambda **kw: greedy(model, feats, START, END, max_len=6, **kw)) if beam == 1 else \
        (lambda **kw: beam_search(model, feats, START, END, beam_size=beam, max_len=6, **kw))
    assert UNK in run()[0].tokens
    for h in run(unk_id=UNK):
        assert UNK not in h.tokens and h.tokens == [4, 5] and h.finished
