"""Decoding: one dispatch from a run's settings to the decoding algorithms, for images already encoded.

- :func:`decode_features`: a sequence decoder's captions of feats ``[B, L, D]`` by beam search (greedy at width 1)
  or minimum Bayes risk (:mod:`capkit.mbr`: the CIDEr-D consensus of samples for texts, the expected-F1 set for
  hashtags), as the run's target says (:mod:`capkit.targets`: decode length, repeats, MBR's kind).
- :func:`attention_of`: the attention maps behind given captions, by teacher forcing (an MBR pick has none of its
  own).
- :func:`word_positions`: where a decoded caption's words are (no <pad>, no <start>).
- :func:`choose_tags`: a set decoder's tags under its output rule (top-k or a threshold), likeliest first.

Testing a split (:mod:`capkit.inference`) and a loaded run (:mod:`capkit.runs`: the captioning command, the
viewer) decode through these, so a run captions new images with its test's algorithm and settings.

This module imports ``decode``, ``mbr``, ``metrics``, ``multilabel``, ``targets`` and ``text``.
"""

from __future__ import annotations

import torch

from capkit import decode, mbr, metrics, multilabel, text
from capkit.targets import target


def decode_features(model, feats: torch.Tensor, config, search: str = "beam", beam_size: int = 1,
                    cider: metrics.CiderD | None = None, evidence=None, generator=None) -> list[dict]:
    """A sequence decoder's output for images already encoded, feats [B, L, D]: one dict per image with
    ``tokens`` (vocabulary ids), ``score``, ``finished`` and ``alphas`` ([len(tokens), L], or None for MBR).

    ``search="beam"``: beam search of ``beam_size`` (greedy at 1). ``search="mbr"``: minimum Bayes risk over
    ``config.mbr_n`` samples at ``config.mbr_tau`` (texts: the CIDEr-D consensus under ``cider``'s statistics,
    ``evidence`` per image counting in the risk; hashtags: the expected-F1 set), drawn from ``generator``. The one
    place testing (:func:`capkit.inference.predict`) and a loaded run (``capkit.runs``) decode through."""
    what = target(config.target)
    with torch.inference_mode():
        if search == "mbr":
            if what.mbr_consensus:
                if cider is None:
                    raise ValueError("MBR decoding of texts needs CIDEr-D statistics of the training references")
                extra = None
                if config.mbr_beam:  # the beam's caption joins the samples (drawn after it: the same samples)
                    beams = decode_features(model, feats, config, "beam", beam_size=config.mbr_beam)
                    extra = [[(h["tokens"], h["finished"])] for h in beams]
                picked = mbr.mbr_decode(model, feats, cider, text.START_ID, text.END_ID, config.mbr_n,
                                        config.mbr_tau, config.decode_len, text.UNK_ID, generator, evidence, extra)
            else:
                picked = mbr.mbr_tags(model, feats, text.START_ID, text.END_ID, config.mbr_n, config.mbr_tau,
                                      config.decode_len, text.UNK_ID, generator)
            return [{**p, "alphas": None} for p in picked]
        if search != "beam":
            raise ValueError(f"search must be 'beam' or 'mbr', not {search!r}")
        if beam_size > 1:
            hyps = decode.beam_search(model, feats, text.START_ID, text.END_ID, beam_size=beam_size,
                                      max_len=config.decode_len, forbid_repeats=what.forbid_repeats,
                                      unk_id=text.UNK_ID)
        else:
            hyps = decode.greedy(model, feats, text.START_ID, text.END_ID, max_len=config.decode_len,
                                 forbid_repeats=what.forbid_repeats, unk_id=text.UNK_ID)
    return [{"tokens": h.tokens, "score": float(h.score), "finished": bool(h.finished),
             "alphas": h.alphas.float().cpu()} for h in hyps]


def attention_of(model, feats: torch.Tensor, token_ids: list[list[int]]) -> list[torch.Tensor]:
    """The attention maps behind given captions (ids without <start>/<end>), by teacher forcing in eval mode:
    [len(tokens), L] per caption (an MBR pick has no maps of its own)."""
    lengths = torch.tensor([len(t) + 1 for t in token_ids])  # <start> + the words: one map per word
    caps = torch.zeros(len(token_ids), int(lengths.max()), dtype=torch.long)
    for i, t in enumerate(token_ids):
        caps[i, 0] = text.START_ID
        caps[i, 1:len(t) + 1] = torch.tensor(t, dtype=torch.long)
    T = caps.size(1)
    with torch.inference_mode():
        _, alphas, rows = model.forward_packed(feats, caps.to(feats.device), lengths.to(feats.device))
    out = [feats.new_zeros(len(t), feats.size(1)).float().cpu() for t in token_ids]
    for r, row in enumerate(rows.tolist()):
        b, t = divmod(row, T - 1)
        out[b][t] = alphas[r].float().cpu()
    return out


def word_positions(ids: list[int]) -> list[int]:
    """The positions of a decoded caption's words in its ids (and in its attention maps): <pad> and <start> left
    out."""
    return [j for j, t in enumerate(ids) if t not in (text.PAD_ID, text.START_ID)]


def choose_tags(probs: torch.Tensor, rule: dict) -> list[tuple[list[int], float]]:
    """A set decoder's tags for probs [n, V] under ``rule`` (:func:`capkit.multilabel.apply_rule`), likeliest
    first, each set with its score: the sum of its tags' log-probabilities (0 for an empty set)."""
    return [(ids, float(torch.log(row[ids].clamp_min(1e-12)).sum()) if ids else 0.0)
            for row, ids in zip(probs, multilabel.apply_rule(probs, rule))]
