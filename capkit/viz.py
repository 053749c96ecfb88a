"""Figures: data exploration plots, image grids, attention maps.

All functions return a matplotlib Figure; :func:`save` writes it to ``figures_dir``. Korean
text renders with the NanumGothic font bundled in ``koreanize-matplotlib`` (no system fonts);
emoji, which that font lacks, are dropped from figure text only.
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

EMOJI_RE = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D\u2B50\u2764]+")


def use_korean_font() -> None:
    """Make matplotlib render Hangul (registers NanumGothic from koreanize-matplotlib)."""
    import matplotlib

    try:
        import koreanize_matplotlib  # noqa: F401  (registers the font on import)
    except ImportError:
        pass
    matplotlib.rcParams["axes.unicode_minus"] = False


def plain(text: str) -> str:
    """Figure-safe text: emoji removed, spaces folded."""
    return re.sub(r"\s+", " ", EMOJI_RE.sub("", text or "")).strip()


def save(fig, figures_dir, name: str, dpi: int = 110) -> Path:
    path = Path(figures_dir) / name
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

    from capkit.data import BadImage, open_image

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
        ax.set_title("\n".join(lines), fontsize=7, loc="left")
        ax.text(2, 10, r.category or "", fontsize=7, color="w", bbox=dict(fc="k", alpha=0.5, lw=0))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- attention


def attention_overlay(alpha, size: tuple[int, int], sigma: float = 0.0) -> np.ndarray:
    """One attention map ``[L]`` (a square grid) upsampled to ``size=(w, h)`` and smoothed, scaled to 0..1."""
    a = torch.as_tensor(alpha, dtype=torch.float32)
    g = int(round(math.sqrt(a.numel())))
    a = a.view(1, 1, g, g)
    w, h = size
    up = F.interpolate(a, size=(h, w), mode="bicubic", align_corners=False)
    sigma = sigma or max(w, h) / g / 2
    k = int(2 * round(2 * sigma) + 1)
    from torchvision.transforms.functional import gaussian_blur

    up = gaussian_blur(up, [k, k], [sigma, sigma])[0, 0].clamp(min=0)
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
    """Share of tokens (left) and distinct tokens (right) per part of speech, from `text.pos_distribution`;
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
    min_freq, one panel per vocabulary (name -> `text.vocab_coverage` table); `chosen` marks the min_freq used."""
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
