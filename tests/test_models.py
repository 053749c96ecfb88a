"""capkit.models and capkit.fused: shapes and masks, the loss, the incremental API, the hand-written ops against
their plain versions, and equality with the study's algorithm.

The reference is bench/reference.py's `StudyDecoder`, a plain per-step implementation of the study's decoder written
the way the study's code ran it (the full padded batch at every step, W_a a recomputed at every step); `make bench`
times capkit against the same file. It has capkit's parameter names, so one state_dict loads into both; capkit's fast
teacher forcing must give the same logits, the loss written out element by element below, and the same gradients.
"""

import json

import pytest
import torch
import torch.nn.functional as F

import reference  # bench/reference.py (on the path through conftest)
from capkit import fused
from capkit.fused import CrossEntropy, DeferredProjGrad, ReluScore, gathered_context, gathered_scores
from capkit.models import CaptionDecoder, DecoderConfig, LookBackAttention, SoftAttention, caption_loss

V, D, L = 23, 12, 7  # vocab, encoder dim, regions
START, END, PAD = 1, 2, 0


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def study_decoder(model: CaptionDecoder):
    """bench/reference.py's StudyDecoder with the model's weights (same parameter names: one state_dict)."""
    return reference.StudyDecoder.like(model)


def study_outputs(study, feats, captions, lengths):
    """The reference's per-step logits and alphas, zeroed past each caption like capkit's padded outputs."""
    logits, alphas = study(feats, captions, lengths)
    mask = (torch.arange(captions.size(1) - 1).unsqueeze(0) < (lengths - 1).unsqueeze(1)).unsqueeze(2)
    return logits * mask, alphas * mask


def study_loss(study, feats, captions, lengths, lambda_att=1.0):
    """The loss written out element by element: -log p of every real next token plus the attention penalty of
    every caption (the paper's per-caption sum), over the number of tokens."""
    logits, alphas = study_outputs(study, feats, captions, lengths)
    total, count = 0.0, 0
    for b in range(captions.size(0)):
        for t in range(int(lengths[b]) - 1):
            total = total - F.log_softmax(logits[b, t], dim=0)[captions[b, t + 1]]
            count += 1
    att = sum(((1 - alphas[b].sum(0)) ** 2).sum() for b in range(captions.size(0)))
    return (total + lambda_att * att) / count


def make_batch(B=5, T=9, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, L, D, generator=g, dtype=dtype)
    lengths = torch.randint(2, T + 1, (B,), generator=g)
    lengths[1] = T  # one full-length caption
    captions = torch.randint(3, V, (B, T), generator=g)
    captions[:, 0] = START
    for b, n in enumerate(lengths.tolist()):
        captions[b, n - 1] = END
        captions[b, n:] = PAD
    return feats, captions, lengths


