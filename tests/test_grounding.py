"""The pointing game (capkit.pointing) on hand-checked cases, and its use by capkit.pointing.grounding."""

import math

import numpy as np
import pytest

from capkit import pointing, viz


def one_hot(grid, row, col):
    a = np.zeros((grid, grid), dtype=np.float32)
    a[row, col] = 1.0
    return a.reshape(-1)  # row-major, as the encoders flatten their grid


def test_attention_peak_is_the_cell_centre_row_major():
    assert pointing.attention_peak([0, 0, 1, 0], 2) == (0.25, 0.75)  # index 2 = row 1, column 0
    assert pointing.attention_peak([0, 0.2, 0.1, 0.1], 2) == (0.75, 0.25)
    x, y = pointing.attention_peak(one_hot(14, 3, 5), 14)
    assert (x, y) == pytest.approx((5.5 / 14, 3.5 / 14))
    assert pointing.attention_peak(np.ones(196), 14) == pytest.approx((0.5 / 14, 0.5 / 14))  # ties: first cell


def test_attention_peak_checks_the_grid():
    with pytest.raises(ValueError, match="14x14"):
        pointing.attention_peak(np.ones(49), 14)


def test_peak_and_overlay_agree_on_where_the_map_points():
    """The drawn overlay (upsampled, smoothed) peaks where the pointing game says, on a non-square image."""
    alpha = one_hot(14, 2, 11)
    heat = viz.attention_overlay(alpha, (280, 140))  # size = (w, h) -> array [h, w]
    y, x = np.unravel_index(heat.argmax(), heat.shape)
    px, py = pointing.attention_peak(alpha, 14)
    assert abs(x - px * 280) <= 10 and abs(y - py * 140) <= 5


def test_overlay_of_a_large_photo_matches_the_small_one():
    """Large images are smoothed at a working size and resized: the same picture as a small image's, scaled."""
    alpha = np.random.default_rng(0).dirichlet(np.ones(196))
    small = viz.attention_overlay(alpha, (128, 96))
    large = viz.attention_overlay(alpha, (1536, 1152))  # 12 x (128, 96)
    assert large.shape == (1152, 1536) and large.max() == pytest.approx(1.0)
    shrunk = large.reshape(96, 12, 128, 12).mean(axis=(1, 3))
    assert np.abs(shrunk - small).mean() < 0.02
    assert np.corrcoef(shrunk.ravel(), small.ravel())[0, 1] > 0.99


def test_in_boxes_edges_count():
    assert pointing.in_boxes((0.5, 0.5), [[0.5, 0.5, 0.6, 0.6]])
    assert pointing.in_boxes((0.6, 0.6), [[0.5, 0.5, 0.6, 0.6]])
    assert not pointing.in_boxes((0.61, 0.5), [[0.5, 0.5, 0.6, 0.6]])
    assert pointing.in_boxes((0.05, 0.9), [[0.5, 0.5, 0.6, 0.6], [0, 0.8, 0.1, 1]])
    assert not pointing.in_boxes((0.5, 0.5), [])


@pytest.mark.parametrize("boxes, area", [
    ([[0, 0, 0.5, 0.5]], 0.25),
    ([[0, 0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]], 0.25 + 0.25 - 0.0625),  # overlap counted once
    ([[0, 0, 1, 1], [0.2, 0.2, 0.3, 0.3]], 1.0),  # inside another
    ([[0, 0, 0.1, 0.1], [0.6, 0.1, 0.9, 0.4]], 0.01 + 0.09),  # apart
    ([[-0.5, 0, 0.5, 1]], 0.5),  # clipped to the image
    ([[0.3, 0.3, 0.3, 0.5]], 0.0),  # degenerate
    ([], 0.0),
])
def test_boxes_area(boxes, area):
    assert pointing.boxes_area(boxes) == pytest.approx(area)


def test_pointing_game_by_hand():
    dog = [[0, 0, 0.5, 0.5]]
    birds = [[0, 0, 0.1, 0.1], [0.6, 0.1, 0.9, 0.4]]
    alphas = [
        [0.7, 0.1, 0.1, 0.1],  # peak (0.25, 0.25): inside the dog box -> hit
        [0.1, 0.1, 0.1, 0.7],  # peak (0.75, 0.75): outside -> miss
        [0.1, 0.6, 0.2, 0.1],  # peak (0.75, 0.25): inside the second bird box -> hit
    ]
    g = pointing.pointing_game(alphas, [dog, dog, birds], grid=2)
    assert g["n"] == 3 and g["hits"] == 2 and g["hit"] == [True, False, True]
    assert g["accuracy"] == pytest.approx(2 / 3)
    assert g["chance"] == pytest.approx((0.25 + 0.25 + 0.10) / 3)


