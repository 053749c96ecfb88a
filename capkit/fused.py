"""capkit's speed tricks, each tested against the plain version it replaces: the hand-written autograd ops of the
decoder's training step (``capkit.models.CaptionDecoder``), and CIDEr-D among many candidates at once.

Each autograd op computes what a few lines of plain torch compute, with less memory traffic; each is tested against
that plain version (tests/test_models.py), values and gradients:

- :class:`ReluScore`: the attention scores e = relu(W_a a + q) @ w over [n, L, A], cache-blocked (rows go a few at
  a time through one scratch block; nothing of [n, L, A] size is saved, backward recomputes each block). Tested
  against ``torch.relu(proj + q.unsqueeze(1)) @ w`` under autograd (``test_relu_score_gradients``).
- :class:`DeferredProjGrad`: identity on W_a a; every time step's ReluScore adds its share of W_a a's gradient into
  one buffer, which this op hands autograd once, after the last step (no step allocates and sums a gradient of
  W_a a's size). Tested against per-step slices ``relu(proj[:n] + q) @ w`` of one proj
  (``test_relu_score_steps_accumulate_into_one_proj_gradient``).
- :class:`DeferredWeightGrad`: identity on the LSTM's packed gate pre-activations; its backward computes the LSTM's
  context and recurrent weight gradients for all steps in one matmul each, not 2 thin ones per step (the time
  loop multiplies by detached weights). Tested through the decoder: its gradients equal those of
  bench/reference.py's per-step ``nn.LSTMCell`` decoder (``test_same_as_study_per_step_decoder``,
  tests/test_bench.py's ``test_training_step_equals_the_reference``); ``test_frozen_lstm_weights``: frozen
  weights get none.
- :class:`CrossEntropy`: the mean cross-entropy over the [N, V] logits (label smoothing optional), computed in
  float32, its gradient written over the saved logits in backward. Tested against ``F.cross_entropy``
  (``test_cross_entropy_matches_torch``, ``test_label_smoothing_matches_torch``).

- :func:`gathered_scores` and :func:`gathered_context`: the same scores, and the attended context, for decoding
  rows that share images (beams and samples: k rows an image), read from the per-image proj and features
  through each row's image index, a block of rows at a time, instead of from per-row copies of them (a block
  whose rows share one image reads its [L, A] from cache, broadcast, and its context is one [k, L] x [L, D]
  product; a block of consecutive images reads them in place; only other blocks gather into a scratch). Tested against
  ``relu(proj[image] + q) @ w`` and ``bmm(alpha, feats[image])`` (``test_gathered_attention_equals_indexing``).

- :func:`fold_batchnorm`: a frozen CNN (the feature extractor) with every batch norm folded into the
  convolution before it: one pass less over each activation map (EfficientNet-Lite0's features ~1.7x faster
  on one CPU thread). Tested against the network it came from (tests/test_encoders.py:
  ``test_folded_batchnorm_gives_the_same_features``); ``capkit.encoders`` also checks it on the first images
  it extracts and keeps the plain network if they differ.

- :func:`cider_similarities`: CIDEr-D of every candidate against every other (minimum Bayes-risk decoding and the
  retrieval consensus score m^2 pairs an image), on dense [m, m, G] arrays of each n-gram order instead of one
  dictionary walk a pair. Tested against ``metrics.CiderD.score`` pair by pair and against
  ``CiderD.consensus_plain`` (tests/test_metrics.py: ``test_fast_consensus_equals_the_plain_one``).

This module imports only torch and numpy.
"""

from __future__ import annotations

import copy

import numpy as np
import torch


