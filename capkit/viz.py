"""Figures: data exploration plots, image grids, attention maps.

All functions return a matplotlib Figure; :func:`save` writes it to ``figures_dir``. Text renders
through a font fallback chain (:data:`FONT_CHAIN`, no system fonts): Hangul with the NanumGothic font
bundled in ``koreanize-matplotlib``, and every letter it lacks (Vietnamese ầ ủ ấ, other Latin-script
diacritics, Greek, Cyrillic) with DejaVu Sans, which matplotlib ships; emoji, which neither has, are
dropped from figure text only.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from capkit import pointing
from capkit.images import BadImage, open_image
from capkit.store import project_path, read_json

WORK_SIDE = 128  # attention maps are smoothed at most this large, then resized (attention_overlay)
EMOJI_RE = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D\u2B50\u2764]+")
FONT_CHAIN = ("NanumGothic", "DejaVu Sans")  # Hangul first, then the Latin / Greek / Cyrillic it lacks


def use_korean_font() -> None:
    """Make matplotlib render Korean, English and Latin-script text with diacritics (any caption's language).

    Registers NanumGothic (koreanize-matplotlib) and sets ``font.family`` to the fallback chain
    :data:`FONT_CHAIN` (matplotlib >= 3.6 takes each glyph from the first font in the list that has it).
    """
    import matplotlib
    from matplotlib import font_manager

    try:
        import koreanize_matplotlib  # noqa: F401  (registers the font on import)
    except ImportError:
        pass
    known = {f.name for f in font_manager.fontManager.ttflist}
    matplotlib.rcParams["font.family"] = [f for f in FONT_CHAIN if f in known] or ["DejaVu Sans"]
    matplotlib.rcParams["axes.unicode_minus"] = False


def plain(text: str) -> str:
    """Figure-safe text: emoji removed, spaces folded."""
    return re.sub(r"\s+", " ", EMOJI_RE.sub("", text or "")).strip()


def save(fig, figures_dir, name: str, dpi: int = 110) -> Path:
    """Write ``figures_dir/name`` (a relative ``figures_dir`` is the repository's, see data.project_path)."""
    path = project_path(figures_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


# ----------------------------------------------------------------------------- data exploration


def plot_counts(frame):
    """Posts per category, stacked by split."""
    import matplotlib.pyplot as plt

    use_korean_font()
    table = frame.pivot_table(index="category", columns="split", values="key", aggfunc="count", fill_value=0)
    table = table[[s for s in ("train", "val", "test") if s in table]]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    table.plot.bar(stacked=True, ax=ax, width=0.8, color=["#4c72b0", "#dd8452", "#55a868"])
    ax.set_ylabel("posts"), ax.set_xlabel("")
    ax.set_title("Posts per category and split")
    fig.tight_layout()
    return fig


def plot_lengths(chars, tokens):
    """Histograms of text length in characters and in tokens."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, values, name in zip(axes, (chars, tokens), ("characters", "tokens")):
        ax.hist(values, bins=40, color="#4c72b0")
        ax.axvline(np.median(values), color="k", ls="--", lw=1, label=f"median {np.median(values):.0f}")
        ax.set_xlabel(f"text length ({name})"), ax.legend()
    fig.tight_layout()
    return fig


def zipf_slope(counts: Counter, top: int = 200) -> float:
    """Least-squares slope of log frequency against log rank over the ``top`` ranks."""
    freq = np.array(sorted(counts.values(), reverse=True)[:top], dtype=float)
    if len(freq) < 2:
        return float("nan")
    rank = np.arange(1, len(freq) + 1)
    return float(np.polyfit(np.log(rank), np.log(freq), 1)[0])


def plot_rank_frequency(counts: Counter, label: str = "hashtags"):
    """Rank-frequency plot on log-log axes with the fitted Zipf slope."""
    import matplotlib.pyplot as plt

    use_korean_font()
    freq = np.array(sorted(counts.values(), reverse=True), dtype=float)
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.loglog(np.arange(1, len(freq) + 1), freq, ".", ms=3)
    ax.set_xlabel("rank"), ax.set_ylabel("frequency")
    ax.set_title(f"{label}: {len(freq)} distinct, Zipf slope {zipf_slope(counts):.2f}")
    fig.tight_layout()
    return fig


def cooccurrence(tag_lists, top: int = 20):
    """Counts of the ``top`` hashtags appearing together in a post (a labelled DataFrame)."""
    import pandas as pd

    counts = Counter(t for tags in tag_lists for t in set(tags))
    names = [t for t, _ in counts.most_common(top)]
    idx = {t: i for i, t in enumerate(names)}
    m = np.zeros((len(names), len(names)), dtype=int)
    for tags in tag_lists:
        ids = sorted({idx[t] for t in tags if t in idx})
        for a in ids:
            for b in ids:
                m[a, b] += 1
    return pd.DataFrame(m, index=names, columns=names)


def plot_cooccurrence(table):
    """Heatmap of hashtag co-occurrence as P(column | row)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    use_korean_font()
    diag = np.diag(table.values).astype(float)
    cond = table.values / np.maximum(diag[:, None], 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.2))
    sns.heatmap(cond, xticklabels=["#" + t for t in table.columns], yticklabels=["#" + t for t in table.index],
                cmap="viridis", vmin=0, vmax=1, ax=ax, cbar_kws={"label": "P(column | row)"})
    ax.set_title("Hashtag co-occurrence (top hashtags)")
    fig.tight_layout()
    return fig


def image_grid(records, n: int = 12, cols: int = 4, width: int = 28, predictions: dict | None = None):
    """A grid of images with their text and hashtags (and, given ``predictions[key]``, generated ones)."""
    import matplotlib.pyplot as plt

    use_korean_font()
    records = list(records)[:n]
    rows = max(1, math.ceil(len(records) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.3, rows * (4.4 if predictions else 3.9)))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, r in zip(np.ravel(axes), records):
        try:
            ax.imshow(open_image(r.image, draft=(256, 256)))
        except BadImage as e:
            ax.text(0.5, 0.5, e.reason, ha="center")
        lines = textwrap.wrap(plain(r.text), width)[:3]
        lines += textwrap.wrap(" ".join("#" + t for t in r.hashtags), width)[:2]
        if predictions and r.key in predictions:
            lines += ["→ " + s for s in textwrap.wrap(plain(predictions[r.key]), width - 2)[:3]]
        ax.set_title("\n".join(lines), fontsize=7, loc="left", linespacing=1.45)  # room for Hangul
        ax.text(2, 10, r.category or "", fontsize=7, color="w", bbox=dict(fc="k", alpha=0.5, lw=0))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- attention


def attention_overlay(alpha, size: tuple[int, int], sigma: float = 0.0) -> np.ndarray:
    """One attention map ``[L]`` (a square grid) upsampled to ``size=(w, h)`` and smoothed, scaled to 0..1.

    ``sigma`` is in output pixels (default: half a grid cell). The smoothing runs at a working resolution of at
    most ``WORK_SIDE`` pixels and the result is then resized, so a large photo costs no more than a small one
    (a full-size blur of a 1024-pixel image with its 147-pixel kernel took seconds a word).
    """
    from torchvision.transforms.functional import gaussian_blur

    a = torch.as_tensor(alpha, dtype=torch.float32)
    g = int(round(math.sqrt(a.numel())))
    a = a.view(1, 1, g, g)
    w, h = size
    scale = min(1.0, WORK_SIDE / max(w, h))
    ww, wh = max(1, round(w * scale)), max(1, round(h * scale))
    up = F.interpolate(a, size=(wh, ww), mode="bicubic", align_corners=False)
    s = (sigma or max(w, h) / g / 2) * scale
    k = int(2 * round(2 * s) + 1)
    up = gaussian_blur(up, [k, k], [s, s])
    if (ww, wh) != (w, h):
        up = F.interpolate(up, size=(h, w), mode="bilinear", align_corners=False)
    up = up[0, 0].clamp(min=0)
    return (up / up.max().clamp(min=1e-12)).numpy()


def attention_figure(image, words: list[str], alphas, cols: int = 5, title: str = "", hashtags=None):
    """The generated text word by word, each word over its attention map on the image."""
    import matplotlib.pyplot as plt

    use_korean_font()
    n = len(words) + 1
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.4))
    axes = np.ravel(axes)
    for ax in axes:
        ax.axis("off")
    axes[0].imshow(image)
    head = plain(title)
    if hashtags:
        head += "\n" + "\n".join(textwrap.wrap(" ".join("#" + t for t in hashtags), 28)[:3])
    axes[0].set_title(head, fontsize=7, loc="left")
    for ax, word, alpha in zip(axes[1:], words, alphas):
        ax.imshow(image)
        ax.imshow(attention_overlay(alpha, image.size), cmap="jet", alpha=0.45, extent=(0, image.size[0], image.size[1], 0))
        ax.set_title(plain(word) or word, fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- vocabulary (02)


def plot_pos_distribution(table, top: int = 12):
    """Share of tokens (left) and distinct tokens (right) per part of speech, from `vocab_report.pos_distribution`;
    each part of speech is labelled with its most frequent words."""
    import matplotlib.pyplot as plt

    use_korean_font()
    total, types = int(table["tokens"].sum()), int(table["types"].sum())
    table = table.head(top).iloc[::-1]
    labels = []
    for pos, examples in zip(table.index, table["examples"]):
        shown = [w for w in (plain(e) for e in examples.split(", ")) if w]  # the font has no emoji
        labels.append(f"{pos}  ({', '.join(shown) if shown else 'emoji'})")
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.38 * len(table) + 1.2), sharey=True,
                             gridspec_kw={"width_ratios": [3, 2]})
    axes[0].barh(labels, 100 * table["share"], color="#4c72b0")
    for y, v in enumerate(100 * table["share"]):
        axes[0].text(v, y, f" {v:.1f}%", va="center", fontsize=8)
    axes[0].set_xlabel("share of tokens (%)")
    axes[0].set_xlim(0, 100 * table["share"].max() * 1.15)
    axes[1].barh(labels, table["types"], color="#dd8452")
    for y, v in enumerate(table["types"]):
        axes[1].text(v, y, f" {v}", va="center", fontsize=8)
    axes[1].set_xlabel("distinct tokens (types)")
    axes[1].set_xlim(0, table["types"].max() * 1.18)
    fig.suptitle(f"Parts of speech (Okt): {total:,} tokens, {types:,} distinct", x=0.02, ha="left")
    fig.tight_layout()
    return fig


