"""Retrieval on a run's features: the nearest training images of each image, by the encoder's final pooled vector
(cosine), and what is read from them: the tag bank and the neighbours' tag votes (set decoders), MBR's evidence (the
neighbours' references), the self-critical reward's references, the training references as vocabulary ids.

This module imports ``metrics``, ``multilabel``, ``prepare`` and ``store``.
"""

from __future__ import annotations

import numpy as np
import torch

from capkit import metrics, multilabel, store
from capkit.prepare import Prepared

NEIGHBOURS_FILE = "neighbours.pt"  # a set run's tag bank (tag_bank), written when its rule blends the votes in
MBR_FILE = "mbr.pt"  # a text run's MBR bank (mbr_bank), written by its test when it decodes by MBR
VOTE_SIZES = (5, 10, 20, 40, 80, 160)  # k: nearest training posts whose tags vote, tried on validation


def bank(prep: Prepared) -> dict:
    """:func:`tag_bank` of ``prep``, built on first use and kept in ``prep.cache`` (the set rule, the set
    predictions and the test read it every epoch)."""
    if "bank" not in prep.cache:
        prep.cache["bank"] = tag_bank(prep)
    return prep.cache["bank"]


def retrieval_vectors(prep: Prepared) -> tuple:
    """``(vectors, description)``: ``vectors(images) -> [n, P]`` for nearest-neighbour retrieval, the encoder's
    final pooled vector (what its classifier reads); the mid-level grid's mean only for a cache written without
    one."""
    if prep.store.global_dim is None:
        return prep.store.pooled, f"grid mean ({prep.store.meta['shape'][2]}-d)"
    return prep.store.global_pooled, f"final pooled ({prep.store.global_dim}-d)"


def nearest_posts(prep: Prepared, split: str, k: int, limit: int | None = None) -> np.ndarray:
    """The k training records closest to each record of ``split`` (cosine on :func:`retrieval_vectors`; closest
    first, ties to the lower index): int64 [n, min(k, n_train)], indices into ``prep.records["train"]``."""
    vectors, _ = retrieval_vectors(prep)
    return metrics.nearest_k(vectors([r.image for r in prep.records["train"]]),
                             vectors([r.image for r in prep.records[split][:limit]]), k, metric="cosine")


def tag_bank(prep: Prepared) -> dict:
    """What the neighbours' tag votes read, in training and after it (``neighbours.pt`` of a set run: capkit.runs):
    ``vectors`` float16 [N, P] (the training posts' :func:`retrieval_vectors`), ``tags`` (each post's tag ids),
    ``grid_mean`` (True when the vectors are grid means: a cache without final pooled vectors) and ``features``."""
    vectors, used = retrieval_vectors(prep)
    tags = [[prep.vocab.stoi[t] for t in refs[0] if t in prep.vocab.stoi] if refs else []
            for refs in prep.tokens["train"]]
    return {"format": store.CKPT_FORMAT, "vectors": torch.as_tensor(vectors([r.image for r in prep.records["train"]])
                                                                    ).half(),
            "tags": tags, "grid_mean": prep.store.global_dim is None, "features": used}


def bank_votes(bank: dict, query_vectors, sizes, vocab_size: int) -> dict:
    """{k: [n, V] the share of the k nearest posts of ``bank`` (:func:`tag_bank`) that carry each tag
    (:func:`capkit.multilabel.neighbour_votes`)} for each k of ``sizes`` (capped at the bank's size), for images
    with query_vectors [n, P] of the bank's kind (cosine)."""
    near = metrics.nearest_k(bank["vectors"].float(), torch.as_tensor(query_vectors).float(), max(sizes))
    hot = multilabel.multi_hot(bank["tags"], vocab_size)
    return {k: multilabel.neighbour_votes(hot, near, min(k, near.shape[1])) for k in sizes}


def blend_votes(probs: torch.Tensor, rule: dict, bank: dict, query_vectors) -> torch.Tensor:
    """A set decoder's probabilities [n, V] with the neighbours' votes blended in as ``rule`` says (its
    ``neighbours`` k and ``weight`` w from :func:`set_rule`; unchanged when w is 0 or absent)."""
    if not rule.get("weight") or not len(probs):
        return probs
    k = rule["neighbours"]
    return multilabel.blend(probs, bank_votes(bank, query_vectors, [k], probs.size(1))[k], rule["weight"])


def mbr_evidence(prep: Prepared, split: str, m: int, limit: int | None = None,
                 refs: list | None = None) -> list[list[list[int]]]:
    """Per record of ``split``: the first ``m`` references (vocabulary ids, :func:`reference_ids`, or ``refs``
    when already computed) of its nearest training images, closest image first (:func:`nearest_posts`): MBR's
    retrieved evidence (capkit.mbr)."""
    refs = reference_ids(prep) if refs is None else refs
    return first_references(nearest_posts(prep, split, m, limit), refs, m)  # (m images hold m references at most)