class ReluScore(torch.autograd.Function):
    """Attention scores e = relu(proj[:n] + q) @ w: proj [B, L, A] (its first n = len(q) rows), q [n, A], w [A]
    -> e [n, L].

    The [n, L, A] tensor behind them is the biggest one of every step and the work on it is memory-bound, so this
    op is written by hand: rows go a few at a time through one cache-sized scratch block (still in cache for the
    next op), and nothing of that size is saved: backward recomputes each block from proj and q.
    The decoder's time loop steps fewer rows as captions end. It passes the whole proj and `proj_grad`, a buffer
    that each step's backward adds its d/dproj into (rows :n, while the block is in cache), and
    `DeferredProjGrad` hands that buffer to autograd once, after the last step: proj is never sliced in the
    graph and no step allocates and sums a gradient of proj's size. Without `proj_grad`, backward returns
    d/dproj itself. Call: ReluScore.apply(proj, q, w[, proj_grad]).
    """

    @staticmethod
    def forward(ctx, proj, q, w, proj_grad=None):
        ctx.dtypes = q.dtype, w.dtype  # (they may differ from proj's under autocast)
        q, w = q.to(proj.dtype), w.to(proj.dtype)
        blocks, scratch = _row_blocks(proj, len(q))
        e = proj.new_empty(len(q), proj.size(1))
        for i in blocks:
            block = scratch[: i.stop - i.start]
            torch.add(proj[i], q[i].unsqueeze(1), out=block).relu_()
            torch.matmul(block, w, out=e[i])
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(proj, q, w)
            ctx.proj_grad = proj_grad
        return e

    @staticmethod
    def backward(ctx, grad_e):
        proj, q, w = ctx.saved_tensors
        A = proj.size(2)
        grad_e = grad_e.to(proj.dtype)
        grad_proj = ctx.proj_grad if ctx.proj_grad is not None else torch.zeros_like(proj)
        grad_q, grad_w = proj.new_empty(len(q), A), proj.new_zeros(A)
        blocks, scratch = _row_blocks(proj, len(q))
        for i in blocks:
            s = torch.add(proj[i], q[i].unsqueeze(1), out=scratch[: i.stop - i.start]).relu_()  # recomputed
            grad_w.addmv_(s.view(-1, A).t(), grad_e[i].reshape(-1))  # sum_bi g_bi s_bi
            g = s.sign_().mul_(grad_e[i].unsqueeze(2)).mul_(w)  # d/d(proj + q) = g * w * [s > 0], over s
            torch.sum(g, dim=1, out=grad_q[i])  # q's share is summed over the L regions
            grad_proj[i].add_(g)
        return (None if ctx.proj_grad is not None else grad_proj), grad_q.to(ctx.dtypes[0]), \
            grad_w.to(ctx.dtypes[1]), None


def _row_blocks(x: torch.Tensor, n: int) -> tuple[list[slice], torch.Tensor]:
    """Slices over the first n rows of x, each block about 2 MiB on the CPU (all n rows at once on CUDA), and one
    scratch tensor that holds a block."""
    if n == 0:
        return [], x.new_empty((0, *x.shape[1:]))
    rows = n if x.is_cuda else max(1, (2 << 20) // max(1, x[0].numel() * x.element_size()))
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)], x.new_empty((min(rows, n), *x.shape[1:]))


def _image_blocks(x: torch.Tensor, image: torch.Tensor) -> tuple[list[tuple[slice, int | slice | None]], torch.Tensor]:
    """:func:`_row_blocks` over the rows of ``image`` (each row's index into x), each block with what its rows
    read of x: one image (an int: k samples or beams of it), consecutive images (a slice: one row an image, as
    greedy decoding before any image is done), or None: any others, gathered (always None on CUDA: one block,
    and no device sync)."""
    blocks, scratch = _row_blocks(x, len(image))
    if x.is_cuda or not blocks:
        return [(i, None) for i in blocks], scratch
    ids, out = image.tolist(), []
    for i in blocks:
        first, block = ids[i.start], ids[i]
        if block.count(first) == len(block):
            out.append((i, first))
        elif block == list(range(first, first + len(block))):
            out.append((i, slice(first, first + len(block))))
        else:
            out.append((i, None))
    return out, scratch


def gathered_scores(proj, image, q, w):
    """e = relu(proj[image] + q) @ w: proj [B, L, A] (one row an image), image [n] (the image of each decoding
    row), q [n, A], w [A] -> e [n, L]. For search (no gradient): rows of one image read its block of proj
    instead of a copy of it. Under autograd (a gradient wanted) it computes the plain expression."""
    if torch.is_grad_enabled() and (proj.requires_grad or q.requires_grad or w.requires_grad):
        return torch.relu(proj[image] + q.unsqueeze(1)) @ w
    q, w = q.to(proj.dtype), w.to(proj.dtype)
    blocks, scratch = _image_blocks(proj, image)
    e = proj.new_empty(len(q), proj.size(1))
    for i, one in blocks:
        block = scratch[: i.stop - i.start]
        if one is None:  # rows of scattered images: their blocks of proj gathered into the scratch
            torch.index_select(proj, 0, image[i], out=block).add_(q[i].unsqueeze(1))
        else:  # one image (broadcast: read from cache, never copied) or consecutive ones (read in place)
            torch.add(proj[one], q[i].unsqueeze(1), out=block)
        torch.matmul(block.relu_(), w, out=e[i])
    return e


