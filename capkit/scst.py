"""Self-critical sequence training (Rennie et al., CVPR 2017): fine-tune a captioner on its own CIDEr-D.

After cross-entropy training, for each image draw K captions w^s from the model and decode one greedily, w^g;
the greedy caption's reward is the baseline that each sample has to beat:

    loss = -1/(B K) sum_b sum_k (r(w^s_bk) - r(w^g_b)) * sum_t log p(w^s_bkt | w^s_bk,<t, image_b)

with r = CIDEr-D against the image's references. A sample that scores above what the model would say greedily
becomes more likely, one below it less likely; no learned value function, no reward scaling. The rewards use
document frequencies from the training references (:class:`CiderD`), as in the paper, so an image's reward does not
depend on the rest of its batch. Sampling, the baseline and the log-probabilities all run with dropout off
(eval mode): the policy being improved is the one that decodes at test time.

The sum of log-probabilities is computed by teacher-forcing the sampled captions through the decoder's fast path
(``forward_packed``), <end> included when the sample emitted it.

This module imports capkit.decode and capkit.models only.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

from capkit import decode


# ----------------------------------------------------------------------------------------------------------------
# the reward


def _ngrams(tokens, n: int) -> Counter:
    tokens = list(tokens)
    return Counter(tuple(tokens[i:i + k]) for k in range(1, n + 1) for i in range(len(tokens) - k + 1))


class CiderD:
    """CIDEr-D (Vedantam et al. 2015) with document frequencies fixed from a reference corpus.

    Same formula as pycocoevalcap's ``Cider`` (n = 1..4, tf-idf vectors, the candidate's weights clipped by the
    reference's, Gaussian length penalty sigma 6, mean over references, x10); pycocoevalcap recomputes the
    document frequencies from whatever batch it scores, which would make a reward depend on its batch, so the
    statistics are kept here once. Built from the references of the images being scored, the scores equal
    pycocoevalcap's (tested). Tokens may be strings or ids.

    ``corpus``: per image, its list of reference token lists.
    """

    def __init__(self, corpus, n: int = 4, sigma: float = 6.0):
        self.n, self.sigma = n, sigma
        self.df = Counter()
        for refs in corpus:
            self.df.update(set(g for ref in refs for g in _ngrams(ref, n)))
        self.log_docs = math.log(max(len(corpus), 1))

    def _vector(self, tokens):
        vec = [dict() for _ in range(self.n)]
        norm = [0.0] * self.n
        for gram, tf in _ngrams(tokens, self.n).items():
            w = tf * (self.log_docs - math.log(max(1.0, self.df.get(gram, 0.0))))
            vec[len(gram) - 1][gram] = w
            norm[len(gram) - 1] += w * w
        return vec, [math.sqrt(x) for x in norm], len(tokens)

    def _sim(self, hyp, ref) -> float:
        (vh, nh, lh), (vr, nr, lr) = hyp, ref
        penalty = math.exp(-((lh - lr) ** 2) / (2 * self.sigma ** 2))
        total = 0.0
        for k in range(self.n):
            val = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
            if nh[k] and nr[k]:
                val /= nh[k] * nr[k]
            total += val * penalty
        return total / self.n

    def refs(self, refs) -> list:
        """Precomputed vectors of one image's references (to score many candidates against them)."""
        return [self._vector(r) for r in refs]

    def score(self, hyp, refs) -> float:
        """CIDEr-D of one candidate against one image's references (token lists, or ``refs(...)``'s output)."""
        ref_vecs = refs if refs and isinstance(refs[0], tuple) else self.refs(refs)
        if not ref_vecs:
            return 0.0
        h = self._vector(hyp)
        return 10.0 * sum(self._sim(h, r) for r in ref_vecs) / len(ref_vecs)


# ----------------------------------------------------------------------------------------------------------------
# the loss


def sequence_logprobs(model, feats, captions: list[list[int]], finished: list[bool], start_id: int, end_id: int):
    """sum_t log p(w_t | w_<t, image) of each caption [N] (differentiable), <end> counted when finished.

    feats [N, L, D] (one row per caption); captions: token lists without <start>/<end>."""
    rows = [[start_id, *c] + ([end_id] if f else []) for c, f in zip(captions, finished)]
    lengths = torch.tensor([len(r) for r in rows], device=feats.device)
    padded = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long, device=feats.device)
    for i, r in enumerate(rows):
        padded[i, : len(r)] = torch.tensor(r)
    T = padded.size(1)
    logits, _, flat = model.forward_packed(feats, padded, lengths)  # [M, V], flat: b * (T - 1) + t
    targets = padded[:, 1:].reshape(-1)[flat]
    lp = F.log_softmax(logits.float(), dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)  # [M]
    return lp.new_zeros(len(rows)).index_add(0, flat // (T - 1), lp)


def self_critical_loss(seq_logprobs: torch.Tensor, rewards, baselines):
    """-mean_j (r_j - b_j) * seq_logprobs_j: the REINFORCE estimate with the greedy reward as baseline."""
    adv = torch.as_tensor(np.asarray(rewards, dtype=np.float64) - np.asarray(baselines, dtype=np.float64),
                          dtype=seq_logprobs.dtype, device=seq_logprobs.device)
    return -(adv * seq_logprobs).mean()


def scst_step(model, optimizer, feats, ref_vecs, cider: CiderD, samples: int, max_len: int, start_id: int,
              end_id: int, unk_id: int, generator=None, grad_clip: float = 5.0) -> dict:
    """One self-critical update on a batch of images feats [B, L, D] with their precomputed reference vectors."""
    model.eval()  # dropout off: sample, baseline and gradient all come from the test-time policy
    greedy = decode.greedy(model, feats, start_id, end_id, max_len=max_len, unk_id=unk_id)
    base = [cider.score(h.tokens, r) for h, r in zip(greedy, ref_vecs)]
    rep = feats.repeat_interleave(samples, dim=0)  # [B K, L, D]: image b's samples are rows bK .. bK + K - 1
    caps, finished = decode.sample(model, rep, start_id, end_id, max_len=max_len, unk_id=unk_id,
                                   generator=generator)
    rewards = [cider.score(c, ref_vecs[j // samples]) for j, c in enumerate(caps)]
    baselines = [base[j // samples] for j in range(len(caps))]
    loss = self_critical_loss(sequence_logprobs(model, rep, caps, finished, start_id, end_id), rewards, baselines)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    return {"loss": float(loss.detach()), "reward": float(np.mean(rewards)), "baseline": float(np.mean(base))}
