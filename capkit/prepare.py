"""Data preparation for a run: records per split, their reference tokens, the vocabulary, the cached features;
the batches training reads.

``prepare(config)`` is the first step of every run (``03_train``, ``python -m capkit.train``, the baselines).

This module imports ``data``, ``dist``, ``features``, ``settings``, ``targets`` and ``text`` (the run's target fits
the detokenizer its readable output needs).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from capkit import data as D
from capkit import dist, targets, text
from capkit.dist import resolve_device, set_seed
from capkit.features import FeatureStore, extract_features
from capkit.settings import TrainConfig

if TYPE_CHECKING:  # annotations only
    from capkit.detok import Detokenizer


@dataclass
class Prepared:
    """Everything a run reads: records per split, token lists, vocabulary, features."""

    config: TrainConfig
    records: dict  # split -> list[Record]
    tokens: dict  # split -> list of reference token lists per record (text: all texts; hashtags: one list)
    vocab: text.Vocab
    detok: Detokenizer | None
    store: FeatureStore
    report: D.LoadReport
    info: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # what later steps build once from it (retrieval.bank)

    @property
    def target(self) -> targets.Target:
        """The run's target (text or hashtags: :mod:`capkit.targets`)."""
        return targets.target(self.config.target)

    def features(self, images) -> torch.Tensor:
        return self.store[images]

    def pairs(self, split: str) -> list[tuple[str, list[int]]]:
        """(image, token ids with <start>/<end>) for training: one pair per reference text."""
        n = self.config.decode_len
        return [(r.image, self.vocab.encode(toks, max_len=n))
                for r, refs in zip(self.records[split], self.tokens[split]) for toks in refs if toks]


def reference_tokens(records, config: TrainConfig, progress: bool = False) -> tuple[list, object]:
    """Per record, the list of its reference token lists (texts tokenized, or its hashtags), and the
    tokenizer's statistics (None for hashtags): the run's target's :meth:`~capkit.targets.Target.references`."""
    return targets.target(config.target).references(records, config, progress)


def prepare(config: TrainConfig, progress: bool = True) -> Prepared:
    """Load the data, tokenize, build the vocabulary (train split only), extract/cached features.

    Under torchrun every rank prepares: rank 0 tokenizes first, filling the token cache, while the others wait,
    then they read it; the ranks extract the features together, each encoding its share of the images
    (``capkit.features.extract_features(sharded=True)``) when all ranks are on one machine, otherwise rank 0 first."""
    set_seed(config.seed)
    records, report = D.load(config.dataset, config.data_dir, seed=config.seed)
    records = targets.keep(records, config.target, report)
    if config.smoke:
        n = config.smoke_records
        records = D.subsample(records, {"train": 2 * n, "val": n, "test": n}, seed=config.seed)
    by_split = {s: [r for r in records if r.split == s] for s in D.SPLITS}
    for s in ("train", "val"):
        if not by_split[s]:
            raise ValueError(f"{config.dataset}:{config.data_dir} has no {s} records for target {config.target!r}")
    # "auto" becomes the tokenizer it stands for (config.json records that one), chosen from the training texts
    config.tokenizer = text.resolve_tokenizer(config.tokenizer, config.dataset,
                                              [t for r in by_split["train"][:2000] for t in r.texts])
    tokens, stats = {}, {}
    with dist.main_first():
        for s in D.SPLITS:
            tokens[s], st = reference_tokens(by_split[s], config, progress)
            stats[s] = st.as_dict() if st else None
    train_lists = [t for refs in tokens["train"] for t in refs]
    vocab = text.Vocab.build(train_lists, min_freq=config.min_freq, max_size=config.max_vocab)
    detok = targets.target(config.target).detokenizer(config, by_split["train"], train_lists)
    images = [r.image for s in D.SPLITS for r in by_split[s]]
    sharded = dist.one_machine()  # every rank writes its rows into the cache's files: they must see the same files
    with dist.main_first() if not sharded else contextlib.nullcontext():
        store = extract_features(config.encoder, images, config.cache_dir, weights=config.encoder_weights,
                                          device=str(resolve_device(config.device)), progress=progress,
                                          sharded=sharded)
    store.to_memory()  # epochs read RAM, not the memory map, when the features fit
    info = {"records": {s: len(v) for s, v in by_split.items()}, "vocab_size": len(vocab),
            "oov_rate": {s: text.oov_rate(vocab, [t for refs in tokens[s] for t in refs]) for s in ("val", "test")},
            "tokenize": stats, "features": {"file": store.path.name, "failed": len(store.failed)}}
    return Prepared(config, by_split, tokens, vocab, detok, store, report, info)


def batches(pairs, batch_size: int, generator: torch.Generator | None = None):
    """Shuffled (when a generator is given) batches of (images, captions [B, T], lengths [B]), each batch sorted
    by caption length, longest first."""
    order = torch.randperm(len(pairs), generator=generator).tolist() if generator else range(len(pairs))
    order = list(order)
    for i in range(0, len(order), batch_size):
        # longest first, as the decoder steps them (it would otherwise copy the batch's features into that order)
        chunk = sorted((pairs[j] for j in order[i:i + batch_size]), key=lambda p: -len(p[1]))
        lengths = torch.tensor([len(ids) for _, ids in chunk])
        caps = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
        for k, (_, ids) in enumerate(chunk):
            caps[k, : len(ids)] = torch.tensor(ids)
        yield [img for img, _ in chunk], caps, lengths