def make_model(attention="soft", gate="scalar", dropout=0.0, seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    cfg = DecoderConfig(vocab_size=V, encoder_dim=D, embed_dim=8, attention_dim=10, decoder_dim=16,
                        dropout=dropout, attention=attention, gate=gate, **kw)
    model = CaptionDecoder(cfg).to(dtype)
    with torch.no_grad():  # bigger attention weights so alphas are far from uniform
        model.attention.score.weight.mul_(5)
    return model


VARIANTS = [("soft", "scalar"), ("soft", "channel"), ("lookback", "scalar"), ("lookback", "channel")]


def test_config_round_trip_json():
    cfg = DecoderConfig(vocab_size=10, encoder_dim=4, attention="lookback", gate="channel")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert DecoderConfig.from_dict(d) == cfg
    assert d["embed_dim"] == 300 and d["attention_dim"] == 512 and d["decoder_dim"] == 512 and d["dropout"] == 0.5
    with pytest.raises(ValueError):
        DecoderConfig(vocab_size=10, encoder_dim=4, attention="hard")
    with pytest.raises(ValueError):
        DecoderConfig(vocab_size=10, encoder_dim=4, gate="vector")


def test_attention_classes():
    assert isinstance(make_model("soft").attention, SoftAttention)
    assert isinstance(make_model("lookback").attention, LookBackAttention)


@pytest.mark.parametrize("attention,gate", VARIANTS)
def test_shapes_and_masks(attention, gate):
    model = make_model(attention, gate)
    feats, captions, lengths = make_batch()
    logits, alphas = model(feats, captions, lengths)
    B, T = captions.shape
    assert logits.shape == (B, T - 1, V) and alphas.shape == (B, T - 1, L)
    valid = torch.arange(T - 1).unsqueeze(0) < (lengths - 1).unsqueeze(1)
    assert (logits[~valid] == 0).all() and (alphas[~valid] == 0).all()
    assert torch.allclose(alphas[valid].sum(-1), torch.ones(int(valid.sum()), dtype=alphas.dtype))
    assert (logits[valid].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("attention,gate", VARIANTS)
def test_same_as_study_per_step_decoder(attention, gate):
    """The fast teacher forcing computes what the study's per-step algorithm computes: logits, loss, gradients."""
    model = make_model(attention, gate)
    study = study_decoder(model)
    feats, captions, lengths = make_batch(B=6, T=10, seed=1)

    logits, alphas = model(feats, captions, lengths)
    ref_logits, ref_alphas = study_outputs(study, feats, captions, lengths)
    assert (logits - ref_logits).abs().max() < 1e-5
    assert (alphas - ref_alphas).abs().max() < 1e-5

    loss, parts = caption_loss(logits, captions, lengths, alphas, lambda_att=0.7)
    fast_loss, _ = model.loss(feats, captions, lengths, lambda_att=0.7)
    ref_loss = study_loss(study, feats, captions, lengths, lambda_att=0.7)
    assert abs(loss.item() - ref_loss.item()) < 1e-5
    assert abs(fast_loss.item() - ref_loss.item()) < 1e-5
    n_tokens, B = int((lengths - 1).sum()), len(lengths)  # att is per caption: the term is 0.7 * att * B / tokens
    assert abs(float(parts["loss"]) - float(parts["ce"]) - 0.7 * float(parts["att"]) * B / n_tokens) < 1e-9

    fast_loss.backward()
    ref_loss.backward()
    ref_grads = dict(study.named_parameters())
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, ref_grads[name].grad, atol=1e-8), name


def test_float32_study_sizes_scaled_down_agree():
    """The same equality in float32 (the training dtype), within float32 rounding."""
    model = make_model("lookback", "scalar", dtype=torch.float32)
    study = study_decoder(model)
    feats, captions, lengths = make_batch(B=6, T=10, seed=2, dtype=torch.float32)
    loss, _ = model.loss(feats, captions, lengths)
    assert abs(loss.item() - study_loss(study, feats, captions, lengths).item()) < 1e-5


def test_input_order_does_not_matter():
    model = make_model("lookback")
    feats, captions, lengths = make_batch(B=6, T=10, seed=3)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    logits, alphas = model(feats, captions, lengths)
    p_logits, p_alphas = model(feats[perm], captions[perm], lengths[perm])
    assert torch.allclose(p_logits, logits[perm], atol=1e-12)
    assert torch.allclose(p_alphas, alphas[perm], atol=1e-12)
    # already sorted by length (no reordering inside) gives the same too
    order = torch.argsort(lengths, descending=True, stable=True)
    s_logits, _ = model(feats[order], captions[order], lengths[order])
    assert torch.allclose(s_logits, logits[order], atol=1e-12)


def test_extra_padding_columns():
    """Captions padded beyond the longest length: the extra columns are zero, the rest unchanged."""
    model = make_model()
    feats, captions, lengths = make_batch(T=7)
    wide = torch.cat([captions, torch.full((captions.size(0), 4), PAD)], dim=1)
    logits, alphas = model(feats, captions, lengths)
    w_logits, w_alphas = model(feats, wide, lengths)
    assert w_logits.shape == (5, 10, V)
    assert torch.allclose(w_logits[:, :6], logits, atol=1e-12) and (w_logits[:, 6:] == 0).all()
    assert torch.allclose(w_alphas[:, :6], alphas, atol=1e-12)


def test_caption_loss_by_hand():
    B, T = 2, 4
    captions = torch.tensor([[START, 5, 6, END], [START, 7, END, PAD]])
    lengths = torch.tensor([4, 3])
    logits = torch.randn(B, T - 1, V, dtype=torch.float64)
    logits[1, 2] = 0
    alphas = torch.softmax(torch.randn(B, T - 1, L, dtype=torch.float64), -1)
    alphas[1, 2] = 0
    loss, parts = caption_loss(logits, captions, lengths, alphas, lambda_att=2.0)
    lp = torch.log_softmax(logits, -1)
    ce = -(lp[0, 0, 5] + lp[0, 1, 6] + lp[0, 2, END] + lp[1, 0, 7] + lp[1, 1, END]) / 5
    att = (((1 - alphas[0].sum(0)) ** 2).sum() + ((1 - alphas[1, :2].sum(0)) ** 2).sum()) / 2
    assert torch.allclose(parts["ce"], ce) and torch.allclose(parts["att"], att)
    # the paper's per-caption objective summed over the batch: sum_t CE + lambda sum_i (.)^2, over 5 tokens
    assert torch.allclose(loss, (5 * ce + 2.0 * 2 * att) / 5)
    per_caption, _ = caption_loss(logits, captions, lengths, alphas, lambda_att=2.0, per="caption")
    assert torch.allclose(per_caption, (5 * ce + 2.0 * 2 * att) / 2)


def test_objective_on_numbers_worked_by_hand():
    """Two captions of 3 and 1 tokens, L = 2 regions; every number below is worked out on paper."""
    from capkit.models import objective

    ce = torch.tensor(0.5)  # mean over the 4 tokens: their sum is 2.0
    alpha_sum = torch.tensor([[1.0, 2.0], [0.5, 0.5]])  # sum_t alpha_ti per caption
    # sum_i (1 - .)^2: caption 0: 0 + 1 = 1; caption 1: 0.25 + 0.25 = 0.5; together 1.5
    loss, parts = objective(ce, 4, alpha_sum, lambda_att=1.0)
    assert float(loss) == pytest.approx((2.0 + 1.5) / 4)  # per token: 0.875
    assert float(parts["att"]) == pytest.approx(0.75)  # per caption
    loss, _ = objective(ce, 4, alpha_sum, lambda_att=1.0, per="caption")
    assert float(loss) == pytest.approx((2.0 + 1.5) / 2)  # per caption: 1.75, the paper's eq. 14 averaged
    loss, _ = objective(ce, 4, alpha_sum, lambda_att=0.0)
    assert float(loss) == pytest.approx(0.5)  # lambda 0: the study's masked mean CE
    with pytest.raises(ValueError):
        objective(ce, 4, alpha_sum, 1.0, per="image")


def test_label_smoothing_matches_torch():
    logits = torch.randn(7, 11, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (7,))
    ours = CrossEntropy.apply(logits.clone(), targets, 0.1)
    ref = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.1)
    assert abs(float(ours.detach()) - float(ref.detach())) < 1e-5
    g_ref, = torch.autograd.grad(ref, logits)
    x = logits.detach().clone().requires_grad_(True)
    CrossEntropy.apply(x, targets, 0.1).backward()
    assert torch.allclose(x.grad, g_ref, atol=1e-6)