def plot_vocab_coverage(tables: dict, chosen: int | None = None):
    """Vocabulary size (bars, left axis) and out-of-vocabulary rate per split (lines, right axis) against
    min_freq, one panel per vocabulary (name -> `vocab_report.vocab_coverage` table); `chosen` marks the min_freq used."""
    import matplotlib.pyplot as plt

    use_korean_font()
    colours = {"oov_val": "#dd8452", "oov_test": "#c44e52", "oov_train": "#55a868"}
    fig, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 3.6), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items()):
        x = table.index.to_numpy()
        ax.bar(x, table["vocab_size"], color="#4c72b0", alpha=0.55, label="vocabulary size")
        ax.set_xlabel("min_freq (training split)"), ax.set_ylabel("vocabulary size (with specials)")
        ax.set_xticks(x)
        right = ax.twinx()
        for col in [c for c in table.columns if c.startswith("oov_")]:
            right.plot(x, 100 * table[col], "o-", color=colours.get(col, None), ms=4,
                       label=f"OOV {col[4:]}")
        right.set_ylabel("out-of-vocabulary (% of tokens)")
        right.set_ylim(0, max(100 * table.filter(like="oov_").to_numpy().max() * 1.15, 1))
        if chosen is not None and chosen in table.index:
            ax.axvline(chosen, color="k", ls="--", lw=1)
            row = table.loc[chosen]
            oov = ", ".join(f"{c[4:]} {100 * row[c]:.1f}%" for c in table.columns if c.startswith("oov_"))
            ax.set_title(f"{name}: min_freq {chosen} -> {int(row['vocab_size']):,} entries, OOV {oov}", fontsize=9)
        else:
            ax.set_title(name, fontsize=10)
    handles, labels = (a + b for a, b in zip(ax.get_legend_handles_labels(), right.get_legend_handles_labels()))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    return fig


