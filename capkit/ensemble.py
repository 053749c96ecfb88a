"""Ensembles of trained text runs: several decoders, on the same image features or on several encoders' features
of the same photos, decoded as one.

The members' next-word distributions are averaged at every step (a mixture, the usual ensemble of captioning
models), so greedy, beam search, sampling and MBR decode the ensemble through capkit.decode and capkit.mbr
unchanged:

    p(y_t | y_<t, a) = 1/K sum_k p_k(y_t | y_<t, a^(k))      K members, each with its own state
    alpha_t          = 1/K sum_k alpha_t^(k)                   the word's attention map (one grid for all)

with a^(k) the regions of member k's encoder. Members on different encoders (e.g. the study's 2x2 grid: two
encoders x soft / Look-Back) read one feature tensor, the encoders' features concatenated region by region
[B, L, D_1 + D_2 ...] (:class:`JoinedFeatures`), each member its own slice; their encoders must share the grid
(L regions) so that the attention maps average.

`Ensemble` is a sequence decoder for search only (``init_state`` / ``step`` / ``reorder_state``, the part of
:class:`capkit.models.SequenceDecoder` that decoding calls); it is not trained. :func:`test_ensemble` tests an
ensemble of run folders the way a run is tested (``capkit.evaluation.test``: the first member's search settings
and retrieval features, ``predictions.jsonl`` and ``metrics.json`` in a folder of its own, named
``<encoder>-<decoder>+<decoder>-text``, ``<encoder>+<encoder>-...`` across encoders), so the tables list it as one
more row; the members must share the data, the tokenizer and the vocabulary (their ids are the rows of each
member's output layer).

    python -m capkit.ensemble RUN_FOLDER RUN_FOLDER [...] [--name NAME]

This module imports ``encoders``, ``evaluation``, ``features``, ``prepare``, ``runs`` and ``store``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from capkit import encoders, evaluation, runs, store
from capkit.features import extract_features
from capkit.prepare import prepare, resolve_device

if TYPE_CHECKING:  # annotations only
    from capkit.settings import TrainConfig

# settings the members must share (the data, the tokens: one vocabulary, one test)
SHARED = ("dataset", "data_dir", "target", "tokenizer", "min_freq", "max_vocab", "max_len", "seed", "smoke")


class Ensemble(nn.Module):
    """K decoders decoded as one: the mean of their next-word probabilities (see the module notes)."""

    STATIC_STATE = ()

    def __init__(self, members: list[nn.Module], slices: list[tuple[int, int]] | None = None):
        """``slices``: member k reads ``feats[..., start_k:end_k]`` (members on several encoders, their features
        joined: :class:`JoinedFeatures`); None: every member reads all of ``feats``."""
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs two members or more, not {len(members)}")
        sizes = {m.config.vocab_size for m in members}
        if len(sizes) != 1:
            raise ValueError(f"the members' vocabularies differ in size: {sorted(sizes)}")
        if slices is not None and len(slices) != len(members):
            raise ValueError(f"{len(slices)} feature slices for {len(members)} members")
        self.members = nn.ModuleList(members)
        self.slices = slices
        self.config = members[0].config  # (search reads config.vocab_size)

    def init_state(self, feats: torch.Tensor) -> dict:
        """feats [B, L, D] (the joined features when members read slices) -> each member's initial state."""
        parts = [feats] * len(self.members) if self.slices is None else [feats[..., a:b] for a, b in self.slices]
        return {"members": [m.init_state(f) for m, f in zip(self.members, parts)]}

    def step(self, tokens: torch.Tensor, state: dict) -> tuple:
        """tokens [B] -> (log of the mean probability [B, V], mean attention [B, L], new state)."""
        logprobs, alphas, new = [], [], []
        for m, s in zip(self.members, state["members"]):
            lp, alpha, s = m.step(tokens, s)
            logprobs.append(lp.float())  # [B, V]
            alphas.append(alpha.float())  # [B, L]
            new.append(s)
        mixed = torch.logsumexp(torch.stack(logprobs), dim=0) - math.log(len(logprobs))  # [B, V]
        alpha = torch.stack(alphas).mean(0)
        return mixed.to(logprobs[0].dtype), alpha, {"members": new}

    def reorder_state(self, state: dict, index: torch.Tensor, static: bool = True) -> dict:
        return {"members": [m.reorder_state(s, index, static=static)
                            for m, s in zip(self.members, state["members"])]}


class JoinedFeatures:
    """Several encoders' feature stores of the same images read as one: ``joined[images]`` -> [n, L, D_1 + D_2 ...]
    (each store's regions concatenated along the channels, in the stores' order). Everything else (the retrieval
    vectors, the failed images) is the first store's."""

    def __init__(self, stores: list):
        shapes = {tuple(s.meta["shape"][1:2]) for s in stores}
        if len(shapes) != 1:
            raise ValueError(f"feature stores with different region grids cannot be joined: {sorted(shapes)}")
        self.stores = stores

    def __getitem__(self, images) -> torch.Tensor:
        return torch.cat([s[images] for s in self.stores], dim=-1)

    def __getattr__(self, name):  # (only called for what this class does not define)
        return getattr(self.__dict__["stores"][0], name)


def encoder_names(configs: list[TrainConfig]) -> list[str]:
    """The members' encoders, each once, in the members' order."""
    return list(dict.fromkeys(c.encoder for c in configs))


def ensemble_name(configs: list[TrainConfig]) -> str:
    """``efficientnet_lite2_multi7-soft+lookback-text``: the encoder(s), the members' decoders, the target."""
    return f"{'+'.join(encoder_names(configs))}-{'+'.join(c.decoder for c in configs)}-{configs[0].target}"