@pytest.mark.parametrize("attention,gate", VARIANTS)
def test_forward_equals_step_by_step(attention, gate):
    """step() computes exactly what forward() computes at the same position (eval mode)."""
    model = make_model(attention, gate, dropout=0.5).eval()
    feats, captions, lengths = make_batch(B=5, T=9, seed=4)
    logits, alphas = model(feats, captions, lengths)
    state = model.init_state(feats)
    for t in range(captions.size(1) - 1):
        logprobs, alpha, state = model.step(captions[:, t], state)
        valid = t < lengths - 1
        assert torch.allclose(logprobs[valid], torch.log_softmax(logits[valid, t], -1), atol=1e-10)
        assert torch.allclose(alpha[valid], alphas[valid, t], atol=1e-10)


def test_dropout_only_touches_the_output():
    """Train-mode dropout changes the logits, never the recurrence (attention maps are the same as in eval)."""
    model = make_model("lookback", dropout=0.5)
    feats, captions, lengths = make_batch()
    train_logits, train_alphas = model.train()(feats, captions, lengths)
    eval_logits, eval_alphas = model.eval()(feats, captions, lengths)
    assert torch.allclose(train_alphas, eval_alphas, atol=1e-12)
    assert not torch.allclose(train_logits, eval_logits)


@pytest.mark.parametrize("attention", ["soft", "lookback"])
def test_reorder_state(attention):
    """Rows move, the per-image entries stay (one row an image, never copied), and a reordered state steps
    exactly as a state built from the reordered images would, with or without autograd."""
    model = make_model(attention).eval()
    feats = make_batch()[0]
    state = model.init_state(feats)
    assert set(state) >= {"h", "c", "z", "feats", "proj", "image"}
    assert all(v.size(0) == 5 for v in state.values())
    assert state["proj"].shape == (5, L, 10) and torch.equal(state["image"], torch.arange(5))
    index = torch.tensor([4, 4, 0, 2, 4, 1])  # beams of image 4 apart from each other, image 3 dropped
    new = model.reorder_state(state, index)
    assert new["feats"] is state["feats"] and new["proj"] is state["proj"]
    assert torch.equal(new["image"], index)
    assert all(torch.equal(new[k], state[k][index]) for k in state if k not in model.STATIC_STATE)
    again = model.reorder_state(new, torch.tensor([5, 0, 2]), static=False)
    assert torch.equal(again["image"], torch.tensor([1, 4, 0])) and torch.equal(again["h"], new["h"][[5, 0, 2]])
    tokens = torch.tensor([3, 4, 5, 6, 7, 8])
    copied = model.init_state(feats[index])
    for t in range(3):  # the state of rows that read their image through "image" == the state of copied images
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                want, want_alpha, _ = model.step(tokens, copied)
                got, got_alpha, _ = model.step(tokens, new)
            assert torch.allclose(got, want, atol=1e-12) and torch.allclose(got_alpha, want_alpha, atol=1e-12)
        with torch.no_grad():
            _, _, copied = model.step(tokens, copied)
            _, _, new = model.step(tokens, new)
        tokens = tokens + 1


