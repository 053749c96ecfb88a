"""A run's settings: :class:`TrainConfig`, the named presets, and the command line that builds one.

One source of run settings: a run starts from a preset (:data:`PRESETS`) and changes what it names
(:func:`preset`). The notebook ``03_train`` (its ``preset`` parameter and the parameters it sets), the Makefile
(``PRESET=`` and its variables) and ``python -m capkit.train --preset NAME --field value`` all go through
:func:`preset`; a run's ``config.json`` records the preset and the overrides beside every setting.

Presets (each a complete TrainConfig: the defaults of the dataclass, changed as listed):

- ``default``: what ``make run`` trains on the embedded data (EfficientNet-Lite2 stage 5 + 7, 8 epochs, the
  attention term at 0.25 for texts, MBR decoding with the neighbours' texts as evidence).
- ``study``: the 2019 study's recipe as its code ran it (DESIGN.md section 8): no attention term, Adam 5e-4 at a
  constant rate, batch 32, 40 epochs, patience 5, greedy decoding, embed 300 / attention 512 / decoder 512,
  dropout 0.5, vocabulary min frequency 5.
- ``real_photos``: the settings chosen on the Flickr8k dev split for photos with human captions
  (docs/real_photos.md has the evidence): the 7x7 Lite2 grid, the tokenizer chosen from the texts, and the
  epochs, schedule and search measured there.
- ``demo``: a small, fast model for ``make demo`` (it really trains, for a few minutes on two cores).

This module imports ``encoders``, ``models`` and ``targets`` (to check names against their registries) and
``store`` (project paths).
"""

from __future__ import annotations

import argparse
import json
import math
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from capkit import store
from capkit import encoders, models, targets

# settings that may differ when a run is resumed (more epochs, another machine or folder layout)
# (the preset and the overrides only say how the settings were given: the settings themselves are compared)
RESUMABLE_CHANGES = ("epochs", "patience", "device", "beam_size", "cache_dir", "data_dir", "run_dir", "run_name",
                     "start_from", "scst_epochs", "search", "mbr_samples", "mbr_temperature", "mbr_neighbours",
                     "mbr_beam", "set_neighbours", "preset", "overrides")