def feature_slices(configs: list[TrainConfig]) -> list[tuple[int, int]] | None:
    """Each member's channels in the joined features of :func:`encoder_names` (None: one encoder for all)."""
    names = encoder_names(configs)
    if len(names) == 1:
        return None
    starts, at = {}, 0
    for name in names:
        starts[name] = (at, at + encoders.ENCODERS[name].dim)
        at += encoders.ENCODERS[name].dim
    return [starts[c.encoder] for c in configs]


def check_members(members: list[runs.Run]) -> None:
    """Raise ValueError naming the folder and the setting where a member does not fit the first."""
    first = members[0]
    if first.config.target != "text":
        raise ValueError(f"{first.path}: an ensemble is of text runs (target {first.config.target!r})")
    for run in members[1:]:
        for key in SHARED:
            a, b = getattr(first.config, key), getattr(run.config, key)
            if a != b:
                raise ValueError(f"{run.path}: {key} is {b!r}, but {a!r} in {first.path}: an ensemble's members "
                                 f"decode the same features into the same vocabulary")
        if run.vocab.itos != first.vocab.itos:
            raise ValueError(f"{run.path}: its vocabulary differs from {first.path}'s")
        same = [r for r in members if r.config.encoder == run.config.encoder]
        if any(r.config.encoder_weights != run.config.encoder_weights for r in same):
            raise ValueError(f"{run.path}: encoder_weights is {run.config.encoder_weights!r}, but another member on "
                             f"{run.config.encoder} has {same[0].config.encoder_weights!r}: one encoder, one set of "
                             f"features")
        grids = [encoders.ENCODERS[r.config.encoder].grid for r in (first, run)]
        if grids[0] != grids[1]:
            raise ValueError(f"{run.path}: its encoder {run.config.encoder} has a {grids[1]}x{grids[1]} grid, "
                             f"{first.config.encoder} ({first.path}) {grids[0]}x{grids[0]}: an ensemble's attention "
                             f"maps are averaged over one grid")


def join_features(prep, configs: list[TrainConfig], progress: bool = False) -> None:
    """Members on several encoders: ``prep``'s features become the encoders' joined (:class:`JoinedFeatures`;
    the other encoders' features extracted into the cache, or read from it)."""
    names = encoder_names(configs)
    if len(names) == 1:
        return
    images = [r.image for recs in prep.records.values() for r in recs]
    weights = {c.encoder: c.encoder_weights for c in configs}
    stores = [prep.store]
    for name in names[1:]:
        store_ = extract_features(name, images, prep.config.cache_dir, weights=weights[name],
                                           device=str(resolve_device(prep.config.device)), progress=progress)
        store_.to_memory()
        stores.append(store_)
    prep.store = JoinedFeatures(stores)


def mixture(members: list[runs.Run], prep, progress: bool = False) -> Ensemble:
    """The members (checked: :func:`check_members`) as one :class:`Ensemble` over ``prep``'s features, joined
    first when they are on several encoders (:func:`join_features`)."""
    configs = [m.config for m in members]
    join_features(prep, configs, progress)
    return Ensemble([m.model for m in members], feature_slices(configs)).eval()


def test_ensemble(paths: list, name: str = "", progress: bool = False) -> dict:
    """Test the ensemble of the run folders ``paths`` on their test split, searched as the first member's test
    was (``config.search``, its samples, beam and neighbours); returns and writes ``metrics.json`` (with the
    members, their summed training time and the ensemble's greedy validation CIDEr-D beside each member's)."""
    members = [runs.load_run(p) for p in paths]
    check_members(members)
    configs = [m.config for m in members]
    # (beside the first member's folder, wherever the runs were moved)
    config = dataclasses.replace(configs[0], run_name=name or ensemble_name(configs), start_from="",
                                 run_dir=str(members[0].path.parent))
    config.path.mkdir(parents=True, exist_ok=True)
    prep = prepare(config, progress=progress)
    if prep.vocab.itos != members[0].vocab.itos:
        raise ValueError(f"{members[0].path}: the vocabulary built from the data now differs from the run's")
    model = mixture(members, prep, progress)
    val = evaluation.val_score(model, prep)
    evaluation.test(model, prep)  # (writes metrics.json, completed below)
    member_info = [{"run": m.path.name, "encoder": m.config.encoder, "decoder": m.config.decoder,
                    "best_epoch": m.metrics.get("best_epoch"),
                    "val_cider": (m.metrics.get("val") or {}).get("val_cider")} for m in members]
    extra = {"encoder": "+".join(encoder_names(configs)), "decoder": "+".join(c.decoder for c in configs),
             "members": member_info,
             "val": {"val_cider": val["cider"], "val_bleu1": val["bleu1"]}, "best_epoch": None,
             "train_seconds": sum(m.metrics.get("train_seconds") or 0 for m in members),
             "epochs_run": sum(m.metrics.get("epochs_run") or 0 for m in members)}
    return store.update_json(config.path / "metrics.json", extra)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="Test an ensemble of trained text runs (their mean next-word "
                                             "distribution) and write its metrics.json beside them.")
    ap.add_argument("runs", nargs="+", help="run folders (two or more) on the same data and vocabulary")
    ap.add_argument("--name", default="", help="the ensemble's folder name (default <encoder>-<a>+<b>-<target>)")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.runs]
    for p in paths:
        if not (p / "best.pt").exists():
            raise SystemExit(f"{p}: not a trained run folder (no best.pt)")
    result = test_ensemble(paths, args.name)
    print(json.dumps({"run": result["run"], "test": result["test"]}, default=float), flush=True)
    return result


if __name__ == "__main__":
    main()