def test_pointing_game_empty_and_mismatched():
    g = pointing.pointing_game([], [], grid=14)
    assert g["n"] == 0 and g["hits"] == 0 and math.isnan(g["accuracy"]) and math.isnan(g["chance"])
    with pytest.raises(ValueError):
        pointing.pointing_game([one_hot(14, 0, 0)], [], grid=14)


def test_object_mentions():
    words = ["귀여운", "강아지", "랑", "새", "배", "반려견"]
    boxes = [{"label": "dog", "word": "강아지", "box": [0, 0, 0.2, 0.2]},
             {"label": "bird", "word": "갈매기", "box": [0.5, 0, 0.6, 0.1]},
             {"label": "dog", "word": "강아지", "box": [0.7, 0.7, 0.9, 0.9]}]
    words_for = {"dog": ("강아지", "반려견"), "bird": ("갈매기", "새"), "boat": ("보트", "배")}
    got = pointing.object_mentions(words, boxes, words_for)
    two_dogs = [[0, 0, 0.2, 0.2], [0.7, 0.7, 0.9, 0.9]]
    # the bird is named by a synonym; "배" names a boat, but no boat is drawn here
    assert got == [(1, "dog", two_dogs), (3, "bird", [[0.5, 0, 0.6, 0.1]]), (5, "dog", two_dogs)]
    assert pointing.object_mentions(words, [], words_for) == []


class FakeRun:
    """What pointing.grounding needs from a Run: a name and caption_many."""

    name = "fake-soft-text"

    def __init__(self, captions):
        self.captions = captions

    def caption_many(self, images, beam_size=3, batch_size=32, cache_dir=None):
        return [self.captions[i] for i in images]


class Rec:
    def __init__(self, key, boxes):
        self.key, self.image, self.boxes = key, key, boxes


def test_grounding_collects_object_words_from_generated_text():
    words_for = {"dog": ("강아지",), "cat": ("고양이",)}
    recs = [Rec("a", [{"label": "dog", "box": [0, 0, 0.5, 0.5]}]),
            Rec("b", [{"label": "cat", "box": [0.5, 0.5, 1, 1]}]),
            Rec("c", [])]  # no boxes: not scored
    caps = {
        "a": {"words": ["강아지", "고양이"], "alphas": np.array([one_hot(2, 0, 0), one_hot(2, 0, 0)]), "grid": 2},
        "b": {"words": ["예쁜", "고양이"], "alphas": np.array([one_hot(2, 1, 1), one_hot(2, 0, 1)]), "grid": 2},
        "c": {"words": ["강아지"], "alphas": np.array([one_hot(2, 0, 0)]), "grid": 2},
    }
    summary, rows = pointing.grounding(FakeRun(caps), recs, words_for)
    # a: 강아지 hits its box; 고양이 names no drawn object there. b: 고양이 looks at (0.75, 0.25): a miss.
    assert [(r["key"], r["word"], r["position"], r["hit"]) for r in rows] == [("a", "강아지", 0, True),
                                                                             ("b", "고양이", 1, False)]
    assert summary["n_words"] == 2 and summary["hits"] == 1 and summary["accuracy"] == 0.5
    assert summary["chance"] == pytest.approx(0.25)
    assert summary["n_images"] == 2 and summary["images_with_mentions"] == 2
    assert summary["per_label"]["dog"] == {"n": 1, "accuracy": 1.0, "chance": 0.25}


class StoringRun(FakeRun):
    """A FakeRun with metrics.json's dict and its update (what pointing.stored_grounding adds), counting decodings."""

    def __init__(self, captions, fingerprint):
        super().__init__(captions)
        self.metrics, self.decoded = {"fingerprint": fingerprint}, 0

    def caption_many(self, images, **kw):
        self.decoded += 1
        return super().caption_many(images, **kw)

    def update_metrics(self, **items):
        self.metrics = {**self.metrics, **items}
        return self.metrics


def test_stored_grounding_is_read_back_for_the_same_weights_and_records():
    words_for = {"dog": ("강아지",)}
    recs = [Rec("a", [{"label": "dog", "box": [0, 0, 0.5, 0.5]}])]
    caps = {"a": {"words": ["강아지"], "alphas": np.array([one_hot(2, 0, 0)]), "grid": 2}}
    run = StoringRun(caps, {"best_epoch": 3})
    first = pointing.stored_grounding(run, recs, words_for)
    again = pointing.stored_grounding(run, recs, words_for)
    assert run.decoded == 1 and again == first and first[0]["accuracy"] == 1.0
    pointing.stored_grounding(run, recs, words_for, beam_size=1)  # another beam: measured again
    run.metrics["fingerprint"] = {"best_epoch": 4}  # other weights: measured again
    pointing.stored_grounding(run, recs, words_for, beam_size=1)
    assert run.decoded == 3
