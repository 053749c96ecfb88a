"""Set prediction of hashtags: one sigmoid per hashtag of the vocabulary, trained with binary cross-entropy.

The sequence decoders (capkit.models) write a post's hashtags one after the other, as if they were a sentence;
but a post's hashtags are an unordered set. This model scores every hashtag of the vocabulary at once and keeps
the top k, or those above a threshold; k or the threshold is chosen on validation only (`choose_rule`).
Registered as decoder "multilabel" (target "hashtag", search "set": see models.DecoderSpec).

Notation (as in capkit.models): image features a_i (i = 1..L, dim D), hashtag vocabulary v = 1..V (the four
special ids PAD/UNK/START/END are never targets nor predictions), y_v in {0, 1}: v is one of the post's tags.

    a'_i    = LayerNorm(a_i)                                           [B, L, D]  (cached features: std ~2.5,
                                                                                   channel means spread ~1.4)
    h_i     = dropout(relu(W_1 a'_i + b_1))                            [B, L, H]  region features, shared by all tags
  pooling "mean" (one image vector for all tags):
    alpha_vi = 1 / L
  pooling "label" (label-wise attention: each tag its own query q_v over the regions, as in CAML, Mullenbach
  et al. 2018; alpha_v is a per-tag attention map: `attention`):
    alpha_v = softmax_i(q_v . h_i)                                     [B, V, L]
  "mean" and "label":
    s_v     = sum_i alpha_vi (u_v . h_i) + c_v  =  u_v . (sum_i alpha_vi h_i) + c_v     [B, V]  logits
  pooling "mil" (multiple-instance: every region scores every tag, the scores pooled by a soft maximum, so that a
  tag one small region shows is not averaged away by the other regions; no extra parameters):
    s_v     = log( 1/L sum_i exp(u_v . h_i) ) + c_v                    [B, V]  logits (= mean's when the u_v . h_i
                                                                                  are equal, never below it)
    alpha_v = softmax_i(u_v . h_i)                                     [B, V, L]  each region's share of s_v's
                                                                                  gradient: the tag's map
  all:
    p_v     = sigmoid(s_v)                                             `scores` (0 for the special ids)
    loss    = 1/B sum_b sum_{v not special} BCE(s_bv, y_bv)             summed over the vocabulary, mean over images

The right-hand form of s_v is what "mean" computes (pool, then one [B, H] x [H, V] matmul); "label" computes the
left-hand one, h @ [Q; U]^T -> [B, L, 2V] in one matmul, without building the [B, V, H] pooled vectors; "mil"
h @ U^T -> [B, L, V] (memory O(B L V) for both: fine for hashtag vocabularies of a few thousand).
c_v starts at logit(0.01) (a post has ~8 of ~250 tags here), so the first steps do not spend themselves pushing
every p_v down.

Pooling, measured on the embedded sample (efficientnet_lite2_deep, 1540 / 220 / 440 posts, 249 tags; Adam 1e-3,
batch 32, up to 15 epochs, best epoch and rule on validation; 3 seeds): validation micro F1 "mean" 0.369 / 0.373
/ 0.374, "label" 0.370 / 0.367 / 0.368; test 0.352 / 0.353 / 0.348 and 0.351 / 0.352 / 0.348 (most-frequent
tags 0.240, the LSTM decoders ~0.30-0.33): "mean" was as good as "label" on those last-stage grids, and faster.
On make run's grids (stages 5 + 7, efficientnet_lite2_multi) the drawn objects (~6% of the image each) are what
mean pooling misreads: a probe of 13 object classes from the same features, per-region scores pooled by the mean,
max or soft maximum, found them at F1 0.73 / 0.91 / 0.93 on validation. The set model there (make run's settings:
16 epochs, early stop, the neighbours' votes and the rule chosen on validation; seeds 0 / 1 / 2, one thread):

    pooling   validation F1             test F1                   train (s, one thread)
    mean      0.385 / 0.386 / 0.383     0.364 / 0.361 / 0.357     ~125-145
    mil       0.388 / 0.389 / 0.391     0.372 / 0.367 / 0.363     ~200-220
    label     0.389 / 0.394 / 0.394     0.364 / 0.371 / 0.368     ~240-270

"mil" is the default: +0.006-0.008 test F1 over "mean" on every seed, as good as "label" at ~80% of its time
(a training step, batch 32: mean 165 ms, mil 231 ms, label 291 ms). Checkpoints keep their pooling.

Choosing the output set (validation data only): `choose_rule(val_probs, val_true)` tries top-k for k = 1..max_k
and p_v >= t over a grid of t, and keeps the one with the best micro F1 (metrics.hashtag_scores' micro F1);
`apply_rule(probs, rule)` applies it to other images.

The neighbours' votes (`neighbour_votes`, `blend`): the share v_v of an image's k nearest training posts that
carry tag v, mixed into the model's probabilities, p'_v = (1 - w) p_v + w v_v, before the rule; k, w and the rule
are chosen together on validation (capkit.inference.set_rule; w = 0 keeps the model alone). The search for the
neighbours is capkit.retrieval's (the encoder's final pooled vectors); this module only sees their indices.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import DecoderSpec
from .text import END_ID, PAD_ID, START_ID, UNK_ID

SPECIAL_IDS = (PAD_ID, UNK_ID, START_ID, END_ID)
POOLINGS = ("mil", "mean", "label")
PRIOR = 0.01  # initial p_v of every tag


@dataclass
class MultilabelConfig:
    """The tagger's sizes. ``DecoderSpec.build`` passes the trainer's sizes and drops what is not here (e.g.
    embed_dim, attention_dim, decoder_dim): vocab_size, encoder_dim and dropout are taken from the trainer."""

    vocab_size: int
    encoder_dim: int
    hidden_dim: int = 512  # H: the region features h_i
    dropout: float = 0.5  # on h_i (training only)
    # "mil": soft maximum of the regions' scores (per-tag maps) | "mean": mean over the regions (uniform maps) |
    # "label": label-wise attention (per-tag maps)
    pooling: str = "mil"

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {self.pooling!r}")
        if self.vocab_size <= len(SPECIAL_IDS):
            raise ValueError(f"vocab_size {self.vocab_size} leaves no hashtag besides the special tokens")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MultilabelConfig":
        return cls(**d)


# ----------------------------------------------------------------------------------------------------------------
# the model


class MultilabelTagger(nn.Module):
    """features [B, L, D] -> one probability per hashtag [B, V]. See the module docstring for the equations."""

    def __init__(self, config: MultilabelConfig):
        super().__init__()
        self.config = config
        V, H = config.vocab_size, config.hidden_dim
        self.norm = nn.LayerNorm(config.encoder_dim)
        self.region = nn.Linear(config.encoder_dim, H)  # W_1, b_1
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(H, V)  # u_v (rows), c_v
        nn.init.constant_(self.out.bias, math.log(PRIOR / (1 - PRIOR)))
        if config.pooling == "label":
            self.query = nn.Parameter(torch.randn(V, H) * H ** -0.5)  # q_v
        special = torch.zeros(V, dtype=torch.bool)
        special[list(SPECIAL_IDS)] = True
        self.register_buffer("special", special, persistent=False)  # [V]: never a target nor a prediction

    def _regions(self, feats):
        feats = feats.to(self.region.weight.dtype)  # e.g. float16 features from the cache
        return self.dropout(F.relu(self.region(self.norm(feats))))  # h [B, L, H]

    def _logits_alpha(self, feats, want_alpha: bool = False):
        h = self._regions(feats)
        if self.config.pooling == "mean":
            logits = self.out(h.mean(dim=1))  # [B, V]
            alpha = h.new_full((h.size(0), self.config.vocab_size, h.size(1)), 1.0 / h.size(1)) if want_alpha else None
            return logits, alpha
        if self.config.pooling == "mil":
            s = h @ self.out.weight.t()  # u_v . h_i [B, L, V]
            logits = torch.logsumexp(s, dim=1) - math.log(h.size(1)) + self.out.bias  # [B, V]
            return logits, (torch.softmax(s, dim=1).transpose(1, 2) if want_alpha else None)
        V = self.config.vocab_size
        e, s = (h @ torch.cat([self.query, self.out.weight]).t()).split(V, dim=2)  # q_v . h_i, u_v . h_i [B, L, V]
        alpha = torch.softmax(e, dim=1)  # over the regions
        logits = (alpha * s).sum(dim=1) + self.out.bias  # [B, V]
        return logits, (alpha.transpose(1, 2) if want_alpha else None)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Logits s [B, V] (special ids included, untrained: use `scores`)."""
        return self._logits_alpha(feats)[0]

    @torch.no_grad()
    def scores(self, feats: torch.Tensor) -> torch.Tensor:
        """Probabilities p [B, V] (float32) for feats [B, L, D]; the special ids get 0. Runs in eval mode."""
        was = self.training
        self.eval()
        try:
            return torch.sigmoid(self(feats).float()).masked_fill(self.special, 0.0)
        finally:
            self.train(was)

    @torch.no_grad()
    def attention(self, feats: torch.Tensor) -> torch.Tensor:
        """alpha [B, V, L]: where each tag looks ("mil", "label"; uniform 1/L for "mean"). Runs in eval mode."""
        was = self.training
        self.eval()
        try:
            return self._logits_alpha(feats, want_alpha=True)[1].float()
        finally:
            self.train(was)

    def loss(self, feats, captions, lengths, lambda_att: float = 0.0, label_smoothing: float = 0.0):
        """The trainer's loss: BCE-with-logits of every non-special tag, summed over the vocabulary and averaged
        over the B images (the images' tag sets from `targets`).

        label_smoothing eps smooths the 0/1 targets to eps/2 and 1 - eps/2. lambda_att is accepted and ignored:
        there is no attention regulariser (parts["att"] is 0). Returns (loss, parts) with parts = {"ce" (= the
        BCE), "att", "loss"} detached.
        """
        logits = self(feats).float()  # float32 also under autocast
        y = targets(captions, lengths, self.config.vocab_size).to(logits.device)
        if label_smoothing:
            y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
        keep = ~self.special
        bce = F.binary_cross_entropy_with_logits(logits[:, keep], y[:, keep], reduction="sum") / max(len(logits), 1)
        return bce, {"ce": bce.detach(), "att": bce.new_zeros(()), "loss": bce.detach()}