@dataclass
class TrainConfig:
    """Everything that defines a run. The defaults are the base every preset (:data:`PRESETS`) changes; make a
    config with :func:`preset` rather than from the defaults alone."""

    dataset: str = "sample"
    data_dir: str = "data/sample"
    run_dir: str = "runs/default"
    run_name: str = ""  # default: <encoder>-<decoder>-<target>
    seed: int = 0
    smoke: bool = False  # tiny model and data, for tests
    encoder: str = "efficientnet_lite0"
    encoder_weights: str = "pretrained"  # "random" only when asked for (tests)
    decoder: str = "soft"  # a registered decoder (capkit.decoders): "soft", "lookback", "pf", "transformer", ...
    # decoders' own options, by decoder name: {"transformer": {"layers": 3}} (fields of that decoder's config class)
    decoder_options: dict = field(default_factory=dict)
    target: str = "text"  # "text" | "hashtag" (capkit.targets: its references, selection, scores, search)
    tokenizer: str = "okt"
    min_freq: int = 5
    max_vocab: int | None = None
    max_len: int = 30  # text tokens; hashtags use max_hashtags
    max_hashtags: int = 25
    embed_dim: int = 300
    attention_dim: int = 512
    decoder_dim: int = 512
    dropout: float = 0.5
    gate: str = "scalar"
    lambda_att: float = 1.0  # the paper's weight of the attention term, at the paper's scale (models.objective)
    label_smoothing: float = 0.0
    epochs: int = 40
    patience: int = 5
    batch_size: int = 32
    lr: float = 5e-4
    # "cosine": lr -> lr * lr_final over `epochs` | "constant" (the study) | "step": lr, the last epoch lr * lr_final
    lr_schedule: str = "cosine"
    lr_final: float = 0.1
    scst_epochs: int = 0  # self-critical epochs after cross-entropy training (texts only; 0: none)
    scst_samples: int = 5  # captions sampled per image and step
    scst_lr: float = 5e-5
    scst_batch: int = 16  # images per self-critical step
    scst_baseline: str = "mean"  # "mean": the other samples' mean reward (Luo 2020) | "greedy" (Rennie et al.)
    # self-critical reward: besides the image's own references, the first reference of each of its k nearest other
    # training images (final pooled vector, closest first: scst_references); 0: its own references alone
    scst_neighbours: int = 0
    start_from: str = ""  # a run folder whose checkpoints start this run (e.g. self-critical epochs on a copy)
    grad_clip: float = 5.0
    beam_size: int = 3  # test decoding; validation is greedy
    # test decoding: "mbr" (minimum Bayes risk over samples: capkit.mbr) | "beam" (beam_size; the study: greedy)
    search: str = "mbr"
    mbr_samples: int | None = None  # samples per test image; None: 20 for texts, 30 for hashtags
    mbr_temperature: float | None = None  # None: 0.5 for texts (closer to the mode), 1.0 for hashtags
    # texts, MBR: the references of the nearest training images (final pooled vector, closest first) that join the
    # samples as evidence in the risk, never chosen (capkit.mbr); 0: the samples alone
    mbr_neighbours: int = 40
    # texts, MBR: the caption of a beam search of this width joins the samples as one more candidate (it is chosen
    # when the samples and the evidence agree with it most); 0: the samples alone
    mbr_beam: int = 0
    # set decoders (multilabel): blend the tag votes of the nearest training posts into the model's probabilities,
    # their number and weight chosen on validation with the output rule (weight 0 when that is best: set_rule)
    set_neighbours: bool = True
    device: str = "auto"  # "auto": CUDA when present, else CPU (float32 on both)
    word_vectors: str | None = None  # a fastText .vec file
    freeze_embeddings: bool = False
    cache_dir: str = "data/cache"
    smoke_records: int = 24  # smoke: records in val and test (train gets twice as many)
    preset: str = ""  # the preset the settings came from (:func:`preset`), "" when made field by field
    overrides: dict = field(default_factory=dict)  # the settings given on top of that preset

    def __post_init__(self):
        targets.target(self.target)  # (ValueError for a target capkit does not know)
        if self.lr_schedule not in ("cosine", "constant", "step"):
            raise ValueError(f"lr_schedule must be 'cosine', 'constant' or 'step', not {self.lr_schedule!r}")
        if self.search not in ("beam", "mbr"):
            raise ValueError(f"search must be 'beam' or 'mbr', not {self.search!r}")
        if self.mbr_beam < 0:
            raise ValueError(f"mbr_beam must be 0 (the samples alone) or a beam width, not {self.mbr_beam}")
        if self.mbr_neighbours < 0:
            raise ValueError(f"mbr_neighbours must be 0 (the samples alone) or more, not {self.mbr_neighbours}")
        if self.scst_neighbours < 0:
            raise ValueError(f"scst_neighbours must be 0 (the image's own references) or more, not "
                             f"{self.scst_neighbours}")
        if self.scst_epochs and self.target != "text":
            raise ValueError("scst_epochs: self-critical training optimises CIDEr-D, so it is for target='text'")
        spec = models.decoder_spec(self.decoder)  # (ValueError for a name the registry does not hold)
        if self.scst_epochs and spec.search != "sequence":
            raise ValueError(f"scst_epochs: self-critical training samples word by word; {self.decoder!r} does not")
        if self.target not in spec.targets:
            raise ValueError(f"decoder {self.decoder!r} is for target {' or '.join(map(repr, spec.targets))}, "
                             f"not {self.target!r}")
        if self.encoder not in encoders.ENCODERS:
            raise ValueError(f"encoder must be one of {sorted(encoders.ENCODERS)}, not {self.encoder!r}")
        if not self.run_name:
            self.run_name = f"{self.encoder}-{self.decoder}-{self.target}"
        if self.smoke:  # small enough to train in seconds on a laptop CPU
            self.embed_dim, self.attention_dim, self.decoder_dim = 32, 32, 64
            self.min_freq = min(self.min_freq, 1)

    @property
    def path(self) -> Path:
        return store.project_path(self.run_dir) / self.run_name

    @property
    def data_path(self) -> Path:
        """The data folder (``data_dir``; a relative one is the repository root's, as every path of a run)."""
        return store.project_path(self.data_dir)

    @property
    def decodes_sets(self) -> bool:
        """Whether the decoder outputs a set of tags under a validation-chosen rule (``DecoderSpec.search ==
        "set"``, e.g. ``multilabel``) rather than a sequence found by a search."""
        return models.decoder_spec(self.decoder).search == "set"

    @property
    def mbr_n(self) -> int:
        """The samples per image of MBR decoding (see ``mbr_samples``)."""
        return self.mbr_samples or targets.target(self.target).mbr_samples

    @property
    def mbr_tau(self) -> float:
        """The sampling temperature of MBR decoding (see ``mbr_temperature``)."""
        if self.mbr_temperature is not None:
            return self.mbr_temperature
        return targets.target(self.target).mbr_temperature

    @property
    def decode_len(self) -> int:
        return targets.target(self.target).decode_len(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def lr_at(self, epoch: int) -> float:
        """The learning rate of cross-entropy epoch ``epoch`` (1-based): cosine from lr to lr * lr_final; constant;
        or (step) lr, and lr * lr_final in the last epoch."""
        if self.lr_schedule == "constant" or self.epochs <= 1:
            return self.lr
        if self.lr_schedule == "step":
            return self.lr * (self.lr_final if epoch >= self.epochs else 1.0)
        t = min(max(epoch - 1, 0) / (self.epochs - 1), 1.0)
        return self.lr * (self.lr_final + (1 - self.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))


def _parse_value(kind):
    """A parser for one command-line value of the field type ``kind`` (str, int, float, bool, or X | None)."""
    options = [k for k in typing.get_args(kind) if k is not type(None)]
    if options:  # X | None: "none" (or "null") is None
        inner = _parse_value(options[0])
        return lambda s: None if s.lower() in ("none", "null") else inner(s)
    if kind is dict or kind == "dict":  # JSON: --decoder_options '{"transformer": {"layers": 3}}'
        def mapping(s: str) -> dict:
            try:
                value = json.loads(s)
            except json.JSONDecodeError as e:
                raise argparse.ArgumentTypeError(f"expected a JSON object, not {s!r} ({e})")
            if not isinstance(value, dict):
                raise argparse.ArgumentTypeError(f"expected a JSON object, not {s!r}")
            return value
        return mapping
    if kind is bool:
        def boolean(s: str) -> bool:
            if s.lower() in ("true", "1", "yes", "on"):
                return True
            if s.lower() in ("false", "0", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, not {s!r}")
        return boolean
    return kind


def parse_args(argv=None) -> tuple[TrainConfig, bool]:
    """A TrainConfig from ``--preset NAME`` (default: ``default``) and command-line flags on top of it, one per
    field (``--encoder efficientnet_lite0_multi --epochs 8 --smoke true``; ``--run-name`` and ``--run_name`` both
    work), each parsed by the field's type; and whether to show progress (``--quiet``: no)."""
    parser = argparse.ArgumentParser(
        prog="python -m capkit.train", description="Train one capkit run (prepare -> fit -> test), like the "
        "03_train notebook; the same command runs under torchrun --nproc_per_node N.")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="the settings to start from (capkit.settings.PRESETS); flags override them")
    kinds = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.name in ("preset", "overrides"):
            continue
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        parser.add_argument(*names, dest=f.name, type=_parse_value(kinds[f.name]), default=UNSET,
                            metavar=f.name.upper(), help="default: the preset's")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    args = vars(parser.parse_args(argv))
    quiet = args.pop("quiet")
    name = args.pop("preset")
    return preset(name, **{k: v for k, v in args.items() if v is not UNSET}), not quiet




# ----------------------------------------------------------------------------- presets

# name -> the settings it changes from TrainConfig's defaults; a "text" or "hashtag" entry applies to that target only
PRESETS: dict[str, dict] = {
    "default": {
        "encoder": "efficientnet_lite2_multi", "epochs": 8,
        "text": {"lambda_att": 0.25},  # chosen on validation by 06_ablation (docs/results.md)
    },
    "study": {
        "encoder": "efficientnet_lite0",  # the study's ResNet-101 needs a download: any encoder may replace it
        "lambda_att": 0.0, "lr": 5e-4, "lr_schedule": "constant", "batch_size": 32, "epochs": 40, "patience": 5,
        "search": "beam", "beam_size": 1, "embed_dim": 300, "attention_dim": 512, "decoder_dim": 512,
        "dropout": 0.5, "min_freq": 5, "max_len": 30, "max_hashtags": 25, "tokenizer": "okt",
        "set_neighbours": False, "mbr_neighbours": 0,
    },
    "real_photos": {  # chosen on the Flickr8k dev split (docs/real_photos.md)
        "encoder": "efficientnet_lite2_multi7", "tokenizer": "auto", "max_len": 24, "min_freq": 5,
        "epochs": 4, "patience": 3, "lr": 5e-4, "lr_schedule": "step", "lr_final": 0.2, "batch_size": 32,
        "search": "mbr", "mbr_neighbours": 40, "mbr_beam": 5, "scst_neighbours": 0,
        "text": {"lambda_att": 0.25},
    },
    "demo": {  # make demo: a few minutes on two cores (kiwi: no Java, and a cold start ~5x faster than Okt's)
        "encoder": "efficientnet_lite0_multi7", "epochs": 5, "tokenizer": "kiwi", "search": "beam", "beam_size": 3,
        "text": {"lambda_att": 0.25},
    },
}
UNSET = object()  # a setting not given (the preset's value stays)


def preset_settings(name: str, target: str = "text") -> dict:
    """The settings preset ``name`` changes for runs of ``target`` (the general ones, then the target's own)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    entry = PRESETS[name]
    return {**{k: v for k, v in entry.items() if k not in ("text", "hashtag")}, **entry.get(target, {})}


def preset(name: str = "default", **overrides) -> TrainConfig:
    """The TrainConfig of preset ``name`` with ``overrides`` on top (a value of None keeps the preset's, so a
    notebook's parameters can say "the preset's" with None). The config records both (``preset``,
    ``overrides``)."""
    known = {f.name for f in fields(TrainConfig)} - {"preset", "overrides"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; TrainConfig has {', '.join(sorted(known))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    target = given.get("target", PRESETS.get(name, {}).get("target", "text"))
    return TrainConfig(**{**preset_settings(name, target), **given, "preset": name, "overrides": dict(given)})
