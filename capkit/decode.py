"""Batched greedy decoding and batched beam search over any word-by-word decoder of the registry
(``capkit.models.DECODERS``, search ``"sequence"``: e.g. ``CaptionDecoder``).

Both work on a whole batch of images at once (the study decoded one image at a time): greedy steps B rows,
beam search steps B*k rows in one tensor batch. They drive the model through its incremental API
(`init_state`, `step`, `reorder_state`) and run under torch.inference_mode. Putting the model in eval() mode
(dropout off) is the caller's job.

Conventions shared by both:
- A step emits one token; `max_len` caps the number of steps, <end> included. A hypothesis that emits <end>
  is `finished` (at most max_len - 1 words); one that hits the cap has exactly max_len words, unfinished.
- `score` is the sum of the log-probabilities of the emitted tokens (the <end> token's included).
- <start> is never emitted; neither is `unk_id` when given (capkit passes <unk>: a caption or a hashtag set that
  says "unknown word" is never what a reader wants, and for hashtags it is a sure false positive).
  `forbid_repeats=True` masks every word already in the hypothesis (hashtags).
- Rows whose caption (greedy, sampling) or image (beam) is done stay in the batch, masked, until they are a
  quarter of it; then the batch is compacted (index_select of the state), so short captions stop costing compute
  without a copy of the state at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class Hypothesis:
    tokens: list[int]  # generated words, without <start> / <end>
    score: float  # sum of log-probabilities (with <end> when finished)
    alphas: torch.Tensor  # [len(tokens), L]: the attention map behind each word
    finished: bool  # emitted <end> (False: cut at max_len)


def _banned(start_id: int, unk_id: int | None) -> list[int]:
    return [start_id] if unk_id is None else [start_id, unk_id]


def _mask(logprobs: torch.Tensor, banned: list[int], used: torch.Tensor | None) -> torch.Tensor:
    logprobs[:, banned] = float("-inf")
    if used is not None:
        logprobs.masked_fill_(used, float("-inf"))
    return logprobs


@torch.inference_mode()
def greedy(
    model: nn.Module,
    feats: torch.Tensor,
    start_id: int,
    end_id: int,
    max_len: int = 30,
    forbid_repeats: bool = False,
    unk_id: int | None = None,
) -> list[Hypothesis]:
    """The most likely next token at every step, for feats [B, L, D] at once. One Hypothesis per image."""
    banned = _banned(start_id, unk_id)
    feats = feats.to(next(model.parameters()).dtype)  # scores and attention maps come back in the model's dtype
    B, L = feats.shape[:2]
    state = model.init_state(feats)
    image = torch.arange(B, device=feats.device)  # the image of each row
    tokens = torch.full((B,), start_id, dtype=torch.long, device=feats.device)
    score = feats.new_zeros(B)  # running score of each row
    live = torch.ones(B, dtype=torch.bool, device=feats.device)
    V = model.config.vocab_size
    used = torch.zeros(B, V, dtype=torch.bool, device=feats.device) if forbid_repeats else None  # words so far
    # per-image results
    out_tokens = torch.zeros(B, max_len, dtype=torch.long, device=feats.device)
    out_alphas = feats.new_zeros(B, max_len, L)
    out_len = torch.full((B,), max_len, dtype=torch.long, device=feats.device)
    out_score = feats.new_zeros(B)
    finished = torch.zeros(B, dtype=torch.bool, device=feats.device)

    for t in range(max_len):
        logprobs, alpha, state = model.step(tokens, state)
        score, tokens = (score.unsqueeze(1) + _mask(logprobs, banned, used)).max(dim=1)
        stuck = live & torch.isinf(score)  # no allowed word left (every word masked): stop, unfinished
        ended = live & (tokens == end_id) & ~stuck
        going = live & ~ended & ~stuck
        out_tokens[image[going], t] = tokens[going]
        out_alphas[image[going], t] = alpha[going].to(out_alphas.dtype)
        out_len[image[ended | stuck]] = t
        finished[image[ended]] = True
        out_score[image[ended | going]] = score[ended | going]
        live = going
        if not live.any() or t == max_len - 1:
            break
        if used is not None:
            used[torch.arange(len(tokens), device=used.device), tokens] = True
        if (~live).sum() * 4 >= len(live):  # compact: drop the rows that are done
            keep = live.nonzero().squeeze(1)
            state = model.reorder_state(state, keep)
            image, tokens, score, live = image[keep], tokens[keep], score[keep], live[keep]
            used = used[keep] if used is not None else None

    return [
        Hypothesis(out_tokens[b, :n].tolist(), float(out_score[b]), out_alphas[b, :n].clone(), bool(finished[b]))
        for b, n in enumerate(out_len.tolist())
    ]


@torch.inference_mode()
def beam_search(
    model: nn.Module,
    feats: torch.Tensor,
    start_id: int,
    end_id: int,
    beam_size: int = 3,
    max_len: int = 30,
    length_penalty: float = 0.0,
    forbid_repeats: bool = False,
    unk_id: int | None = None,
) -> list[Hypothesis]:
    """Beam search for feats [B, L, D] at once, keeping B*k beams in one batch. One Hypothesis per image.

    The Show-Attend-Tell beam: at each step the k live beams of an image expand to their best continuations;
    those that emit <end> are set aside and the image's beam shrinks by one for each, until none is left or
    max_len steps have run. The answer is the best finished hypothesis by score / n_tokens ** length_penalty
    (n_tokens counts <end>; 0.0 = the plain sum of log-probabilities, 1.0 = the mean). Only when an image
    has no finished hypothesis at all is its best unfinished beam returned (finished=False).
    beam_size=1 gives exactly greedy().
    """
    feats = feats.to(next(model.parameters()).dtype)
    banned = _banned(start_id, unk_id)
    B, L = feats.shape[:2]
    k, V, dev = beam_size, model.config.vocab_size, feats.device
    state = model.reorder_state(model.init_state(feats), torch.arange(B, device=dev).repeat_interleave(k))
    image = torch.arange(B, device=dev)  # the image of each block of k rows
    tokens = torch.full((B * k,), start_id, dtype=torch.long, device=dev)
    scores = feats.new_full((B, k), float("-inf"))
    scores[:, 0] = 0.0  # one live beam to start with, so the first step does not pick k copies of one word
    n_left = torch.full((B,), k, dtype=torch.long, device=dev)  # beams still searching, per image
    hist_tokens = torch.zeros(B * k, 0, dtype=torch.long, device=dev)  # the words of each row so far
    hist_alphas = feats.new_zeros(B * k, 0, L)
    used = torch.zeros(B * k, V, dtype=torch.bool, device=dev) if forbid_repeats else None
    done: list[list[Hypothesis]] = [[] for _ in range(B)]
    best_live: list[Hypothesis | None] = [None] * B
    ranks = torch.arange(k, device=dev)

    def penalised(h: Hypothesis) -> float:
        return h.score / max(len(h.tokens) + h.finished, 1) ** length_penalty

    def hypothesis(row: int, score, finished: bool) -> Hypothesis:  # the words of one row so far
        return Hypothesis(hist_tokens[row].tolist(), float(score), hist_alphas[row].clone(), finished)

    for t in range(max_len):
        n = len(image)
        logprobs, alpha, state = model.step(tokens, state)
        cand = scores.view(-1, 1) + _mask(logprobs, banned, used)  # [n*k, V]
        top, idx = cand.view(n, k * V).topk(k, dim=1)  # the best k continuations of each image: [n, k]
        src = (torch.arange(n, device=dev).unsqueeze(1) * k + idx // V).view(-1)  # the row each one extends
        tokens = (idx % V).view(-1)
        alive = torch.isfinite(top) & (ranks < n_left.unsqueeze(1))  # an image whose beam shrank keeps its best
        ended = alive & (tokens == end_id).view(n, k)
        for i, j in ended.nonzero().tolist():  # set finished hypotheses aside (<end> has no attention map kept)
            done[int(image[i])].append(hypothesis(int(src[i * k + j]), top[i, j], True))
        for i in ((n_left > 0) & ~alive.any(1)).nonzero().squeeze(1).tolist():  # no allowed word left: stop here
            j = int(scores[i].argmax())
            best_live[int(image[i])] = hypothesis(i * k + j, scores[i, j], False)
            n_left[i] = 0
        n_left -= ended.sum(1)
        scores = top.masked_fill(~alive | ended, float("-inf"))
        hist_tokens = torch.cat([hist_tokens[src], tokens.unsqueeze(1)], dim=1)
        hist_alphas = torch.cat([hist_alphas[src], alpha[src].unsqueeze(1).to(hist_alphas.dtype)], dim=1)

        searching = (n_left > 0) & torch.isfinite(scores).any(1)
        if t == max_len - 1:  # cut at max_len: keep the best unfinished beam of every image still searching
            for i in searching.nonzero().squeeze(1).tolist():
                j = int(scores[i].argmax())
                best_live[int(image[i])] = hypothesis(i * k + j, scores[i, j], False)
            break
        if not searching.any():
            break
        state = model.reorder_state(state, src, static=False)  # beams only move within their image
        if used is not None:
            used = used[src]
            used[torch.arange(n * k, device=dev), tokens] = True
        if (~searching).sum() * 4 >= n:  # compact: drop the images that are done
            keep = searching.nonzero().squeeze(1)
            rows = (keep.unsqueeze(1) * k + ranks).view(-1)
            state = model.reorder_state(state, rows)
            image, scores, n_left = image[keep], scores[keep], n_left[keep]
            tokens, hist_tokens, hist_alphas = tokens[rows], hist_tokens[rows], hist_alphas[rows]
            used = used[rows] if used is not None else None

    empty = Hypothesis([], 0.0, feats.new_zeros(0, L), False)  # only when max_len == 0
    return [max(done[b], key=penalised) if done[b] else (best_live[b] or empty) for b in range(B)]


@torch.inference_mode()
def sample(
    model: nn.Module,
    feats: torch.Tensor,
    start_id: int,
    end_id: int,
    max_len: int = 30,
    unk_id: int | None = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    repeats: int = 1,
) -> tuple[list[list[int]], list[bool]]:
    """``repeats`` captions drawn from the model's distribution for each row of feats [B, L, D] (rows b*repeats ..
    (b+1)*repeats - 1 are image b's): w_t ~ p(. | w_<t, image)^(1/temperature), renormalised over the allowed
    words. Returns the token lists (without <start> / <end>) and whether each emitted <end>. Self-critical
    training's w^s (at temperature 1); minimum Bayes-risk decoding's candidates.

    The decoding state is set up once per image and then copied to its rows (like beam search's beams): the
    per-image work (W_a a_i over every region) is not repeated for every sample."""
    banned = _banned(start_id, unk_id)
    feats = feats.to(next(model.parameters()).dtype)
    B = feats.size(0) * repeats
    state = model.init_state(feats)
    if repeats > 1:
        state = model.reorder_state(state, torch.arange(feats.size(0), device=feats.device).repeat_interleave(repeats))
    tokens = torch.full((B,), start_id, dtype=torch.long, device=feats.device)
    rows = torch.arange(B, device=feats.device)  # the output row of each batch row
    live = torch.ones(B, dtype=torch.bool, device=feats.device)  # batch rows still drawing
    out = torch.zeros(B, max_len, dtype=torch.long, device=feats.device)
    length = torch.full((B,), max_len, dtype=torch.long, device=feats.device)
    finished = torch.zeros(B, dtype=torch.bool, device=feats.device)
    for t in range(max_len):
        logprobs, _, state = model.step(tokens, state)
        draw = live.nonzero().squeeze(1)  # only live rows draw, in order: the same draws as a compacted batch
        probs = _mask(logprobs[draw].float() / temperature, banned, None).exp_()  # multinomial renormalises
        drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        tokens = tokens.index_put((draw,), drawn)  # rows that are done keep stepping on their last token
        ended = drawn == end_id
        out[rows[draw[~ended]], t] = drawn[~ended]
        length[rows[draw[ended]]] = t
        finished[rows[draw[ended]]] = True
        live[draw[ended]] = False
        if not live.any() or t == max_len - 1:
            break
        if (~live).sum() * 4 >= len(live):  # compact (as greedy does): drop the rows that are done
            keep = live.nonzero().squeeze(1)
            state = model.reorder_state(state, keep)
            rows, tokens, live = rows[keep], tokens[keep], live[keep]
    return [out[b, :n].tolist() for b, n in enumerate(length.tolist())], finished.tolist()
