"""The scene oracle: posts written again, with fresh random draws, from the TRUE scene of manifest rows.

`oracle_posts()` writes a post again from the true scene of each manifest row, with a fresh random draw: what a
model that reads every scene fact right, but cannot know the writer's noise, writes when it samples like the
writer. `oracle_draws()` gives many such posts per scene, for estimating the best guess
(``oracles.oracle_best_predictions``). Both use `posts.write_post`, the writer of every post of the dataset.
`scene_facts()` lists each row's scene as facts (``SCENE_FACTS``): the input of a model that is told the scene
instead of reading it from the picture (``oracles.oracle_trained_predictions``). `written_record()` makes a
written post a record as the manifest loader makes one.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from capkit.data import LoadReport, Record, make_record
from capkit.sample.grammar import CATEGORIES, OBJECT_WORDS, SEASONS, TIMES, WEATHERS
from capkit.sample.posts import write_post

ORACLE_SALT = "capkit-oracle"  # never the prefix of make_post's seeds: an oracle post is never the original draw
# every fact a scene can hold, in a fixed order: its category, time, season, weather and the objects it shows
SCENE_FACTS = (*(f"category:{c}" for c in CATEGORIES), *(f"time:{t}" for t in TIMES),
               *(f"season:{s}" for s in SEASONS), *(f"weather:{w}" for w in (*WEATHERS, "snow")),
               *(f"object:{o}" for o in OBJECT_WORDS))


def oracle_posts(source, keys=None, seed: int = 0) -> dict:
    """Posts that the generator writes from each post's TRUE scene with a fresh random draw: what a model that reads
    the picture perfectly, but cannot know the writer's noise (wording, location tags, generic tags, emoji), writes.

    ``source``: a dataset folder (holding ``manifest.jsonl``), the manifest file itself, or its rows (dicts with
    ``key``, ``category`` and ``scene``). ``keys``: the posts wanted (default: every row). The text is
    :func:`write_post`'s, the function ``make_post`` writes every post with, drawn with a ``random.Random`` seeded
    from ``(ORACLE_SALT, seed, key)``: the same seed gives the same posts, and the draw is never the original's.

    Returns ``{key: {"text", "hashtags", "words", "category"}}`` (``words``: object label -> the word this draw used)
    for the wanted keys whose row has a usable scene; a key without one (absent, another dataset, an older manifest)
    is left out, so callers compare the keys they asked for with those they got.
    """
    out = {}
    for key, category, scene in _oracle_rows(source, keys):
        text, hashtags, words = write_post(category, scene, random.Random(f"{ORACLE_SALT}:{seed}:{key}"))
        out[key] = {"text": text, "hashtags": hashtags, "words": words, "category": category}
    return out


def oracle_draws(source, keys=None, seed: int = 0, n: int = 30) -> dict:
    """``n`` independent posts per post, each written from its TRUE scene like :func:`oracle_posts`'s single one:
    samples of the writer's distribution given the scene, from which a best guess (the tags most likely to be
    used, the most typical text) is estimated.

    Draw ``d`` of ``key`` uses a ``random.Random`` seeded from ``(ORACLE_SALT, seed, key, d)``: the same seed gives
    the same draws, a post's draws do not depend on the other keys nor on ``n`` (the first ``m`` of ``n`` draws are
    the ``m`` draws), and none is ``oracle_posts``'s draw or the original post's. ``source`` and ``keys`` as for
    :func:`oracle_posts`. Returns ``{key: [{"text", "hashtags", "words"}, ...]}`` (``n`` each), keys without a
    usable scene left out.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    out = {}
    for key, category, scene in _oracle_rows(source, keys):
        posts = []
        for d in range(n):
            text, hashtags, words = write_post(category, scene, random.Random(f"{ORACLE_SALT}:{seed}:{key}:{d}"))
            posts.append({"text": text, "hashtags": hashtags, "words": words})
        out[key] = posts
    return out


def scene_facts(source, keys=None) -> dict:
    """``{key: [facts]}``: each wanted row's TRUE scene as names of ``SCENE_FACTS`` (category, time, season,
    weather, then each object it shows once, in the scene's order). ``source`` and ``keys`` as for
    :func:`oracle_posts`; keys without a usable scene are left out."""
    out = {}
    for key, category, scene in _oracle_rows(source, keys):
        out[key] = [f"category:{category}", f"time:{scene['time']}", f"season:{scene['season']}",
                    f"weather:{scene['weather']}", *(f"object:{o}" for o in dict.fromkeys(scene["objects"]))]
    return out


def written_record(record: Record, texts: list[str], hashtags: list[str]) -> Record:
    """What the writer wrote again for ``record`` (its key, image, category and split) as a record, its texts
    cleaned and its hashtags normalised as ``data.load_manifest`` makes a record; one without texts or hashtags
    when nothing usable is left."""
    made = make_record(LoadReport(source="oracle"), f"oracle#{record.key}", key=record.key, image=record.image,
                       texts=texts, hashtags=hashtags, category=record.category, split=record.split)
    return made or Record(key=record.key, image=record.image, category=record.category, split=record.split)


def _oracle_rows(source, keys) -> list:
    """(key, category, scene) of each wanted manifest row that has a usable scene, in the order of ``keys``."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        path = path / "manifest.jsonl" if path.is_dir() else path
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        rows = list(source)
    by_key = {str(r.get("key")): r for r in rows if isinstance(r, dict)}
    wanted = list(by_key) if keys is None else [str(k) for k in keys]
    out = []
    for key in wanted:
        row = by_key.get(key)
        scene = _scene_of(row) if row is not None else None
        if scene is not None:
            out.append((key, row["category"], scene))
    return out


def _scene_of(row) -> dict | None:
    """The scene a manifest row was written from, checked; None when the row has none usable."""
    scene, category = row.get("scene"), row.get("category")
    if category not in CATEGORIES or not isinstance(scene, dict):
        return None
    objects = scene.get("objects")
    if (scene.get("time") not in TIMES or scene.get("season") not in SEASONS
            or scene.get("weather") not in (*WEATHERS, "snow") or not isinstance(objects, list)
            or any(o not in OBJECT_WORDS for o in objects)):
        return None
    return {"time": scene["time"], "season": scene["season"], "weather": scene["weather"], "objects": list(objects)}
