"""The attention viewer driven in Python (no browser), and Run.caption behind it."""

import datetime
import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from capkit import runs, train, widgets

TEXT_RUN, HASHTAG_RUN = "efficientnet_lite0-soft-text", "efficientnet_lite0-soft-hashtag"


def smoke_run_dir(base, sample_dir, cache_dir):
    """A run folder with a smoke text run and the matching hashtag run (trained once; reused when present)."""
    for target in ("text", "hashtag"):
        config = train.TrainConfig(data_dir=str(sample_dir), run_dir=str(base), cache_dir=str(cache_dir), smoke=True,
                                   epochs=2, batch_size=8, encoder="efficientnet_lite0", decoder="soft", target=target)
        if not (config.path / "predictions.jsonl").exists():
            train.train(config, progress=False)
    return base


def wordy_image(viewer, min_words=2):
    """A test image whose caption has at least ``min_words`` words (smoke models sometimes stop at once)."""
    for i in range(len(viewer.image_picker.options)):
        viewer.image_picker.value = i
        if len(viewer.caption["words"]) >= min_words:
            return i
    pytest.fail(f"no test image of {viewer.run.name} gets {min_words} words")


@pytest.fixture(scope="session")
def att_runs(tmp_path_factory, sample_dir, cache_dir):
    return smoke_run_dir(tmp_path_factory.getbasetemp() / "capkit_att_runs", sample_dir, cache_dir)


@pytest.fixture(scope="module")
def viewer(att_runs):
    return widgets.AttentionViewer(att_runs, beam_size=2)


def png(img, **kw):
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def jpeg(img):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def png_claiming(width, height):
    """A small PNG whose header claims width x height pixels (a decompression bomb's signature)."""
    raw = bytearray(png(Image.new("RGB", (8, 8), "red")))
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4: ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(raw[ihdr: ihdr + 17])) & 0xFFFFFFFF
    raw[ihdr + 17: ihdr + 21] = struct.pack(">I", crc)
    return bytes(raw)


# ----------------------------------------------------------------------------- Run.caption


def test_run_caption_shapes_and_inputs(att_runs):
    run = runs.load_run(att_runs / TEXT_RUN)
    path = run.predictions()[0]["image"]
    c = run.caption(path, beam_size=2)
    assert set(c) >= {"tokens", "words", "alphas", "grid", "text", "score", "finished", "beam_size"}
    assert c["alphas"].shape == (len(c["tokens"]), 196) and c["grid"] == 14
    assert np.allclose(c["alphas"].sum(1), 1, atol=1e-4)
    assert c["words"] == [t.split("/")[0] if "/" in t else t for t in c["tokens"]]
    assert c["text"] == run.readable(c["tokens"])
    assert run.caption(Image.open(path), beam_size=2)["tokens"] == c["tokens"]  # a PIL image or a path
    assert run.encoder() is run.encoder()  # built once
    many = run.caption_many([path, path], beam_size=2)
    assert [m["tokens"] for m in many] == [c["tokens"], c["tokens"]]


def test_run_caption_hashtags(att_runs):
    run = runs.load_run(att_runs / HASHTAG_RUN)
    c = run.caption(run.predictions()[0]["image"], beam_size=3)
    assert c["hashtags"] == c["tokens"] and len(set(c["tokens"])) == len(c["tokens"])  # no repeats
    assert all(w.startswith("#") for w in c["words"])


def test_update_metrics_keeps_other_keys(att_runs, tmp_path):
    import shutil

    folder = tmp_path / TEXT_RUN
    shutil.copytree(att_runs / TEXT_RUN, folder)
    run = runs.load_run(folder)
    before = json.loads((folder / "metrics.json").read_text())
    run.update_metrics(grounding={"accuracy": float("nan"), "n_words": 0})
    after = json.loads((folder / "metrics.json").read_text())
    assert after["grounding"] == {"accuracy": None, "n_words": 0}  # standard JSON (NaN -> null)
    # (the shared smoke runs may already carry a grounding from 04_attention run by another test)
    assert {k: v for k, v in after.items() if k != "grounding"} == {k: v for k, v in before.items() if k != "grounding"}
    assert not list(folder.glob(".metrics.json.tmp*"))


# ----------------------------------------------------------------------------- the viewer


def test_viewer_starts_on_a_text_run_with_hashtags_beside(viewer):
    assert viewer.run.name == TEXT_RUN and viewer.caption is not None
    assert set(viewer.run_picker.options) == {TEXT_RUN, HASHTAG_RUN}
    assert viewer.tags is not None and viewer.tags_source == HASHTAG_RUN
    assert "capkit-hashtags" in viewer.hashtags.value and "#" in viewer.hashtags.value
    assert viewer.overlay.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert not viewer.error