def gathered_context(alpha, feats, image):
    """z = sum_i alpha_i feats[image]_i: alpha [n, L], feats [B, L, D] (one row an image), image [n] -> z [n, D];
    as :func:`gathered_scores`, a block of rows at a time, without per-row copies of the features."""
    if torch.is_grad_enabled() and (alpha.requires_grad or feats.requires_grad):
        return torch.bmm(alpha.unsqueeze(1), feats[image]).squeeze(1)
    alpha = alpha.to(feats.dtype)
    blocks, scratch = _image_blocks(feats, image)
    z = feats.new_empty(len(alpha), feats.size(2))
    for i, one in blocks:
        if isinstance(one, int):  # rows of one image: one [k, L] x [L, D] product
            torch.mm(alpha[i], feats[one], out=z[i])
        else:
            block = feats[one] if one is not None else torch.index_select(feats, 0, image[i],
                                                                           out=scratch[: i.stop - i.start])
            torch.bmm(alpha[i].unsqueeze(1), block, out=z[i].unsqueeze(1))
    return z


class DeferredProjGrad(torch.autograd.Function):
    """Identity on proj [B, L, A]; its backward hands autograd `proj_grad`, the buffer that the time loop's
    ReluScore steps filled (they return no gradient for proj themselves). Autograd runs it after all of them.
    Call: DeferredProjGrad.apply(proj, proj_grad).
    """

    @staticmethod
    def forward(ctx, proj, proj_grad):
        ctx.set_materialize_grads(False)
        ctx.proj_grad = proj_grad
        return proj.view_as(proj)

    @staticmethod
    def backward(ctx, grad):
        return (ctx.proj_grad if grad is None else ctx.proj_grad + grad), None


class DeferredWeightGrad(torch.autograd.Function):
    """Identity on the packed gate pre-activations G [N, 4H]; its backward also returns the LSTM's context and
    recurrent weight gradients for all steps at once: dW_ctx = dG^T Z, dW_hh = dG^T H_prev.

    The time loop multiplies by detached weights (gradients flow to z and h only), and the gradient reaching G
    is exactly dL/dgates of every step, stacked in the packed order. So instead of two thin [B, 4H] x [B, D]
    weight-gradient matmuls (plus an accumulation) per step, two big ones run once, as cuDNN's LSTM does.
    `inputs` is a list the loop fills with each step's (beta z, h_{t-1}), detached.
    """

    @staticmethod
    def forward(ctx, gates, w_ctx, w_hh, inputs):
        ctx.inputs = inputs
        return gates.view_as(gates)

    @staticmethod
    def backward(ctx, grad):
        grad_w = [None, None]
        for k in (0, 1):  # 0: context weights from the z's, 1: recurrent weights from the h's
            if ctx.needs_input_grad[1 + k]:
                x = torch.cat([pair[k] for pair in ctx.inputs])
                grad_w[k] = grad.t().mm(x.to(grad.dtype))
        return grad, *grad_w, None


class CrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of logits [N, V] (any float dtype; computed in float32) against targets [N], with
    optional label smoothing eps: the target distribution is (1 - eps) onehot + eps / V (F.cross_entropy's
    `label_smoothing`).

    F.cross_entropy's backward builds two more [N, V] tensors (a zero-filled one-hot gradient, then the softmax
    gradient); at N ~ 600 tokens x 10k words each is 24 MB of memory traffic in a step. Here forward keeps only
    logsumexp, and backward turns the saved float32 logits into the gradient in place:
    (softmax - (1 - eps) onehot - eps / V) / N. (So it supports one backward per forward.)
    Call: CrossEntropy.apply(logits, targets[, eps]).
    """

    @staticmethod
    def forward(ctx, logits, targets, eps=0.0):
        ctx.dtype, ctx.eps = logits.dtype, float(eps)
        x = logits.float()
        lse = torch.logsumexp(x, dim=1)
        nll = lse - x.gather(1, targets.unsqueeze(1)).squeeze(1)
        if ctx.eps:  # smoothing's share: the mean over words of -log p_v = lse - mean_v x_v
            nll = (1.0 - ctx.eps) * nll + ctx.eps * (lse - x.mean(dim=1))
        ctx.save_for_backward(x, lse, targets)
        return nll.mean()

    @staticmethod
    def backward(ctx, grad):
        x, lse, targets = ctx.saved_tensors
        p = x.sub_(lse.unsqueeze(1)).exp_()  # softmax, over the saved logits
        if ctx.eps:
            p.sub_(ctx.eps / p.size(1))
        p[torch.arange(len(targets), device=p.device), targets] -= 1.0 - ctx.eps
        return p.mul_(grad / len(targets)).to(ctx.dtype), None, None


def fold_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` for inference in which each BatchNorm2d that directly follows a Conv2d among its
    parent's children is folded into it: W' = W * g / sqrt(var + eps) per output channel,
    b' = (b - mean) * g / sqrt(var + eps) + beta. The norm is replaced by what it did after normalising: nothing
    (torch's BatchNorm2d), or its dropout and activation (timm's BatchNormAct2d); another kind of norm is left as
    it is. Exact up to float rounding in eval mode, for networks whose children run in the order they are
    registered (torchvision's and timm's convolution blocks); ``net`` itself is not changed."""
    net = copy.deepcopy(net).eval()
    for parent in net.modules():
        kids = list(parent._modules.items())
        for (_, conv), (name, norm) in zip(kids, kids[1:]):
            if not (isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d)
                    and norm.track_running_stats and norm.running_var is not None):
                continue
            if type(norm) is torch.nn.BatchNorm2d:
                after = torch.nn.Identity()
            elif hasattr(norm, "act") and hasattr(norm, "drop"):  # timm: bn -> drop -> act
                after = torch.nn.Sequential(norm.drop, norm.act)
            else:
                continue
            with torch.no_grad():
                scale = norm.running_var.add(norm.eps).rsqrt()  # [C_out]
                if norm.weight is not None:
                    scale = scale * norm.weight
                shift = -norm.running_mean * scale + (norm.bias if norm.bias is not None else 0.0)
                if conv.bias is not None:
                    shift = shift + conv.bias * scale
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias = torch.nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)
            parent._modules[name] = after
    return net


def cider_similarities(vectors, n: int, sigma: float, rows: int | None = None) -> np.ndarray:
    """S [m, m] with S[i, j] = CIDEr-D of candidate i scored against candidate j as its only reference (x10);
    with ``rows`` r, only the first r candidates as hypotheses: S [r, m] (the first r rows of the full S).

    ``vectors``: ``metrics.CiderD._vector`` of each candidate: (one {n-gram: tf-idf weight} per order, the orders'
    norms, the length). For each order k the weights become a dense [m, G_k] array W over the n-grams the
    candidates use, and sum_g min(W_ig, W_jg) W_jg is one broadcast over [m, m, G_k]; then the division by the
    norms (where both are non-zero), the Gaussian length penalty, the mean over orders and x10, as
    ``CiderD._sim``/``score`` do pair by pair.
    """
    m = len(vectors)
    r = m if rows is None else min(int(rows), m)
    lengths = np.array([v[2] for v in vectors], dtype=np.float64)
    penalty = np.exp(-((lengths[:r, None] - lengths[None, :]) ** 2) / (2 * sigma ** 2))  # [r, m]
    total = np.zeros((r, m))
    for k in range(n):
        column: dict = {}
        for v in vectors:
            for g in v[0][k]:
                column.setdefault(g, len(column))
        W = np.zeros((m, max(len(column), 1)))  # [m, G]
        for i, v in enumerate(vectors):
            for g, w in v[0][k].items():
                W[i, column[g]] = w
        val = (np.minimum(W[:r, None, :], W[None, :, :]) * W[None, :, :]).sum(-1)  # [r, m]: i hyp, j ref
        norms = np.array([v[1][k] for v in vectors])
        denom = norms[:r, None] * norms[None, :]
        total += np.divide(val, denom, out=val.copy(), where=denom > 0)
    return 10.0 * total * penalty / n
