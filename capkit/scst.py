"""Self-critical sequence training (Rennie et al., CVPR 2017): fine-tune a captioner on its own CIDEr-D.

After cross-entropy training, for each image draw K captions w^s from the model and decode one greedily, w^g;
the greedy caption's reward is the baseline that each sample has to beat:

    loss = -1/(B K) sum_b sum_k (r(w^s_bk) - r(w^g_b)) * sum_t log p(w^s_bkt | w^s_bk,<t, image_b)

with r = CIDEr-D against the image's references. A sample that scores above what the model would say greedily
becomes more likely, one below it less likely; no learned value function, no reward scaling.

``baseline="mean"`` (the variant of Luo 2020, "A better variant of self-critical sequence training") uses instead,
for each sample, the mean reward of the image's other K - 1 samples: b_bk = 1/(K-1) sum_{j != k} r(w^s_bj). Every
image's advantages then sum to zero. On capkit's noisy captions the samples score far below the greedy caption
(the data's texts are a high-entropy distribution), so with the greedy baseline nearly every sample is pushed
down and one epoch took a Lite0 + soft run's validation CIDEr-D from 0.36 to 0.10; the mean baseline does not
have that failure, and is the default (``TrainConfig.scst_baseline``). The rewards use
document frequencies from the training references (:class:`capkit.metrics.CiderD`), as in the paper, so an image's reward does not
depend on the rest of its batch. Sampling, the baseline and the log-probabilities all run with dropout off
(eval mode): the policy being improved is the one that decodes at test time.

The sum of log-probabilities is computed by teacher-forcing the sampled captions through the decoder's fast path
(``forward_packed``), <end> included when the sample emitted it.

This module imports capkit.decode, capkit.dist and capkit.metrics.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from capkit import decode, dist
from capkit.metrics import CiderD


# ----------------------------------------------------------------------------------------------------------------
# the loss


def sequence_logprobs(model, feats, captions: list[list[int]], finished: list[bool], start_id: int, end_id: int,
                      forward_packed=None):
    """sum_t log p(w_t | w_<t, image) of each caption [N] (differentiable), <end> counted when finished.

    feats [N, L, D] (one row per caption); captions: token lists without <start>/<end>. ``forward_packed``:
    what runs the decoder's ``forward_packed`` (default: the model's own; under DDP its wrapper's forward)."""
    rows = [[start_id, *c] + ([end_id] if f else []) for c, f in zip(captions, finished)]
    lengths = torch.tensor([len(r) for r in rows], device=feats.device)
    padded = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long, device=feats.device)
    for i, r in enumerate(rows):
        padded[i, : len(r)] = torch.tensor(r)
    T = padded.size(1)
    logits, _, flat = (forward_packed or model.forward_packed)(feats, padded, lengths)  # [M, V], flat: b * (T - 1) + t
    targets = padded[:, 1:].reshape(-1)[flat]
    lp = F.log_softmax(logits.float(), dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)  # [M]
    return lp.new_zeros(len(rows)).index_add(0, flat // (T - 1), lp)


def self_critical_loss(seq_logprobs: torch.Tensor, rewards, baselines):
    """-mean_j (r_j - b_j) * seq_logprobs_j: the REINFORCE estimate with the greedy reward as baseline."""
    adv = torch.as_tensor(np.asarray(rewards, dtype=np.float64) - np.asarray(baselines, dtype=np.float64),
                          dtype=seq_logprobs.dtype, device=seq_logprobs.device)
    return -(adv * seq_logprobs).mean()


def leave_one_out(rewards, samples: int) -> list[float]:
    """For each of K = ``samples`` consecutive rewards of an image, the mean of the image's other K - 1."""
    out = []
    for i in range(0, len(rewards), samples):
        group = rewards[i:i + samples]
        total = sum(group)
        out += [(total - r) / (len(group) - 1) if len(group) > 1 else 0.0 for r in group]
    return out


def scst_step(model, optimizer, feats, ref_vecs, cider: CiderD, samples: int, max_len: int, start_id: int,
              end_id: int, unk_id: int, generator=None, grad_clip: float = 5.0, baseline: str = "mean",
              ddp=None) -> dict:
    """One self-critical update on a batch of images feats [B, L, D] with their precomputed reference vectors.
    ``baseline``: "greedy" (Rennie et al.) or "mean" (the other samples' mean reward; needs samples >= 2).

    Under torchrun (``ddp``: the DistributedDataParallel wrapper of ``models.Objective(model)``) every rank
    samples the whole batch (the same generator state on every rank: one process's samples), and backpropagates
    only its share of the samples, with the loss scaled so that DDP's average is the whole batch's gradient."""
    if baseline not in ("greedy", "mean"):
        raise ValueError(f"baseline must be 'greedy' or 'mean', not {baseline!r}")
    model.eval()  # dropout off: sample, baseline and gradient all come from the test-time policy
    greedy = decode.greedy(model, feats, start_id, end_id, max_len=max_len, unk_id=unk_id)
    base = [cider.score(h.tokens, r) for h, r in zip(greedy, ref_vecs)]  # reported either way
    rep = feats.repeat_interleave(samples, dim=0)  # [B K, L, D]: image b's samples are rows bK .. bK + K - 1
    caps, finished = decode.sample(model, feats, start_id, end_id, max_len=max_len, unk_id=unk_id,
                                   generator=generator, repeats=samples)
    rewards = [cider.score(c, ref_vecs[j // samples]) for j, c in enumerate(caps)]
    if baseline == "greedy":
        baselines = [base[j // samples] for j in range(len(caps))]
    else:
        baselines = leave_one_out(rewards, samples)
    if ddp is None:
        loss = self_critical_loss(sequence_logprobs(model, rep, caps, finished, start_id, end_id), rewards, baselines)
        value = float(loss.detach())
    else:  # this rank's rows; a rank without any runs row 0 at weight 0 (DDP needs its zero gradients)
        rows = dist.share(len(caps))
        weight, rows = (1.0 if rows else 0.0), rows or [0]
        lp = sequence_logprobs(model, rep[rows], [caps[j] for j in rows], [finished[j] for j in rows], start_id,
                               end_id, forward_packed=lambda *a: ddp("forward_packed", *a))
        loss = self_critical_loss(lp, [rewards[j] for j in rows], [baselines[j] for j in rows])
        # the mean over this rank's rows -> its share of the whole batch's mean, times the world (DDP averages)
        loss = loss * (weight * len(rows) * dist.world_size() / len(caps))
        value = dist.all_sum([float(loss.detach()) / dist.world_size()])[0]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    return {"loss": value, "reward": float(np.mean(rewards)), "baseline": float(np.mean(base))}
