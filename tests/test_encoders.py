"""Encoders: real packaged weights, the downloadable-weights path, the feature cache."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import skimage.data as skdata  # scikit-image is a test extra: a missing install fails here, it skips nothing
import torch
from PIL import Image

from capkit import encoders as E
from capkit import features as FT
from capkit import fused


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
    """Every variant's grid is [B, grid * grid, D] (196 regions, 49 for the 7x7 ones) with its spec's D, D the
    tapped stages' channels summed; the global vector comes from the same pass."""
    spec = E.ENCODERS[name]
    enc = E.Encoder(name, weights="random")
    x = torch.rand(2, 3, spec.image_size, spec.image_size)
    with torch.inference_mode():
        out = enc(x)
        grid, vec = enc(x, pooled=True)
        stage_channels = {}
        h = ((x - enc.mean) / enc.std).contiguous(memory_format=torch.channels_last)
        for stage, module in enc.body.named_children():
            h = module(h)
            stage_channels[stage] = h.shape[1]
    assert spec.grid in (7, 14) and out.shape == (2, spec.grid * spec.grid, spec.dim)  # 14x14, or 7x7 (_multi7)
    assert torch.equal(grid, out) and vec.shape == (2, enc.global_dim)
    assert spec.dim == sum(stage_channels[t] for t in spec.taps)
    assert enc.global_dim == (2048 if name.startswith("res") else 1280)


def test_variants_differ_in_their_cut_and_cache_key():
    keys = {FT.cache_key(n, "pretrained", ["a.jpg"], s) for n, s in E.ENCODERS.items()}
    cuts = {s.cut_id() for s in E.ENCODERS.values()}
    assert len(keys) == len(cuts) == len(E.ENCODERS)
    deep = E.ENCODERS["efficientnet_lite0_deep"]
    assert FT.cache_key("x", "pretrained", [], deep) != FT.cache_key(
        "x", "pretrained", [], dataclasses.replace(deep, output_stride=32))  # the cut alone changes the key
    with pytest.raises(ValueError, match="unknown encoder"):
        E.Encoder("nope")
    E.ENCODERS["bad_tap"] = dataclasses.replace(deep, name="bad_tap", taps=("stage9",))
    try:
        with pytest.raises(ValueError, match="stage9"):
            E.Encoder("bad_tap", weights="random")
    finally:
        del E.ENCODERS["bad_tap"]


def test_dilated_network_still_classifies():
    """output_stride=16 (the _deep and _multi variants) keeps the pretrained weights' meaning."""
    net = E.build_classifier("efficientnet_lite0", output_stride=16)
    spec = E.ENCODERS["efficientnet_lite0_deep"]
    for photo, cls in ((skdata.chelsea(), 285), (skdata.coffee(), 967)):
        p = classify(net, spec, photo)
        assert p.argmax().item() == cls and p[cls] > 0.5
    assert net.blocks[5][0].conv_dw.stride == (1, 1) and net.blocks[6][0].conv_dw.dilation == (2, 2)


def object_at(quadrant: int) -> torch.Tensor:
    """A 224x224 grey image with an 80x80 cat in one quadrant (0 top-left, 1 top-right, 2 bottom-left, 3 ...)."""
    cat = np.array(Image.fromarray(skdata.chelsea()).resize((80, 80), 3))
    img = np.full((224, 224, 3), 128, np.uint8)
    r0, c0 = (12 if quadrant < 2 else 132), (12 if quadrant % 2 == 0 else 132)
    img[r0:r0 + 80, c0:c0 + 80] = cat
    return torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255


@pytest.mark.parametrize("name", ["efficientnet_lite0_deep", "efficientnet_lite0_deep_up", "efficientnet_lite0_multi",
                                  "efficientnet_lite2_deep"])