# ----------------------------------------------------------------------------- attention (04): overlays, the pointing game


def fit_image(image, max_side: int):
    """A copy of a PIL image scaled down (never up) so that its longer side is at most ``max_side``."""
    from PIL import Image

    img = image.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def peak_point(alpha) -> tuple[float, float]:
    """Where a square attention map peaks, (x, y) in 0..1: the point the pointing game checks."""
    return pointing.attention_peak(alpha, int(round(math.sqrt(np.asarray(alpha).size))))


def overlay_image(image, alpha, max_side: int = 360, opacity: float = 0.5, peak: bool = True):
    """The image (scaled to ``max_side``) with one attention map over it in the jet colour map (a PIL image).

    The map is upsampled and smoothed by :func:`attention_overlay`; ``peak`` marks the centre of the grid cell
    where the map peaks (the point the pointing game checks). ``alpha=None`` gives the plain image.
    """
    import matplotlib
    from PIL import Image, ImageDraw

    img = fit_image(image.convert("RGB"), max_side)
    if alpha is None:
        return img
    heat = attention_overlay(alpha, img.size)
    colour = (matplotlib.colormaps["jet"](heat)[..., :3] * 255).astype(np.uint8)
    out = Image.blend(img, Image.fromarray(colour), opacity)
    if peak:
        px, py = peak_point(alpha)
        x, y = px * img.width, py * img.height
        r = max(3, round(min(img.size) / 60))
        ImageDraw.Draw(out).ellipse((x - r, y - r, x + r, y + r), outline=(255, 255, 255), width=2)
    return out


