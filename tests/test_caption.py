"""The command-line captioner, run as a real subprocess against the shared smoke runs."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from capkit.runs import load_run
from capkit.store import ROOT
from test_widgets import HASHTAG_RUN, TEXT_RUN, smoke_run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sample_dir, cache_dir):
    return smoke_run_dir(tmp_path_factory.getbasetemp() / "capkit_att_runs", sample_dir, cache_dir)


@pytest.fixture()
def folder(tmp_path, sample_dir):
    """A good JPEG (a photo of the embedded dataset), a corrupt file sorted between the good ones, a PNG with
    alpha, a 6000x4000 JPEG, and a text file the folder expansion must leave out."""
    d = tmp_path / "photos"
    d.mkdir()
    Image.open(sorted((sample_dir / "images").glob("*.jpg"))[0]).save(d / "a_photo.jpg")
    (d / "b_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    rgba = Image.new("RGBA", (320, 240), (0, 0, 0, 0))  # transparent, with an opaque red disc
    ImageDraw.Draw(rgba).ellipse((60, 20, 260, 220), fill=(220, 40, 30, 255))
    rgba.save(d / "c_alpha.png")
    big = Image.fromarray(np.linspace(0, 255, 6000, dtype=np.uint8)[None, :, None].repeat(4000, 0).repeat(3, 2))
    ImageDraw.Draw(big).rectangle((1500, 1000, 4500, 3000), fill=(30, 160, 60))
    big.save(d / "d_big.jpg", quality=80)
    (d / "notes.txt").write_text("not an image")
    return d


def caption_cli(*args):
    """``python -m capkit.caption ARGS`` from the repository root: (exit status, JSON lines, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "capkit.caption", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_captions_a_folder_and_reports_the_corrupt_file(runs, folder):
    code, lines, err = caption_cli(runs / TEXT_RUN, folder, "--beam", "2", "--hashtags", runs / HASHTAG_RUN,
                                   "--batch", "4")
    assert code == 0, err
    names = ["a_photo.jpg", "b_corrupt.jpg", "c_alpha.png", "d_big.jpg"]  # sorted; notes.txt left out
    assert [line["image"] for line in lines] == [str(folder / n) for n in names]
    bad = lines[1]
    assert bad["error"] == "corrupt_image" and bad["detail"] and "text" not in bad and "tokens" not in bad
    assert "captioned 3 of 4 images; skipped corrupt_image: 1" in err

    # each good line is what the Python API says for the same images in one batch: no row shifted by the
    # corrupt file in the middle, the alpha PNG and the 24-megapixel JPEG opened as training opens them
    good = [lines[0], lines[2], lines[3]]
    assert len({line["score"] for line in good}) == 3  # three different images: a shifted row would show
    run, tag_run = load_run(runs / TEXT_RUN), load_run(runs / HASHTAG_RUN)
    paths = [line["image"] for line in good]
    for line, cap, tags in zip(good, run.caption_many(paths, beam_size=2), tag_run.caption_many(paths, beam_size=2)):
        assert line["tokens"] == cap["tokens"] and line["text"] == cap["text"] == run.readable(cap["tokens"])
        assert math.isclose(line["score"], cap["score"], rel_tol=1e-4, abs_tol=1e-4) and line["score"] <= 0
        assert line["finished"] == cap["finished"]
        assert line["hashtags"] == tags["hashtags"] and len(set(line["hashtags"])) == len(line["hashtags"])
        assert line["hashtag_text"] == " ".join("#" + t for t in line["hashtags"])
        assert math.isclose(line["hashtag_score"], tags["score"], rel_tol=1e-4, abs_tol=1e-4)
        assert all(t in run.vocab.stoi for t in line["tokens"])


def test_exit_status_says_whether_anything_was_captioned(runs, folder, tmp_path):
    code, lines, err = caption_cli(runs / TEXT_RUN, folder / "b_corrupt.jpg", tmp_path / "missing.jpg",
                                   "--batch", "1")
    assert code == 1 and [line["error"] for line in lines] == ["corrupt_image", "missing_image"]
    assert "captioned 0 of 2 images" in err
    code, lines, err = caption_cli(runs / TEXT_RUN, folder / "c_alpha.png", folder / "b_corrupt.jpg", "--beam", "1")
    assert code == 0 and "tokens" in lines[0] and "hashtags" not in lines[0] and lines[1]["error"] == "corrupt_image"
    # a folder that is no run, or a text run given as the hashtag run: usage errors, before any image
    code, lines, err = caption_cli(folder, folder)
    assert code == 2 and not lines and "not a run folder" in err
    code, lines, err = caption_cli(runs / TEXT_RUN, folder, "--hashtags", runs / TEXT_RUN)
    assert code == 2 and not lines and "not a hashtag run" in err


def test_a_loaded_run_decodes_as_its_test_did(runs, cache_dir):
    """One inference dispatch: a run tested by MBR (with its neighbours' references as evidence) captions the test
    photos of its first MBR batch with the very words its test chose, and beam search only when asked."""
    run = load_run(runs / TEXT_RUN)
    assert run.tested_search() == "mbr" and (runs / TEXT_RUN / "mbr.pt").exists()
    lines = run.predictions()[:16]  # the test's first MBR batch: 64 // 4 images on the CPU, one sampling stream
    images = [line["image"] for line in lines]
    caps = run.caption_many(images, batch_size=16, cache_dir=cache_dir)
    assert [c["tokens"] for c in caps] == [line["prediction_tokens"] for line in lines]
    assert all(c["search"] == "mbr" and c["alphas"].shape == (len(c["tokens"]), 14 * 14) for c in caps)
    beam = run.caption_many(images[:3], beam_size=2, cache_dir=cache_dir)
    assert all(c["search"] == "beam" and c["beam_size"] == 2 for c in beam)
