"""Figures in any caption's language: Korean, English and Vietnamese (Latin letters with stacked diacritics)
render with no missing glyph, through the font fallback chain that viz sets."""

import logging
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from capkit import data as D  # noqa: E402
from capkit import viz  # noqa: E402

VIETNAMESE = "Một con chó đang chạy trên bãi biển, trầm ầm, ủ ấm"  # ầ ủ ấ: boxes with NanumGothic alone
KOREAN = "해운대 바다 너무 예뻤어요 #부산"
ENGLISH = "A brown dog runs on the beach."


def missing_glyphs(draw, caplog) -> list[str]:
    """Messages about missing glyphs while `draw()` builds and renders a figure (warnings or log records)."""
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="matplotlib"):
        warnings.simplefilter("always")
        fig = draw()
        fig.canvas.draw()  # lays the text out with the fonts: where a missing glyph is found
        plt.close(fig)
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    return [m for m in messages if "missing from font" in m]


@pytest.fixture()
def posts(tmp_path):
    recs = []
    for i, (text, tags) in enumerate(((VIETNAMESE, []), (KOREAN, ["부산", "바다"]), (ENGLISH, ["beach"]))):
        path = tmp_path / f"{i}.jpg"
        Image.new("RGB", (64, 48), (40 * i, 120, 200)).save(path)
        recs.append(D.Record(key=f"k{i}", image=str(path), texts=[text], hashtags=tags, split="train"))
    return recs


def test_captions_in_three_languages_have_every_glyph(posts, caplog):
    predictions = {"k0": "Con chó ầm ĩ ủ rũ, ấm áp", "k1": "바다 최고예요", "k2": "a dog on the sand"}
    assert missing_glyphs(lambda: viz.image_grid(posts, n=3, cols=3, predictions=predictions), caplog) == []
    image = Image.open(posts[0].image)
    words = VIETNAMESE.split()[:5] + ["바다", "dog"]
    caption = {"words": words, "alphas": np.full((len(words), 196), 1 / 196), "text": " ".join(words)}
    draw = lambda: viz.caption_figure(image, caption, title=VIETNAMESE + "\n" + KOREAN, hashtags=["부산"])  # noqa: E731
    assert missing_glyphs(draw, caplog) == []
    assert list(matplotlib.rcParams["font.family"][:2]) == list(viz.FONT_CHAIN)


def test_the_check_sees_missing_glyphs(posts, caplog):
    """Without the fallback (the bundled Korean font alone) the same Vietnamese title shows boxes."""
    viz.use_korean_font()

    def korean_font_only():
        matplotlib.rcParams["font.family"] = ["NanumGothic"]
        fig, ax = plt.subplots()
        ax.set_title(VIETNAMESE)
        return fig

    try:
        found = missing_glyphs(korean_font_only, caplog)
    finally:
        viz.use_korean_font()
    assert any("ầ" in m or "7847" in m for m in found), found
