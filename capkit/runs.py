"""A run folder read back: a trained run ready to caption images (which folders hold runs: :mod:`capkit.folders`;
the pointing game of a run's attention: :mod:`capkit.pointing`).

``load_run(path)`` rebuilds the run's decoder from ``best.pt`` through the decoder registry
(:func:`capkit.checkpoints.load_trained`), with its vocabulary, detokenizer, settings and ``metrics.json``;
:class:`Run` captions paths or PIL images the way its test decoded (beam search, MBR or the set rule, through
:mod:`capkit.decoding` as the test did; the attention map of every word kept), encoding them with the run's encoder
or through the feature cache.

This module sits after ``train`` in the flow (it reads what a run wrote; the run's target says how to read it);
the figures of ``capkit.viz`` draw what it measures. It imports ``checkpoints``, ``decoding``, ``encoders``,
``features``, ``retrieval``, ``store`` and ``targets``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn

from capkit import checkpoints, decoding, encoders, retrieval, store, targets
from capkit.features import extract_features

if TYPE_CHECKING:  # annotations only
    from capkit.detok import Detokenizer
    from capkit.settings import TrainConfig
    from capkit.text import Vocab


@dataclass
class Run:
    """A trained run, ready to caption images: model, vocabulary, config, encoder name."""

    path: Path
    config: TrainConfig
    model: nn.Module  # any decoder of the registry (capkit.models.DECODERS)
    vocab: Vocab
    detok: Detokenizer | None
    metrics: dict

    def readable(self, tokens: list[str]) -> str:
        return self.target.readable(tokens, self.detok, self.config.tokenizer)

    @property
    def target(self) -> targets.Target:
        return targets.target(self.config.target)

    @property
    def name(self) -> str:
        return self.path.name

    def encoder(self) -> encoders.Encoder:
        """The run's image encoder (the weights it was trained on), built on first use and kept on the Run."""
        enc = self.__dict__.get("_encoder")
        if enc is None:
            device = next(self.model.parameters()).device
            enc = encoders.Encoder(self.config.encoder, self.config.encoder_weights).to(device).eval()
            self.__dict__["_encoder"] = enc
        return enc

    def tested_search(self) -> str:
        """How the run's test decoded: ``"set"`` (a set decoder), ``"mbr"`` or ``"beam"`` (``metrics.json``;
        before a test, the run's config)."""
        if self.config.decodes_sets:
            return "set"
        return self.metrics.get("search") or self.config.search

    def _search(self, search: str | None, beam_size: int | None) -> tuple[str, int]:
        """The search to use and its beam: as tested unless ``search`` or a ``beam_size`` says otherwise."""
        tested = self.tested_search()
        if search is None:
            search = "beam" if beam_size is not None and tested != "set" else tested
        return search, beam_size or self.metrics.get("beam_size") or self.config.beam_size

    def caption_many(self, images, beam_size: int | None = None, batch_size: int = 32, cache_dir=None,
                     search: str | None = None) -> list[dict]:
        """:meth:`caption` for many images (paths or PIL images), encoded and decoded in batches.

        With ``cache_dir`` (and paths) the features go through the on-disk feature cache
        (:func:`capkit.features.extract_features`, float16 as in training), so runs that share an encoder
        encode the images once.
        """
        device = next(self.model.parameters()).device
        images = list(images)
        search, beam_size = self._search(search, beam_size)
        need_pooled = self.needs_pooled(search)
        cached = None
        if cache_dir is not None and images and all(isinstance(im, (str, Path)) for im in images):
            # the network is built only when the cache (or an entry holding these images) lacks them
            cached = extract_features(self.config.encoder, images, cache_dir, self.config.encoder_weights,
                                              device=str(device), progress=False,
                                              encoder=self.__dict__.get("_encoder"))
        if cached is not None and need_pooled and cached.global_dim is None:
            cached = None  # the neighbours need the final pooled vectors, which this cache lacks: encode again
        enc = self.encoder() if cached is None else None
        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size]
            pooled = None
            with torch.inference_mode():
                if cached is not None:
                    feats = cached[[str(im) for im in chunk]].to(device)
                    pooled = cached.global_pooled([str(im) for im in chunk]) if need_pooled else None
                else:
                    size = encoders.ENCODERS[self.config.encoder].image_size
                    feats, pooled = enc(torch.stack([encoders.image_tensor(im, size) for im in chunk]).to(device),
                                        pooled=True)
                    feats = feats.float()
            out += self.caption_features(feats, beam_size, pooled=pooled, search=search)
        return out

    def _bank_file(self, name: str, why: str) -> dict:
        """A file the run's test wrote beside its checkpoints (``name``), loaded once and kept on the Run; a
        missing one is an error saying ``why`` the run needs it."""
        key = "_file_" + name
        if key not in self.__dict__:
            path = self.path / name
            if not path.exists():
                raise FileNotFoundError(f"{path}: missing; {why}, which evaluation.test writes there "
                                        "(evaluation.test(..., force=True) writes it again)")
            self.__dict__[key] = store.load_checkpoint(path)
        return self.__dict__[key]

    def neighbour_bank(self) -> dict | None:
        """The training posts' vectors and tags a set run blends in (``neighbours.pt``,
        :func:`capkit.retrieval.tag_bank`), loaded on first use; None when the run's rule does not blend."""
        if not (self.metrics.get("rule") or {}).get("weight"):
            return None
        return self._bank_file(retrieval.NEIGHBOURS_FILE, "the run's rule blends the votes of its nearest training "
                                                          "posts")

    def mbr_bank(self) -> dict:
        """A text run's MBR bank (``mbr.pt``, :func:`capkit.retrieval.mbr_bank`) with its CIDEr-D statistics
        (``cider``), loaded on first use (or decode with ``search="beam"``)."""
        bank = self._bank_file(retrieval.MBR_FILE, "the run was tested by MBR, which reads its training references")
        if "cider" not in bank:
            bank["cider"] = retrieval.training_cider(bank["references"])
        return bank

    def needs_pooled(self, search: str | None = None) -> bool:
        """Whether decoding by ``search`` (default: as tested) needs each image's final pooled vector beside its
        grid: a blending set run, or MBR with the nearest training texts as evidence."""
        search = search or self.tested_search()
        if search == "set":
            bank = self.neighbour_bank()
            return bank is not None and not bank["grid_mean"]
        if search == "mbr" and self.target.mbr_consensus and self.config.mbr_neighbours:
            return not self.mbr_bank()["grid_mean"]
        return False

    def _query_vectors(self, bank: dict, feats: torch.Tensor, pooled, why: str):
        """The vectors that find the images' nearest training images in ``bank``: grid means when the bank holds
        those, else the final pooled vectors given (an error saying ``why`` when there are none)."""
        if bank["grid_mean"]:
            return feats.float().mean(dim=1)
        if pooled is None:
            raise ValueError(f"{self.path}: {why} and needs each image's final pooled vector: pass "
                             "caption_features(..., pooled=...) (encoder()(x, pooled=True)) or use caption_many")
        return pooled

    def caption_features(self, feats: torch.Tensor, beam_size: int | None = None, pooled=None,
                         search: str | None = None) -> list[dict]:
        """Captions of images already encoded by this run's encoder (``feats`` ``[n, L, D]``, from :meth:`encoder`
        or the feature cache): one :meth:`caption` dict per row. Runs on one encoder can share the features of a
        batch. By default the run decodes as its test did (:meth:`tested_search`: MBR with the same number of
        samples, temperature, seed and evidence, or beam search of its width; a set run's rule); ``search="beam"`` or
        a ``beam_size`` says otherwise. MBR draws the batch's samples from one stream seeded with the run's seed per
        call, so an image's MBR caption can depend on the rows decoded with it (the test drew one stream through all
        its batches); beam search and the set rule give each image the same output in any batch. ``pooled``
        ``[n, P]``: the images' final pooled vectors (``encoder()(x, pooled=True)``), which a blending set run and
        MBR with neighbours need (:meth:`needs_pooled`). An MBR caption's maps come from teacher forcing the chosen
        words."""
        device = next(self.model.parameters()).device
        feats = feats.to(device)
        search, beam_size = self._search(search, beam_size)
        if search == "set":
            return self._caption_sets(feats, pooled)
        if search != "mbr":
            hyps = decoding.decode_features(self.model, feats, self.config, "beam", beam_size=beam_size)
            return [self._caption_dict(h, beam_size) for h in hyps]
        cider = evidence = None
        if self.target.mbr_consensus:
            bank = self.mbr_bank()
            cider = bank["cider"]
            if self.config.mbr_neighbours:
                pooled = self._query_vectors(bank, feats, pooled, "MBR reads the nearest training texts as evidence")
                evidence = retrieval.bank_evidence(bank, pooled, self.config.mbr_neighbours)
        gen = torch.Generator(device=device).manual_seed(self.config.seed)
        hyps = decoding.decode_features(self.model, feats, self.config, "mbr", cider=cider, evidence=evidence,
                                         generator=gen)
        maps = decoding.attention_of(self.model, feats, [h["tokens"] for h in hyps])
        return [self._caption_dict({**h, "alphas": a}, None) for h, a in zip(hyps, maps)]

    def caption(self, image, beam_size: int | None = None, search: str | None = None) -> dict:
        """Caption one image (a path or a PIL image), decoded as the run's test decoded unless told otherwise.

        Returns ``tokens`` (vocabulary tokens, e.g. ``강아지/Noun``), ``words`` (what a reader sees per token:
        the surface form, or ``#tag``), ``alphas`` (float32 numpy ``[len(tokens), grid*grid]``, the attention
        map behind each token), ``grid``, ``text`` (readable text or ``#a #b``), ``hashtags`` (hashtag runs only),
        ``score``, ``finished``, ``search`` and ``beam_size``. Raises :class:`capkit.data.BadImage` for an
        unusable file.
        """
        return self.caption_many([image], beam_size=beam_size, batch_size=1, search=search)[0]

    def _caption_dict(self, h: dict, beam_size: int | None) -> dict:
        ids = h["tokens"]
        keep = decoding.word_positions(ids)
        tokens = [self.vocab.itos[ids[j]] for j in keep]
        alphas = h["alphas"][keep].float().cpu().numpy() if keep else np.zeros((0, h["alphas"].shape[-1]), np.float32)
        hashtag = self.target is targets.HASHTAG
        out = {"tokens": tokens, "words": self.target.words(tokens),
               "alphas": alphas, "grid": encoders.ENCODERS[self.config.encoder].grid, "text": self.readable(tokens),
               "score": float(h["score"]), "finished": bool(h["finished"]), "beam_size": beam_size,
               "search": "beam" if beam_size else "mbr"}
        if hashtag:
            out["hashtags"] = list(tokens)
        return out

    def _caption_sets(self, feats: torch.Tensor, pooled=None) -> list[dict]:
        """A set decoder's tags for feats [n, L, D] under the output rule its test chose on validation
        (``metrics.json``'s ``rule``, with the neighbours' votes blended in when it says so: pooled [n, P]),
        likeliest first; ``alphas`` are the model's per-tag maps (uniform for mean pooling)."""
        rule = self.metrics.get("rule")
        if rule is None:
            raise RuntimeError(f"{self.path}: no output rule in metrics.json (the run has not been tested yet: "
                               "evaluation.test chooses the rule on validation)")
        probs, attention = self.model.scores(feats), self.model.attention(feats)
        bank = self.neighbour_bank()
        if bank is not None:
            pooled = self._query_vectors(bank, feats, pooled, "this run blends the tag votes of the nearest training "
                                                               "posts")
            probs = retrieval.blend_votes(probs.cpu(), rule, bank, torch.as_tensor(pooled).float().cpu()).to(probs)
        out = []
        for att, (ids, score) in zip(attention, decoding.choose_tags(probs, rule)):
            tokens = [self.vocab.itos[i] for i in ids]
            out.append({"tokens": tokens, "words": self.target.words(tokens),
                        "alphas": att[ids].float().cpu().numpy(), "grid": encoders.ENCODERS[self.config.encoder].grid,
                        "text": self.readable(tokens), "hashtags": tokens, "finished": True, "beam_size": None, "search": "set",
                        "score": score})
        return out

    def predictions(self) -> list[dict]:
        """The test predictions the run wrote (``predictions.jsonl``), one dict per test image."""
        path = self.path / "predictions.jsonl"
        return store.read_jsonl(path) if path.exists() else []

    def update_metrics(self, **items) -> dict:
        """Set top-level keys of ``metrics.json`` (read, merge, write to a temporary file, rename); returns it."""
        self.metrics = store.update_json(self.path / "metrics.json", items)
        return self.metrics


def load_run(path, device: str = "cpu", which: str = "best") -> Run:
    """Load ``<run>/best.pt`` (or ``last.pt``) back into a model for decoding."""
    path = store.project_path(path)
    config, model, vocab, detok = checkpoints.load_trained(path, device, which)
    m = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").exists() else {}
    return Run(path, config, model, vocab, detok, m)