def test_deep_grids_keep_the_spatial_layout(name):
    """An object in one quadrant changes the features most in that quadrant's cells (dilated or interpolated), and
    a horizontally flipped image gives (roughly: TF 'same' padding is asymmetric) the flipped grid."""
    enc = E.Encoder(name)
    with torch.inference_mode():
        blank = enc(torch.full((1, 3, 224, 224), 128 / 255))
        for q in range(4):
            change = (enc(object_at(q)) - blank)[0].norm(dim=-1).view(14, 14)
            quads = [change[:7, :7], change[:7, 7:], change[7:, :7], change[7:, 7:]]
            r, c = divmod(int(change.argmax()), 14)
            assert (r >= 7) * 2 + (c >= 7) == q  # the peak cell
            assert float(quads[q].sum() / change.sum()) > 0.35  # uniform would be 0.25
        x = torch.from_numpy(np.array(Image.fromarray(skdata.astronaut()).resize((224, 224), 3)))
        x = x.permute(2, 0, 1).float()[None] / 255
        g, gf = enc(x)[0].view(14, 14, -1), enc(x.flip(-1))[0].view(14, 14, -1)
    assert (gf - g.flip(1)).norm() < 0.7 * (gf - g).norm()


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite0_deep", "efficientnet_lite2_multi"])
def test_global_vector_is_the_classifiers_pre_logits(name):
    """The pooled vector is what timm's classifier head reads (pre_logits) on the same (possibly dilated) network."""
    spec = E.ENCODERS[name]
    enc = E.Encoder(name)
    net = E.build_classifier(spec.arch, output_stride=spec.output_stride)
    x = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        _, vec = enc(x, pooled=True)
        ref = net.forward_head(net.forward_features((x - enc.mean) / enc.std), pre_logits=True)
        logits = net.get_classifier()(vec)
    assert vec.shape == ref.shape == (2, 1280)
    assert torch.allclose(vec, ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(logits, net((x - enc.mean) / enc.std), atol=1e-3, rtol=1e-3)


def test_resnet_global_vector_is_pooled_layer4():
    """ResNet (random weights here: downloads): the global vector is layer4 average-pooled, what fc reads."""
    torch.manual_seed(0)
    enc = E.Encoder("resnet101", weights="random")
    torch.manual_seed(0)
    net = E.build_classifier("resnet101", weights="random")
    net.fc = torch.nn.Identity()
    x = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        _, vec = enc(x, pooled=True)
        ref = net((x - enc.mean) / enc.std)
    assert vec.shape == ref.shape == (1, 2048) and torch.allclose(vec, ref, atol=1e-4, rtol=1e-4)


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
    """Counts the images its forward encodes (folded copies count too). An extraction encodes each image once,
    plus the first E.CHECK_IMAGES of its first batch again with the plain network (the folded one's check)."""
    calls = 0

    def forward(self, images, pooled=False):
        CountingEncoder.calls += len(images)
        return super().forward(images, pooled=pooled)


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
    store = FT.extract_features("efficientnet_lite0", photos, tmp_path / "cache", batch_size=2, encoder=enc,
                               progress=False)
    assert CountingEncoder.calls == 5 + E.CHECK_IMAGES and store.feats.dtype == np.float16 and len(store) == 5
    again = FT.extract_features("efficientnet_lite0", list(reversed(photos)), tmp_path / "cache", encoder=enc,
                               progress=False)
    assert CountingEncoder.calls == 5 + E.CHECK_IMAGES and again.path == store.path  # cached: no CNN
    with torch.inference_mode():
        direct = enc(E.image_tensor(photos[1], 224)[None])[0]
    assert torch.allclose(store[[photos[1]]][0], direct, atol=2e-2, rtol=1e-2)  # float16 storage
    assert store.failed == {photos[4]: "corrupt_image"} and float(store[[photos[4]]].abs().sum()) == 0
    assert store.pooled([photos[0]]).shape == (1, 112)


def test_global_vectors_survive_the_cache(tmp_path, photos):
    """The global vectors are written beside the grid in the same pass and read back identically (float32)."""
    enc = CountingEncoder("efficientnet_lite0_deep")
    CountingEncoder.calls = 0
    store = FT.extract_features("efficientnet_lite0_deep", photos, tmp_path, batch_size=2, encoder=enc,
                               progress=False)
    assert CountingEncoder.calls == 5 + E.CHECK_IMAGES  # one pass gives both arrays
    assert FT.pooled_path(store.path).exists() and store.global_dim == 1280
    vecs = store.global_pooled(photos)
    assert vecs.dtype == np.float32 and vecs.shape == (5, 1280)
    with torch.inference_mode():
        grid, direct = enc(torch.stack([E.image_tensor(p, 224) for p in photos[:2]]), pooled=True)
    assert np.allclose(vecs[:2], direct.numpy(), atol=1e-4, rtol=1e-4)  # (the folded network's rounding)
    assert torch.allclose(store[photos[:2]], grid, atol=2e-2, rtol=1e-2)
    assert not vecs[4].any()  # the broken image
    CountingEncoder.calls = 0
    again = FT.extract_features("efficientnet_lite0_deep", list(reversed(photos)), tmp_path, encoder=enc,
                               progress=False)
    assert CountingEncoder.calls == 0 and again.path == store.path  # read back, no CNN
    assert np.array_equal(again.global_pooled(photos), vecs) and np.array_equal(again.global_pooled(), vecs[
        np.argsort(photos)])  # rows in the cache's (sorted) order
    other = FT.extract_features("efficientnet_lite0", photos, tmp_path, encoder=CountingEncoder("efficientnet_lite0"),
                               progress=False)
    assert other.path != store.path and other.global_dim == 1280 and other.feats.shape[2] == 112
    # a cache written before the global vectors existed: no vectors, the grid still reads
    FT.pooled_path(other.path).unlink()
    old = FT.FeatureStore(other.path)
    assert old.global_pooled(photos) is None and old.global_dim is None and old.pooled(photos).shape == (5, 112)


def test_feature_cache_key_changes_with_images_and_resumes(tmp_path, photos):
    enc = CountingEncoder("efficientnet_lite0")
    a = FT.extract_features("efficientnet_lite0", photos[:2], tmp_path, encoder=enc, progress=False)
    b = FT.extract_features("efficientnet_lite0", photos[:3], tmp_path, encoder=enc, progress=False)
    assert a.path != b.path
    # a run killed after its first batch: the partial files say 2 of 4 done, extraction continues from there
    key_imgs = sorted(photos[:4])
    key = FT.cache_key("efficientnet_lite0", "pretrained", key_imgs, E.ENCODERS["efficientnet_lite0"])
    final = tmp_path / "features" / f"efficientnet_lite0-{key}.f16"
    part = np.memmap(final.with_suffix(".f16.partial"), dtype=np.float16, mode="w+", shape=(4, 196, 112))
    part[:2] = 7.0
    part.flush()
    gpart = np.memmap(str(FT.pooled_path(final)) + ".partial", dtype=np.float32, mode="w+", shape=(4, 1280))
    gpart[:2] = 3.0
    gpart.flush()
    del part, gpart
    meta = {"encoder": "efficientnet_lite0", "weights": "pretrained", "shape": [4, 196, 112],
            "pooled_shape": [4, 1280], "images": key_imgs, "done": 2, "failed": {}}
    final.with_suffix(".json.partial").write_text(json.dumps(meta))
    CountingEncoder.calls = 0
    store = FT.extract_features("efficientnet_lite0", photos[:4], tmp_path, batch_size=2, encoder=enc, progress=False)
    assert CountingEncoder.calls == 2 + E.CHECK_IMAGES  # only the two missing images
    assert float(store[key_imgs[:2]].min()) == 7.0 and float(store[key_imgs[2:]].abs().max()) > 0
    assert (store.global_pooled(key_imgs[:2]) == 3.0).all() and store.global_pooled(key_imgs[2:]).any()
    assert not final.with_suffix(".json.partial").exists()


def test_a_subset_is_read_from_the_entry_that_holds_it(tmp_path, photos):
    """04_attention asks for the test images only: they come from the whole dataset's entry, no CNN pass, as
    long as none of that entry's images changed since it was written."""
    enc = CountingEncoder("efficientnet_lite0")
    CountingEncoder.calls = 0
    whole = FT.extract_features("efficientnet_lite0", photos[:4], tmp_path, batch_size=2, encoder=enc, progress=False)
    part = FT.extract_features("efficientnet_lite0", [photos[2], photos[0]], tmp_path, encoder=enc, progress=False)
    assert CountingEncoder.calls == 4 + E.CHECK_IMAGES and part.path == whole.path
    assert torch.equal(part[[photos[0]]], whole[[photos[0]]])
    deep = FT.extract_features("efficientnet_lite0_deep", [photos[0]], tmp_path,
                              encoder=CountingEncoder("efficientnet_lite0_deep"), progress=False)
    assert deep.path != whole.path and deep.feats.shape[2] == 320  # another cut is never borrowed
    Image.fromarray(skdata.camera()).save(photos[1])  # one image of the entry rewritten since
    CountingEncoder.calls = 0
    fresh = FT.extract_features("efficientnet_lite0", [photos[0]], tmp_path, encoder=enc, progress=False)
    assert CountingEncoder.calls == 1 + 1 and fresh.path != whole.path  # (one image: checked once)
    assert FT.covering_entry(tmp_path / "features", "efficientnet_lite0", "pretrained", [photos[3]],
                            E.ENCODERS["efficientnet_lite0"]) is None


@pytest.mark.parametrize("name", ["efficientnet_lite0_multi", "efficientnet_lite2_deep", "resnet101"])
def test_folded_batchnorm_gives_the_same_features(name):
    """fused.fold_batchnorm (the extraction's speed trick) against the network it came from: the same grid and
    global vector up to float rounding, every norm that follows a convolution folded, the original untouched."""
    torch.manual_seed(0)
    enc = E.Encoder(name, weights="random" if name.startswith("res") else "pretrained")
    with torch.no_grad():  # random running statistics, so that folding them in is not a no-op
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    folded = fused.fold_batchnorm(enc)
    norms = [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not norms and any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules())
    x = torch.rand(2, 3, enc.spec.image_size, enc.spec.image_size)
    with torch.inference_mode():
        (grid, vec), (g2, v2) = enc(x, pooled=True), folded(x, pooled=True)
    assert (g2 - grid).norm() <= 1e-4 * grid.norm() and (v2 - vec).norm() <= 1e-4 * vec.norm()
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in before.items())
    # the extraction uses the folded network after checking it on the first images of its first batch
    encode = E.InferenceEncoder(enc)
    g3, v3 = encode(x)
    assert encode.net is not enc and torch.equal(g3, g2) and torch.equal(v3, v2)
    with torch.inference_mode():  # the next batches go through the network chosen on the first
        assert all(torch.equal(a, b) for a, b in zip(encode(x[:1]), encode.net(x[:1], pooled=True)))


