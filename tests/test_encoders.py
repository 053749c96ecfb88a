"""Encoders: real packaged weights, the downloadable-weights path, the feature cache."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from capkit import encoders as E

skdata = pytest.importorskip("skimage.data")


def classify(net, spec, array):
    x = torch.from_numpy(np.array(Image.fromarray(array).resize((spec.image_size,) * 2, 3))).permute(2, 0, 1)
    x = (x.float()[None] / 255 - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return net(x).softmax(-1)[0]


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_packaged_weights_are_real(name):
    """A real photo gets the right ImageNet class: 285 Egyptian cat, 967 espresso."""
    net = E.build_classifier(name)
    spec = E.ENCODERS[name]
    for photo, cls in ((skdata.chelsea(), 285), (skdata.coffee(), 967)):
        p = classify(net, spec, photo)
        assert p.argmax().item() == cls and p[cls] > 0.5
    torch.manual_seed(0)
    rand = classify(E.build_classifier(name, weights="random"), spec, skdata.chelsea())
    assert rand[285] < 0.05  # random weights know nothing: the check above can fail


def test_lite_key_mapping_is_complete():
    import timm

    net = timm.create_model("tf_efficientnet_lite2", pretrained=False)
    sd = torch.load(E.lite_package_file("efficientnet_lite2"), map_location="cpu", weights_only=True)
    mapped = E.lite_to_timm(sd, net)
    assert set(mapped) == set(net.state_dict())
    assert all(mapped[k].shape == v.shape for k, v in net.state_dict().items())


@pytest.mark.parametrize("name", sorted(E.ENCODERS))
def test_encoder_grid_shapes(name):
    spec = E.ENCODERS[name]
    enc = E.Encoder(name, weights="random")
    with torch.inference_mode():
        out = enc(torch.rand(1, 3, spec.image_size, spec.image_size))
    assert out.shape == (1, spec.grid * spec.grid, spec.dim) == (1, 196, spec.dim)


def test_unknown_weights_value_is_refused():
    with pytest.raises(ValueError, match="pretrained"):
        E.build_classifier("efficientnet_lite0", weights="imagenet")


def test_download_weights_offline_says_what_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = dataclasses.replace(E.ENCODERS["resnet101"], url="http://127.0.0.1:9/resnet101-63fe2227.pth")
    with pytest.raises(E.WeightsUnavailable) as e:
        E.torchvision_weights(spec)
    msg = str(e.value)
    assert "http://127.0.0.1:9/resnet101-63fe2227.pth" in msg
    assert str(tmp_path / "hub" / "checkpoints" / "resnet101-63fe2227.pth") in msg


def test_download_weights_come_from_the_torch_cache(tmp_path, monkeypatch):
    """A file a user put in the cache is used (and hash-checked) without any network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    sd = {"w": torch.arange(6.0).view(2, 3)}
    raw = tmp_path / "x.pth"
    torch.save(sd, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()[:8]
    dest = tmp_path / "hub" / "checkpoints" / f"weights-{digest}.pth"
    dest.parent.mkdir(parents=True)
    raw.rename(dest)
    spec = dataclasses.replace(E.ENCODERS["resnet101"], url=f"http://127.0.0.1:9/weights-{digest}.pth")
    assert torch.equal(E.torchvision_weights(spec)["w"], sd["w"])
    bad = dest.with_name("weights-00000000.pth")
    dest.rename(bad)
    with pytest.raises(E.WeightsUnavailable):  # hash mismatch is refused, not loaded
        E.torchvision_weights(dataclasses.replace(spec, url="http://127.0.0.1:9/weights-00000000.pth"))


class CountingEncoder(E.Encoder):
    calls = 0

    def forward(self, images):
        CountingEncoder.calls += len(images)
        return super().forward(images)


@pytest.fixture()
def photos(tmp_path):
    paths = []
    for i, arr in enumerate((skdata.chelsea(), skdata.coffee(), skdata.astronaut(), skdata.rocket())):
        p = tmp_path / f"p{i}.jpg"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    return paths + [str(tmp_path / "broken.jpg")]


def test_feature_cache_runs_the_cnn_once(tmp_path, photos):
    enc = CountingEncoder("efficientnet_lite0")
    CountingEncoder.calls = 0
    store = E.extract_features("efficientnet_lite0", photos, tmp_path / "cache", batch_size=2, encoder=enc,
                               progress=False)
    assert CountingEncoder.calls == 5 and store.feats.dtype == np.float16 and len(store) == 5
    again = E.extract_features("efficientnet_lite0", list(reversed(photos)), tmp_path / "cache", encoder=enc,
                               progress=False)
    assert CountingEncoder.calls == 5 and again.path == store.path  # cached: no CNN
    with torch.inference_mode():
        direct = enc(E.image_tensor(photos[1], 224)[None])[0]
    assert torch.allclose(store[[photos[1]]][0], direct, atol=2e-2, rtol=1e-2)  # float16 storage
    assert store.failed == {photos[4]: "corrupt_image"} and float(store[[photos[4]]].abs().sum()) == 0
    assert store.pooled([photos[0]]).shape == (1, 112)


def test_feature_cache_key_changes_with_images_and_resumes(tmp_path, photos):
    enc = CountingEncoder("efficientnet_lite0")
    a = E.extract_features("efficientnet_lite0", photos[:2], tmp_path, encoder=enc, progress=False)
    b = E.extract_features("efficientnet_lite0", photos[:3], tmp_path, encoder=enc, progress=False)
    assert a.path != b.path
    # a run killed after its first batch: the partial files say 2 of 4 done, extraction continues from there
    key_imgs = sorted(photos[:4])
    key = E.cache_key("efficientnet_lite0", "pretrained", key_imgs, E.ENCODERS["efficientnet_lite0"])
    final = tmp_path / "features" / f"efficientnet_lite0-{key}.f16"
    part = np.memmap(final.with_suffix(".f16.partial"), dtype=np.float16, mode="w+", shape=(4, 196, 112))
    part[:2] = 7.0
    part.flush()
    del part
    meta = {"encoder": "efficientnet_lite0", "weights": "pretrained", "shape": [4, 196, 112], "images": key_imgs,
            "done": 2, "failed": {}}
    final.with_suffix(".json.partial").write_text(json.dumps(meta))
    CountingEncoder.calls = 0
    store = E.extract_features("efficientnet_lite0", photos[:4], tmp_path, batch_size=2, encoder=enc, progress=False)
    assert CountingEncoder.calls == 2  # only the two missing images
    assert float(store[key_imgs[:2]].min()) == 7.0 and float(store[key_imgs[2:]].abs().max()) > 0
    assert not final.with_suffix(".json.partial").exists()


def test_random_resnets_stay_in_float16_range(photos):
    """Random weights (tests, timing) must not overflow the float16 cache: residual branches start at zero."""
    enc = E.Encoder("resnet101", weights="random").eval()
    with torch.inference_mode():
        out = enc(torch.stack([E.image_tensor(p, 256) for p in photos[:2]]))
    assert out.shape == (2, 196, 1024) and torch.isfinite(out).all() and out.abs().max() < E.F16_MAX


def test_features_beyond_float16_are_refused(tmp_path, photos):
    class Loud(CountingEncoder):
        def forward(self, images):
            return super().forward(images) * 1e6

    with pytest.raises(ValueError, match="beyond float16"):
        E.extract_features("efficientnet_lite0", photos[:2], tmp_path, encoder=Loud("efficientnet_lite0"),
                           progress=False)