def first_references(near, refs: list, m: int) -> list[list[list[int]]]:
    """Per row of ``near`` (training indices, closest first): the first ``m`` references of those images."""
    return [[r for j in row for r in refs[int(j)]][:m] for row in near]


def reference_ids(prep: Prepared) -> list[list[list[int]]]:
    """Per training record, its references as vocabulary ids without <start>/<end> (empty for a record without
    any; a word outside the vocabulary is <unk>, which the decoder never emits)."""
    n = prep.config.decode_len
    return [[prep.vocab.encode(t, max_len=n)[1:-1] for t in toks if t] for toks in prep.tokens["train"]]


def training_cider(refs: list) -> metrics.CiderD:
    """CIDEr-D statistics (document frequencies) of the training references as vocabulary ids
    (:func:`reference_ids`, or an :func:`mbr_bank`'s ``references``); records without references left out."""
    return metrics.CiderD([r for r in refs if r])


def scst_data(prep: Prepared, refs: list | None = None) -> tuple[list[str], list[list[list[int]]]]:
    """The training images that have references, and each one's references as vocabulary ids (the reward
    compares ids). ``refs``: :func:`reference_ids`, when already computed."""
    refs = reference_ids(prep) if refs is None else refs
    keep = [(r.image, ids) for r, ids in zip(prep.records["train"], refs) if ids]
    return [image for image, _ in keep], [ids for _, ids in keep]


def scst_references(prep: Prepared, images: list[str], ref_ids: list, k: int) -> list[list[list[int]]]:
    """What each self-critical reward compares a sample with: the image's own references (``ref_ids``, from
    :func:`scst_data`), then, with ``k`` > 0, the first reference of each of the k training images of ``images``
    nearest to it (cosine on :func:`retrieval_vectors`, closest first, the image itself left out).

    On data with one noisy text per image (Instagram posts, the embedded set) the reward of one reference mostly
    says how well a sample guessed that writer's draw; the neighbours' texts say what images like it are
    described with, as the consensus baseline and MBR's evidence read them. Measured on the embedded data
    (Lite2 + soft, one epoch at scst_lr 5e-5, two threads, k = 0 / 5 / 10 / 20 / 40): validation greedy CIDEr-D
    0.327 / 0.356 / 0.405 / 0.400 / 0.367 from the cross-entropy weights' 0.371 (make run's copy, k = 10, one
    thread: 0.371 -> 0.394); MBR decoding did not gain (README)."""
    if k <= 0 or len(images) < 2:
        return [list(r) for r in ref_ids]
    vectors, _ = retrieval_vectors(prep)
    x = vectors(images)
    near = metrics.nearest_k(x, x, min(k + 1, len(images)), metric="cosine")
    out = []
    for i, own in enumerate(ref_ids):
        others = [int(j) for j in near[i] if j != i][:k]  # the image itself (usually first) left out
        out.append(list(own) + [ref_ids[j][0] for j in others])
    return out


def scst_reward(prep: Prepared, k: int = 0) -> tuple:
    """What the self-critical reward reads: the training images, each one's references as CIDEr-D vectors (with
    ``k`` > 0 the first references of its k nearest training images too: :func:`scst_references`), and the
    :class:`capkit.metrics.CiderD` statistics (document frequencies of the training references alone)."""
    images, ref_ids = scst_data(prep)
    cider = training_cider(ref_ids)
    return images, [cider.refs(r) for r in scst_references(prep, images, ref_ids, k)], cider


def mbr_bank(prep: Prepared) -> dict:
    """What MBR decoding of new images reads (``mbr.pt`` of a text run tested by MBR; capkit.runs): each
    training record's references as vocabulary ids (``references``: CIDEr-D's document frequencies come from
    those, and the evidence of the nearest images) and its retrieval vector (``vectors`` float32 [N, P], as the test
    compared them, so that a loaded run finds the same neighbours; ``grid_mean`` when they are grid means,
    :func:`retrieval_vectors`)."""
    vectors, used = retrieval_vectors(prep)
    return {"format": store.CKPT_FORMAT, "references": reference_ids(prep),
            "vectors": torch.as_tensor(vectors([r.image for r in prep.records["train"]])).float(),
            "grid_mean": prep.store.global_dim is None, "features": used}


def bank_evidence(bank: dict, query_vectors, m: int) -> list[list[list[int]]]:
    """:func:`mbr_evidence` for new images from an :func:`mbr_bank`: the first ``m`` references of the nearest
    training images to each of query_vectors [n, P] (cosine, closest first)."""
    near = metrics.nearest_k(bank["vectors"].float(), torch.as_tensor(query_vectors).float(), m)
    return first_references(near, bank["references"], m)