def test_gathered_attention_equals_indexing():
    """fused.gathered_scores / gathered_context (search: rows read their image's proj and features through an
    index, a block at a time) against plain indexing: blocks of one image (read broadcast) and blocks that mix
    images (gathered), over several row blocks and an unsorted index."""
    g = torch.Generator().manual_seed(3)
    # 2.2 MB an image: one row a block; 0.96 MB: two rows a block, [3, 0] and [0, 2] mixed, [3, 3] one image;
    # 22 KB: all rows in one block, mixed, all of image 1, or images 0..3 in order
    for A, D, image in ((900, 1800, [3, 0, 0, 2, 3, 3, 1]), (400, 400, [3, 0, 0, 2, 3, 3, 1]),
                        (9, 9, [3, 0, 0, 2, 3, 3, 1]), (9, 9, [1, 1, 1, 1]), (9, 9, [0, 1, 2, 3]),
                        (400, 400, [1, 2, 2, 2, 0, 1])):
        image = torch.tensor(image)
        proj = torch.randn(4, 300, A, generator=g, dtype=torch.float64)
        feats = torch.randn(4, 300, D, generator=g, dtype=torch.float64)
        q = torch.randn(len(image), A, generator=g, dtype=torch.float64)
        w = torch.randn(A, generator=g, dtype=torch.float64)
        alpha = torch.softmax(torch.randn(len(image), 300, generator=g, dtype=torch.float64), dim=1)
        want_e = torch.relu(proj[image] + q.unsqueeze(1)) @ w
        want_z = torch.bmm(alpha.unsqueeze(1), feats[image]).squeeze(1)
        with torch.inference_mode():
            assert torch.allclose(gathered_scores(proj, image, q, w), want_e)
            assert torch.allclose(gathered_context(alpha, feats, image), want_z)
            assert gathered_scores(proj, image[:0], q[:0], w).shape == (0, 300)
            assert gathered_context(alpha[:0], feats, image[:0]).shape == (0, D)
    x = torch.zeros(4, 300, 400, dtype=torch.float64)  # two rows a block
    assert [one for _, one in fused._image_blocks(x, torch.tensor([3, 0, 0, 2, 3, 3, 1]))[0]] == [None, None, 3, 1]
    assert [one for _, one in fused._image_blocks(x, torch.tensor([1, 2, 2, 2, 0, 1]))[0]] == [slice(1, 3), 2,
                                                                                                slice(0, 2)]
    # a gradient wanted: the plain, differentiable expressions
    q.requires_grad_(True)
    e = gathered_scores(proj, image, q, w)
    assert torch.allclose(e, want_e) and e.requires_grad
    assert torch.allclose(torch.autograd.grad(e.sum(), q)[0], torch.autograd.grad(
        (torch.relu(proj[image] + q.unsqueeze(1)) @ w).sum(), q)[0])


def test_pretrained_embeddings_load_and_freeze():
    model = make_model(dtype=torch.float32)
    matrix = torch.randn(V, 8)
    model.load_embeddings(matrix)  # frozen by default
    assert torch.equal(model.embedding.weight, matrix) and not model.embedding.weight.requires_grad
    feats, captions, lengths = make_batch(dtype=torch.float32)
    model.loss(feats, captions, lengths)[0].backward()
    assert model.embedding.weight.grad is None and model.L_o.weight.grad is not None
    model.freeze_embeddings(False)
    model.loss(feats, captions, lengths)[0].backward()
    assert model.embedding.weight.grad is not None
    with pytest.raises(ValueError):
        model.load_embeddings(torch.randn(V + 1, 8))


def test_all_empty_captions():
    model = make_model()
    feats = torch.randn(2, L, D, dtype=torch.float64)
    captions = torch.tensor([[START, PAD], [START, PAD]])
    logits, alphas = model(feats, captions, torch.tensor([1, 1]))
    assert logits.shape == (2, 1, V) and (logits == 0).all() and (alphas == 0).all()


