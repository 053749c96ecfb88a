"""Minimum Bayes-risk decoding: of N captions drawn from the model, the one the others agree with most; of N
hashtag sets, the set with the highest expected F1.

    S = {y_1 .. y_N},  y_n ~ p(y | image)^(1/tau)                   N samples at temperature tau
    y* = argmax_{y in S}  1/(N-1) sum_{y' in S, y' != y}  CIDEr-D(y, {y'})

Beam search looks for the single likeliest caption; on data whose texts are a broad distribution (many ways to
say the same scene) the likeliest caption is short and generic, and scores low against references drawn from
that distribution. MBR decoding instead picks the caption with the lowest expected loss under the model's own
distribution, the model's estimate of the risk being the mean CIDEr-D against its other samples (the utility
the tables report; document frequencies from the training references, :class:`capkit.metrics.CiderD`). It is
what the embedded dataset's ceiling row does with the true distribution (``results``' scene oracle: the
consensus of 30 texts drawn from the true scene), so model and ceiling are read on the same terms.
Temperature below 1 draws closer to the mode: with tau = 1 the samples of an imperfect model are too noisy to
agree on anything.

Retrieved evidence (``evidence``): the model's estimate of the risk can also read the references of the image's
nearest training images (capkit.retrieval picks them: ``mbr_neighbours``), as extra pseudo-references that are never
chosen, so the caption is still one the model wrote:

    y* = argmax_{y in S}  1/(N-1+M) [ sum_{y' in S, y' != y} CIDEr-D(y, {y'}) + sum_{r in R} CIDEr-D(y, {r}) ]

with R the M retrieved references. It is how Devlin et al. (2015) re-rank a model's captions by their neighbours'
consensus, with the model's own samples voting too. Measured on the embedded data (efficientnet_lite2_multi +
soft, 8 epochs, seed 1; samples at tau 0.5, M the first references of the nearest images): validation CIDEr-D
0.388 / 0.393 / 0.399 / 0.412 and test 0.339 / 0.355 / 0.363 / 0.381 for M = 0 / 10 / 20 / 40 (the neighbours'
consensus alone, results' baseline: 0.331).

Beam search's caption as a candidate (``extra``, ``TrainConfig.mbr_beam``): S gains the caption b of a beam search,
chosen like any sample when the samples and the evidence agree with it most (and voting for the others):

    S' = S + {b},   y* = argmax_{y in S'}  mean over S' - {y} and R of CIDEr-D(y, {.})

Hashtags (``mbr_tags``): the study's metric is F1 over sets, so the decision is a set, not a sequence: draw N tag
sequences at temperature 1 (the model's own distribution), rank tags by the share of draws that contain them
and keep the top-m with the highest mean F1 against the draws (``metrics.best_guess_tags``, the rule the scene
oracle's ceiling row applies to the true distribution).

This module imports capkit.decode and capkit.metrics.
"""

from __future__ import annotations

import torch

from capkit import decode
from capkit.metrics import CiderD, best_guess_tags


def mbr_decode(model, feats: torch.Tensor, cider: CiderD, start_id: int, end_id: int, samples: int = 20,
               temperature: float = 0.5, max_len: int = 30, unk_id: int | None = None,
               generator: torch.Generator | None = None, evidence=None, extra=None) -> list[dict]:
    """For each image of feats [B, L, D]: ``tokens`` (ids, without <start>/<end>), ``score`` (the chosen
    caption's mean CIDEr-D against the other candidates and the image's evidence) and ``finished`` (it emitted
    <end>). ``evidence``: per image, id lists that count in the risk but are never chosen; ``extra``: per image,
    (id list, finished) pairs that join the samples as candidates (see the module notes)."""
    caps, finished = decode.sample(model, feats, start_id, end_id, max_len=max_len, unk_id=unk_id,
                                   generator=generator, temperature=temperature,
                                   repeats=samples)  # image b's samples are rows bN .. bN + N - 1
    out = []
    for b in range(feats.size(0)):
        group = caps[b * samples:(b + 1) * samples]
        ended = finished[b * samples:(b + 1) * samples]
        if extra is not None:
            group, ended = group + [c for c, _ in extra[b]], ended + [f for _, f in extra[b]]
        j, score = cider.consensus(group, evidence=evidence[b] if evidence is not None else ())
        out.append({"tokens": group[j], "score": score, "finished": ended[j]})
    return out


def mbr_tags(model, feats: torch.Tensor, start_id: int, end_id: int, samples: int = 30, temperature: float = 1.0,
             max_len: int = 25, unk_id: int | None = None, generator: torch.Generator | None = None) -> list[dict]:
    """For each image of feats [B, L, D]: ``tokens`` (tag ids, most often drawn first), ``score`` (their mean F1
    against the draws: the model's own estimate of the expected F1) and ``finished`` (True)."""
    caps, _ = decode.sample(model, feats, start_id, end_id, max_len=max_len, unk_id=unk_id, generator=generator,
                            temperature=temperature, repeats=samples)
    out = []
    for b in range(feats.size(0)):
        tags, f1 = best_guess_tags(caps[b * samples:(b + 1) * samples], max_len)
        out.append({"tokens": tags, "score": f1, "finished": True})
    return out