def test_slider_moves_overlay_and_highlight(viewer):
    wordy_image(viewer)
    assert viewer.word.max == len(viewer.caption["words"]) - 1 and not viewer.word.disabled
    viewer.word.value = 0
    img0, html0 = viewer.overlay.value, viewer.words.value
    assert 'data-index="0"' in html0.split("<mark")[1].split(">")[0]
    viewer.word.value = 1
    assert viewer.overlay.value != img0
    assert viewer.words.value != html0
    assert 'class="capkit-current" data-index="1"' in viewer.words.value
    assert viewer.words.value.count("<mark") == 1
    viewer.word.value = 0
    assert viewer.overlay.value == img0 and viewer.words.value == html0


def test_beam_and_run_and_image_choices(viewer):
    viewer.beam.value = 1
    assert viewer.caption["beam_size"] == 1
    viewer.beam.value = 3
    assert viewer.caption["beam_size"] == 3
    viewer.image_picker.value = 1
    assert viewer.reference["image"] == viewer.run.predictions()[1]["image"]
    viewer.run_picker.value = HASHTAG_RUN
    assert viewer.run.name == HASHTAG_RUN
    assert viewer.reference["image"] == viewer.run.predictions()[viewer.image_picker.value]["image"]
    assert all(w.startswith("#") for w in viewer.caption["words"]) and viewer.tags == viewer.caption["hashtags"]
    viewer.run_picker.value = TEXT_RUN
    assert viewer.run.name == TEXT_RUN and not viewer.error


def upload(viewer, content, name, mime):
    viewer.upload.value = ({"name": name, "type": mime, "size": len(content), "content": memoryview(content),
                            "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def test_upload_rgba_png_through_the_file_upload_widget(viewer):
    rgba = Image.new("RGBA", (300, 200), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (50, 50, 150, 150))
    upload(viewer, png(rgba), "transparent.png", "image/png")
    assert not viewer.error, viewer.message.value
    assert viewer.reference is None and viewer.image.mode == "RGB" and viewer.image.size == (300, 200)
    assert viewer.image.getpixel((10, 10)) == (255, 255, 255)  # transparency on white, as images.open_image
    assert viewer.image_picker.value is None and "uploaded transparent.png" in viewer.message.value
    assert viewer.caption is not None and viewer.overlay.value[:4] == b"\x89PNG"


@pytest.mark.parametrize("content, name, says", [
    (b"this is not an image at all", "notes.jpg", "not a usable image"),
    (b"", "empty.png", "empty"),
    (None, "truncated.jpg", "not a usable image"),  # filled in below: a JPEG cut in half
    (png_claiming(30_000, 30_000), "bomb.png", "decompression bomb"),
])
def test_bad_uploads_are_refused_with_a_message(viewer, content, name, says):
    if content is None:
        full = jpeg(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)))
        content = full[: len(full) // 2]
    viewer.image_picker.value = 0
    before = (viewer.caption, viewer.overlay.value)
    upload(viewer, content, name, "image/png")  # must not raise
    assert viewer.error and says in viewer.message.value and name in viewer.message.value
    assert (viewer.caption, viewer.overlay.value) == before  # the previous state stays


def test_huge_but_valid_upload_is_shrunk(viewer):
    big = Image.new("RGB", (7000, 5000), (30, 120, 200))  # 35 megapixels: below the bomb limit
    assert viewer.load_bytes(jpeg(big), "huge.jpg")
    assert not viewer.error and max(viewer.image.size) <= widgets.KEEP_SIDE
    assert viewer.image.size[0] / viewer.image.size[1] == pytest.approx(1.4, abs=0.01)


def test_oversize_bytes_refused_before_decoding():
    with pytest.raises(widgets.UploadRejected, match="MB"):
        widgets.read_upload(b"\xff" * 2048, "big.jpg", max_bytes=1024)


def test_static_output_without_a_frontend(viewer):
    bundle = viewer._repr_mimebundle_()
    assert {"application/vnd.jupyter.widget-view+json", "image/png", "text/plain"} <= set(bundle)
    import base64

    assert base64.b64decode(bundle["image/png"])[:4] == b"\x89PNG"
    viewer.show_static()


def test_no_runs_is_a_message(tmp_path):
    v = widgets.AttentionViewer(tmp_path)
    assert v.run is None and "no trained runs" in v.message.value
    v.load_bytes(b"junk", "x.jpg")  # nothing to caption with, and no exception