def targets(captions: torch.Tensor, lengths: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The multi-hot tag sets y [B, V] (float) of captions [B, T] = <start> ids <end> <pad>.. with lengths [B]
    counting <start> and <end>: the ids at positions 1 .. length-2 of each row; the special ids stay 0."""
    B, T = captions.shape
    pos = torch.arange(T, device=captions.device)
    inside = (pos >= 1) & (pos < (lengths.to(captions.device) - 1).unsqueeze(1))  # [B, T]
    y = torch.zeros(B, vocab_size, device=captions.device)
    y.scatter_(1, captions * inside, inside.float())  # outside positions write 0 into column PAD_ID
    y[:, list(SPECIAL_IDS)] = 0.0
    return y.clamp_(max=1.0)


# ----------------------------------------------------------------------------------------------------------------
# from probabilities to a set: the rule, chosen on validation


DEFAULT_THRESHOLDS = tuple(round(0.02 * i, 2) for i in range(1, 50))  # 0.02, 0.04, .., 0.98


def _ranked(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """probs [N, V] -> (sorted probabilities, ids) [N, V], highest first (ties: lower id first), special ids last."""
    probs = probs.detach().float().cpu().clone()
    probs[:, list(SPECIAL_IDS)] = -1.0
    return torch.sort(probs, dim=1, descending=True, stable=True)


def _counts(sorted_probs: torch.Tensor, rule: dict) -> torch.Tensor:
    """How many of the ranked ids each image keeps under ``rule`` [N]."""
    n_tags = sorted_probs.size(1) - len(SPECIAL_IDS)
    if rule["kind"] == "k":
        return torch.full((len(sorted_probs),), min(int(rule["value"]), n_tags), dtype=torch.long)
    if rule["kind"] == "threshold":
        above = (sorted_probs >= rule["value"]).sum(1)
        return above.clamp(min=min(int(rule.get("min_tags", 1)), n_tags))
    raise ValueError(f"rule kind must be 'k' or 'threshold', not {rule['kind']!r}")


def apply_rule(probs: torch.Tensor, rule: dict) -> list[list[int]]:
    """Each image's predicted tag ids under ``rule`` (from `choose_rule`), highest probability first.

    probs [N, V] (`MultilabelTagger.scores`). {"kind": "k", "value": k}: the k likeliest tags;
    {"kind": "threshold", "value": t, "min_tags": m}: every tag with p >= t, but at least the m likeliest
    (m = 1 unless the rule says otherwise: an image always gets a tag). The special ids are never predicted.
    """
    sp, ids = _ranked(probs)
    return [row[:n].tolist() for row, n in zip(ids, _counts(sp, rule).tolist())]


def choose_rule(val_probs: torch.Tensor, val_true: Sequence, max_k: int = 10,
                thresholds: Sequence[float] = DEFAULT_THRESHOLDS, min_tags: int = 1,
                labels: Sequence | None = None) -> dict:
    """The output rule with the best validation micro F1: top-k (k = 1..max_k) or p >= t (t in ``thresholds``,
    at least ``min_tags`` tags per image). Takes validation data only.

    val_probs [N, V]; val_true: per validation image, its true tag ids (a set or list). With ``labels`` (e.g. the
    vocabulary's itos), val_true holds labels instead (tag strings) and predicted id v counts as labels[v]: true
    tags outside the vocabulary then count as misses, as they do in metrics.hashtag_scores on tag strings.
    The F1 is metrics.hashtag_scores' micro F1 (hits, predicted and true counts summed over the images).
    Ties go to the first candidate: top-k with the smaller k, then thresholds in the given order.
    Returns {"kind": "k" | "threshold", "value": k or t, "min_tags" (threshold rules), "val_f1", "val_precision",
    "val_recall"}.
    """
    if len(val_true) != len(val_probs):
        raise ValueError(f"{len(val_probs)} validation rows but {len(val_true)} true tag sets")
    sp, ids = _ranked(val_probs)
    N, V = sp.shape
    index = {lab: v for v, lab in enumerate(labels)} if labels is not None else None
    hot = torch.zeros(N, V, dtype=torch.bool)  # hot[n, v]: v is one of image n's true tags
    n_true = 0
    for n, tags in enumerate(val_true):
        tags = set(tags)
        n_true += len(tags)
        got = [index[t] for t in tags if t in index] if index is not None else [int(t) for t in tags]
        got = [v for v in got if 0 <= v < V and v not in SPECIAL_IDS]  # never predicted: only in n_true
        hot[n, got] = True
    cum_hits = torch.cat([torch.zeros(N, 1, dtype=torch.long), hot.gather(1, ids).long().cumsum(1)], dim=1)
    candidates = [{"kind": "k", "value": k} for k in range(1, max_k + 1)]
    candidates += [{"kind": "threshold", "value": float(t), "min_tags": min_tags} for t in thresholds]
    best = None
    for rule in candidates:
        counts = _counts(sp, rule)
        hits, n_pred = int(cum_hits.gather(1, counts.unsqueeze(1)).sum()), int(counts.sum())
        p = hits / n_pred if n_pred else 0.0
        r = hits / n_true if n_true else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        if best is None or f1 > best["val_f1"]:
            best = {**rule, "val_f1": f1, "val_precision": p, "val_recall": r}
    return best


SPEC = DecoderSpec("set prediction", MultilabelTagger, config=MultilabelConfig, search="set", targets=("hashtag",),
                   loss_unit="image")  # the registry's entry "multilabel" (capkit.decoders)


# ----------------------------------------------------------------------------------------------------------------
# the neighbours' votes, blended in: a local estimate of the tag frequencies beside the model's own


BLEND_WEIGHTS = (0.25, 0.5, 0.75)  # w tried on validation besides 0 (w = 1 would drop the model)


def multi_hot(id_lists: Sequence[Sequence[int]], vocab_size: int) -> torch.Tensor:
    """y [N, V] (float): row n is 1 at the ids of id_lists[n] (ids outside 0..V-1 and the special ids ignored)."""
    y = torch.zeros(len(id_lists), vocab_size)
    for n, ids in enumerate(id_lists):
        keep = [int(v) for v in ids if 0 <= int(v) < vocab_size]
        y[n, keep] = 1.0
    y[:, list(SPECIAL_IDS)] = 0.0
    return y


def neighbour_votes(train_hot: torch.Tensor, near, k: int, chunk: int = 256) -> torch.Tensor:
    """The share of an image's k nearest training posts that carry each tag:

        v_v = 1/k sum_{j in N_k(image)} y_jv                               [n, V]

    train_hot [N, V] (`multi_hot` of the training posts), near [n, >= k] (indices into it, closest first, e.g.
    metrics.nearest_k). Memory O(chunk k V): images are taken ``chunk`` at a time."""
    near = torch.as_tensor(near, dtype=torch.long)
    if near.dim() != 2 or near.size(1) < k or k < 1:
        raise ValueError(f"need at least k = {k} neighbours per image, got an array of shape {tuple(near.shape)}")
    out = [train_hot[near[i:i + chunk, :k]].mean(dim=1) for i in range(0, len(near), chunk)]
    return torch.cat(out) if out else train_hot.new_zeros(0, train_hot.size(1))


def blend(probs: torch.Tensor, votes: torch.Tensor, weight: float) -> torch.Tensor:
    """p'_v = (1 - w) p_v + w v_v: the model's probabilities [n, V] mixed with the neighbours' votes [n, V]
    (a k-nearest-neighbour estimate beside a parametric one, as kNN-LM, Khandelwal et al. 2020, does for words).

    Why: on the embedded data the vote of the 80 nearest training posts alone (metrics.best_guess_tags of their
    tags: results' "consensus" baseline) scores as well as this model (test F1 0.352 vs 0.347 at 8 epochs), and
    the two err differently. Measured (efficientnet_lite2_multi, 1540 / 220 / 440 posts, k, w and the rule chosen
    on validation): 16 epochs, seed 0: 0.359 alone -> 0.364 blended (k 80, w 0.5); 8 epochs: 0.347 -> 0.352-0.358.
    The special ids stay 0 (neither term gives them mass)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must lie in [0, 1], not {weight}")
    return (1.0 - weight) * probs + weight * votes.to(probs)
