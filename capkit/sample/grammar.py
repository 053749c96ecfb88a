"""The scene grammar: what a post can show, and the draw of one post's scene.

A scene is a category's landmark (`CATEGORIES`), a time of day (`TIMES`), a season (`SEASONS`), a weather
(`WEATHERS`, plus ``snow``: rain in winter) and zero to three objects (labels of `OBJECT_WORDS`, drawn with the
category's weights in `CATEGORY_OBJECTS`). `sample_scene` draws one; the renderer paints it and the post writer
writes about it. `OBJECT_WORDS` also gives every Korean word the texts use for an object (the pointing game's
vocabulary). `pick` is the weighted choice the grammar and the writer draw with.
"""

from __future__ import annotations

CATEGORIES = ("amusement_park", "palace", "park", "tower", "restaurant", "beach", "cave", "island", "lake",
              "mountain", "people")
TIMES = {"day": 0.5, "sunset": 0.25, "night": 0.25}
SEASONS = {"spring": 1, "summer": 1, "autumn": 1, "winter": 1}  # spring = cherry blossom, winter = snow
WEATHERS = {"clear": 0.45, "cloudy": 0.25, "rain": 0.15, "fog": 0.15}  # in winter rain falls as "snow"

# object label -> every Korean word the texts use for it (each one Okt token in the generated sentences)
OBJECT_WORDS = {
    "person": ("친구", "남친", "여친", "동생"),
    "dog": ("강아지", "반려견", "멍뭉이"),
    "cat": ("고양이", "길고양이"),
    "boat": ("보트", "요트", "배"),
    "bird": ("갈매기", "새", "비둘기"),
    "balloon": ("풍선",),
    "coffee": ("커피", "아메리카노", "라떼"),
    "bicycle": ("자전거",),
    "car": ("자동차",),
    "ice_cream": ("아이스크림",),
    "umbrella": ("우산",),
    "cake": ("케이크", "케익"),
    "snowman": ("눈사람",),
}

# how plausible each object is per category (relative weights)
CATEGORY_OBJECTS = {
    "beach": {"person": 3, "dog": 2, "boat": 2, "bird": 2, "umbrella": 1, "ice_cream": 1, "balloon": 0.5},
    "palace": {"person": 3, "bird": 1.5, "umbrella": 1, "cat": 1, "balloon": 0.5, "coffee": 1, "ice_cream": 0.5},
    "park": {"person": 2, "dog": 2, "cat": 1, "bird": 1.5, "balloon": 1, "coffee": 1, "bicycle": 1.5,
             "ice_cream": 1, "umbrella": 0.5, "snowman": 1.5},
    "tower": {"person": 2, "bird": 1, "balloon": 1.5, "car": 1.5, "coffee": 1, "umbrella": 0.5},
    "restaurant": {"coffee": 3, "cake": 2, "ice_cream": 1, "person": 1.5, "cat": 0.5},
    "cave": {"person": 3, "dog": 1, "bird": 1},
    "island": {"boat": 3, "bird": 2, "person": 1},
    "lake": {"boat": 2.5, "bird": 2, "person": 1.5, "dog": 1, "bicycle": 1},
    "mountain": {"person": 3, "dog": 1.5, "bird": 2, "snowman": 1.5},
    "amusement_park": {"balloon": 3, "person": 2, "ice_cream": 1.5, "coffee": 0.5, "bird": 0.5},
    "people": {"coffee": 2.5, "ice_cream": 1.5, "dog": 1, "cat": 1, "balloon": 1, "umbrella": 0.5},
}
N_OBJECTS = {0: 0.15, 1: 0.4, 2: 0.3, 3: 0.15}


def sample_scene(category, rng):
    """Draw time, season, weather and object labels for one post."""
    season = pick(rng, SEASONS)
    weather = pick(rng, WEATHERS)
    if season == "winter" and weather == "rain":
        weather = "snow"
    weights = dict(CATEGORY_OBJECTS[category])
    if season != "winter":
        weights.pop("snowman", None)
    if "umbrella" in weights and weather in ("rain", "snow"):
        weights["umbrella"] *= 5
    if "ice_cream" in weights and season == "winter":
        weights["ice_cream"] *= 0.3
    n = pick(rng, N_OBJECTS)
    objects = [pick(rng, weights) for _ in range(n)]
    return {"time": pick(rng, TIMES), "season": season, "weather": weather, "objects": objects}


def pick(rng, weights):
    """Weighted choice from a dict key -> weight."""
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]