def png_bytes(image) -> bytes:
    """A PIL image as PNG bytes (for ``ipywidgets.Image``)."""
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def figure_png(fig, dpi: int = 90) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed (so a notebook does not show it twice)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def caption_figure(image, caption: dict, title: str = "", hashtags=None, boxes=None, max_words: int = 30,
                   cols: int = 6):
    """A generated text word by word, each word over its attention map (``caption`` from ``Run.caption``).

    The heading holds ``title`` (default: the generated text) and the hashtags (tokens without '#'); the first
    panel the image with the drawn object boxes when given (``[{"label", "box"}]``, normalised). The peak of each
    map is marked with a white circle (the point the pointing game checks). Emoji-only words show as ``(emoji)``.
    """
    from matplotlib.patches import Rectangle

    words = [plain(w) or "(emoji)" for w in caption["words"][:max_words]]
    alphas = caption["alphas"][:max_words]
    image = image.convert("RGB")
    fig = attention_figure(image, words, alphas, cols=cols)
    head = [line for part in (title or caption["text"]).split("\n") for line in textwrap.wrap(plain(part), 60)[:3]]
    if hashtags:
        head += textwrap.wrap(" ".join("#" + t for t in hashtags), 60)[:3]
    w, h = image.size
    axes = fig.axes
    for b in boxes or []:
        x0, y0, x1, y1 = b["box"]
        axes[0].add_patch(Rectangle((x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False, lw=1.2, ec="yellow"))
        axes[0].text(x0 * w + 2, y0 * h + 2, b.get("label", ""), fontsize=6, color="k", va="top",
                     bbox=dict(fc="yellow", lw=0, pad=0.5))
    for ax, alpha in zip(axes[1:], alphas):
        px, py = peak_point(alpha)
        ax.plot([px * w], [py * h], "o", ms=5, mfc="none", mec="white", mew=1.2)
    height = fig.get_figheight()
    top = 1 - (0.17 * len(head) + 0.05) / height
    fig.suptitle("\n".join(head), x=0.01, y=0.995, ha="left", va="top", fontsize=9, linespacing=1.4)
    fig.tight_layout(rect=(0, 0, 1, top))
    return fig


def pick_test_images(lines, boxes_of: dict, n: int, seed: int = 0) -> list[dict]:
    """``n`` prediction lines for figures: images with drawn objects first (``boxes_of[image]``), spread over
    categories, in an order fixed by ``seed``."""
    import random

    rng = random.Random(seed)
    pool = [x for x in lines if boxes_of.get(x["image"])] or list(lines)
    by_category: dict = {}
    for x in pool:
        by_category.setdefault(x.get("category") or "", []).append(x)
    order = sorted(by_category)
    rng.shuffle(order)
    for c in order:
        rng.shuffle(by_category[c])
    out = []
    while len(out) < n and any(by_category.values()):
        for c in order:
            if by_category[c] and len(out) < n:
                out.append(by_category[c].pop())
    return out


def plot_grounding(table):
    """Pointing-game accuracy against chance per run (``table``: index = run, columns accuracy, chance, n_words)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 * len(table) + 2.5, 3.2))
    x = np.arange(len(table))
    ax.bar(x - 0.18, table["accuracy"].fillna(0), 0.36, label="attention peak in the box", color="#4c72b0")
    ax.bar(x + 0.18, table["chance"].fillna(0), 0.36, label="chance (box area share)", color="#bbbbbb")
    for i, (acc, n) in enumerate(zip(table["accuracy"], table["n_words"])):
        ax.text(i - 0.18, (0 if acc != acc else acc) + 0.01, f"n={n}", ha="center", fontsize=7)
    ax.set_xticks(x, [str(i).replace("-", "\n") for i in table.index], fontsize=8)
    ax.set_ylim(0, 1), ax.set_ylabel("share of object words")
    ax.set_title("Pointing game: does the attention peak fall inside the named object?", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_ablation(table, setting: str = "lambda_att"):
    """Two panels against ``setting`` (one line per encoder + decoder): validation CIDEr-D, and the test
    pointing game over chance (when the table has it). ``table``: rows of :func:`capkit.ablation.ablate`."""
    import matplotlib.pyplot as plt

    panels = [("val CIDEr-D", "validation CIDEr-D")]
    if "test pointing / chance" in table:
        panels.append(("test pointing / chance", "test pointing game / chance"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.3), squeeze=False)
    groups = [c for c in ("encoder", "decoder") if c in table]
    for ax, (column, label) in zip(axes[0], panels):
        for name, rows in (table.groupby(groups) if groups else [("", table)]):
            rows = rows.sort_values(setting)
            name = " + ".join(name) if isinstance(name, tuple) else str(name)
            ax.plot(rows[setting].astype(str), rows[column], "o-", label=name)
        if column.endswith("/ chance"):
            ax.axhline(1.0, color="grey", ls=":", lw=1)
            ax.axhline(3.0, color="C3", ls=":", lw=1)
        ax.set_xlabel(setting), ax.set_ylabel(label)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- results (05)


def plot_scores(tables: dict, published: dict | None = None, title: str = ""):
    """Grouped bars, one panel per table (name -> DataFrame of scores, rows = models and baselines,
    numeric columns = metrics); a missing value is marked "n/a". ``published`` (name -> DataFrame
    with the same columns) adds the range of those numbers per metric as a grey band."""
    import matplotlib.pyplot as plt

    use_korean_font()
    fig, axes = plt.subplots(1, len(tables), figsize=(7.2 * len(tables), 4.4), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items()):
        metrics_ = [c for c in table.columns if table[c].dtype.kind == "f"]
        n = len(table)
        width = 0.8 / max(n, 1)
        model_colours = iter(plt.cm.tab10.colors)
        grey = iter(["#555555", "#8c8c8c", "#b5b5b5", "#d0d0d0", "#e2e2e2"] * 4)
        for i, (label, row) in enumerate(table.iterrows()):
            is_base = str(label).startswith("Baseline:")
            colour = next(grey) if is_base else next(model_colours)
            x = np.arange(len(metrics_)) - 0.4 + width * (i + 0.5)
            values = row[metrics_].to_numpy(dtype=float)
            ax.bar(x, np.nan_to_num(values), width, color=colour, label=label, hatch="//" if is_base else None,
                   edgecolor="white", linewidth=0.5)
            for xi, v in zip(x, values):
                if not np.isfinite(v):
                    ax.text(xi, 0, "n/a", rotation=90, ha="center", va="bottom", fontsize=6, color="#777777")
        if published is not None and name in published:
            for j, m in enumerate(metrics_):
                if m in published[name]:
                    lo, hi = published[name][m].min(), published[name][m].max()
                    ax.fill_between([j - 0.45, j + 0.45], lo, hi, color="k", alpha=0.12, lw=0,
                                    label="study 2019 range (other data)" if j == 0 else None)
        ax.set_xticks(np.arange(len(metrics_)), metrics_)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("score")
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def prediction_grid(items, cols: int = 4, width: int = 26):
    """Test images with reference vs generated text and true vs predicted hashtags.

    ``items``: dicts with ``image`` and any of ``category``, ``reference``, ``generated``,
    ``true_hashtags``, ``hashtags`` (as ``results.prediction_examples`` makes them). The predicted
    hashtags line says how many of them are true.
    """
    import matplotlib.pyplot as plt

    use_korean_font()
    items = list(items)
    rows = max(1, math.ceil(len(items) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.4, rows * 5.4))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, x in zip(np.ravel(axes), items):
        try:
            ax.imshow(open_image(x["image"], draft=(256, 256)))
        except (BadImage, OSError) as e:
            ax.text(0.5, 0.5, getattr(e, "reason", type(e).__name__), ha="center")
        lines = []
        if "reference" in x:
            lines += ["ref: " + s for s in textwrap.wrap(plain(x["reference"]), width - 5)[:2]]
        if "generated" in x:
            lines += ["gen: " + s for s in textwrap.wrap(plain(x["generated"]) or "(empty)", width - 5)[:2]]
        if "true_hashtags" in x:
            lines += textwrap.wrap("true: " + " ".join("#" + t for t in x["true_hashtags"]), width)[:2]
        if "hashtags" in x:
            hits = len(set(x["hashtags"]) & set(x.get("true_hashtags", [])))
            lines += textwrap.wrap(f"pred ({hits}/{len(x['hashtags'])} true): "
                                   + " ".join("#" + t for t in x["hashtags"]), width)[:3]
        ax.set_title("\n".join(lines), fontsize=7, loc="left", linespacing=1.35)
        if x.get("category"):
            ax.text(2, 10, x["category"], fontsize=7, color="w", bbox=dict(fc="k", alpha=0.5, lw=0))
    fig.tight_layout()
    return fig


def plot_history(run_path, save: bool = True):
    """Loss and validation-score curves of a run (``curves.png``)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    run_path = Path(run_path)
    h = pd.DataFrame(read_json(run_path / "history.json"))
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(h.epoch, h.train_ce, "o-", label="train")
    a.plot(h.epoch, h.val_loss, "o-", label="val (teacher-forced)")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy per token"), a.legend()
    name = next(n for n in ("val_cider", "val_bleu1", "val_f1") if n in h)
    label = {"val_cider": "val CIDEr-D", "val_bleu1": "val BLEU-1", "val_f1": "val F1"}[name]
    b.plot(h.epoch, h[name], "o-", color="C2")
    if "phase" in h and (h.phase == "scst").any():  # self-critical epochs follow the cross-entropy ones
        b.axvline(h.epoch[h.phase == "xe"].max() + 0.5, color="grey", ls=":", label="self-critical from here")
        b.legend()
    b.set_xlabel("epoch"), b.set_ylabel(label + " (greedy, free-running)")
    fig.suptitle(run_path.name)
    fig.tight_layout()
    if save:
        fig.savefig(run_path / "curves.png", dpi=110)
    return fig