def test_a_folded_network_that_differs_is_not_used(monkeypatch):
    """A network that folding would change (a norm registered after a convolution it does not follow) keeps its
    plain form: the check on the first images catches it."""
    enc = E.Encoder("efficientnet_lite0", weights="random")
    x = torch.rand(3, 3, 224, 224)

    fold = fused.fold_batchnorm

    def wrong_fold(net):  # what a wrong fold would give: other weights
        bad = fold(net)
        with torch.no_grad():
            next(p for p in bad.parameters() if p.dim() == 4).mul_(1.5)
        return bad

    monkeypatch.setattr(E.fused, "fold_batchnorm", wrong_fold)
    encode = E.InferenceEncoder(enc)
    grid, vec = encode(x)
    with torch.inference_mode():
        want_grid, want_vec = enc(x, pooled=True)
    assert encode.net is enc and torch.equal(grid, want_grid) and torch.equal(vec, want_vec)


def test_random_resnets_stay_in_float16_range(photos):
    """Random weights (tests, timing) must not overflow the float16 cache: residual branches start at zero."""
    enc = E.Encoder("resnet101", weights="random").eval()
    with torch.inference_mode():
        out = enc(torch.stack([E.image_tensor(p, 256) for p in photos[:2]]))
    assert out.shape == (2, 196, 1024) and torch.isfinite(out).all() and out.abs().max() < FT.F16_MAX


def test_features_beyond_float16_are_refused(tmp_path, photos):
    class Loud(CountingEncoder):
        def forward(self, images, pooled=False):
            grid, vec = super().forward(images, pooled=True)
            return grid * 1e6, vec

    with pytest.raises(ValueError, match="beyond float16"):
        FT.extract_features("efficientnet_lite0", photos[:2], tmp_path, encoder=Loud("efficientnet_lite0"),
                           progress=False)