def test_float16_features_and_bad_lengths():
    model = make_model(dtype=torch.float32)
    feats, captions, lengths = make_batch(dtype=torch.float32)
    half = feats.half()  # the feature cache stores float16
    logits, _ = model(half, captions, lengths)
    ref, _ = model(half.float(), captions, lengths)
    assert logits.dtype == torch.float32 and torch.equal(logits, ref)
    assert model.init_state(half)["feats"].dtype == torch.float32
    with pytest.raises(ValueError):
        model(feats, captions[:, :4], lengths.clamp(min=6))


def test_relu_score_gradients():
    """The hand-written attention-score op against autograd (several row blocks: a big L * A per row)."""
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(5, 300, 900, generator=g, dtype=torch.float64, requires_grad=True)  # 2.2 MB a row
    q = torch.randn(5, 900, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(900, generator=g, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(5, 300, generator=g, dtype=torch.float64)
    e = ReluScore.apply(proj, q, w)
    ref = torch.relu(proj + q.unsqueeze(1)) @ w
    assert torch.allclose(e, ref)
    with torch.inference_mode():  # no autograd: the scratch-block path
        assert torch.allclose(ReluScore.apply(proj.detach(), q.detach(), w.detach()), ref)
    got = torch.autograd.grad(e, (proj, q, w), grad)
    want = torch.autograd.grad(ref, (proj, q, w), grad)
    for a, b in zip(got, want):
        assert torch.allclose(a, b)
    # nothing saved is overwritten: a second backward through the same graph gives the same gradients again
    e = ReluScore.apply(proj, q, w)
    first = torch.autograd.grad(e, (proj, q, w), grad, retain_graph=True)
    assert all(torch.equal(a, b) for a, b in zip(first, torch.autograd.grad(e, (proj, q, w), grad)))


def test_relu_score_steps_accumulate_into_one_proj_gradient():
    """The time loop's use: fewer rows each step, every step adding d/dproj into one buffer (DeferredProjGrad)."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(6, 300, 900, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(900, generator=g, dtype=torch.float64, requires_grad=True)
    qs = [torch.randn(n, 900, generator=g, dtype=torch.float64, requires_grad=True) for n in (6, 4, 4, 1)]
    grads = [torch.randn(len(q), 300, generator=g, dtype=torch.float64) for q in qs]

    def total(score):
        return sum((score(q) * gr).sum() for q, gr in zip(qs, grads))

    proj = base * 2.0  # a non-leaf, as W_a a is
    buffer = torch.zeros_like(proj)
    tied = DeferredProjGrad.apply(proj, buffer)
    got = torch.autograd.grad(total(lambda q: ReluScore.apply(tied, q, w, buffer)), (base, w, *qs))
    again = base * 2.0
    want = torch.autograd.grad(total(lambda q: torch.relu(again[: len(q)] + q.unsqueeze(1)) @ w), (base, w, *qs))
    for a, b in zip(got, want):
        assert torch.allclose(a, b)
    assert buffer[4:].abs().sum() > 0 and buffer[:1].ne(0).any()  # rows 4-5 got gradients from the first step only


def test_runs_under_autocast():
    """Mixed precision for those who run the decoder under autocast (bfloat16 here): loss, float32 gradients."""
    model = make_model("lookback", "channel", dtype=torch.float32)
    feats, captions, lengths = make_batch(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model.loss(feats, captions, lengths)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad.dtype == torch.float32 for p in model.parameters())


def test_frozen_lstm_weights():
    model = make_model()
    model.lstm.requires_grad_(False)
    feats, captions, lengths = make_batch()
    model.loss(feats, captions, lengths)[0].backward()
    assert model.lstm.weight_hh.grad is None and model.L_o.weight.grad is not None
    assert model.attention.feat_proj.weight.grad is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_matches_torch(dtype):
    """The hand-written loss: F.cross_entropy's value and gradient, computed in float32 whatever the input dtype."""
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(37, 53, generator=g) * 4).to(dtype)
    targets = torch.randint(0, 53, (37,), generator=g)
    a = logits.clone().requires_grad_()
    b = logits.clone().float().requires_grad_()
    loss_a = CrossEntropy.apply(a, targets)
    loss_b = F.cross_entropy(b, targets)
    (loss_a * 3).backward()
    (loss_b * 3).backward()
    assert loss_a.dtype == torch.float32 and a.grad.dtype == dtype
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert torch.allclose(a.grad.float(), b.grad, atol=tol)
    assert not torch.equal(a.grad.float(), torch.zeros_like(b.grad))
