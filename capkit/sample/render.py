"""The renderer: one scene painted with PIL as a phone photo, with the box of every object drawn.

`render` paints the sky of the scene's time and weather, the category's landmark (which says where objects
may stand: ground, water, table, sky), the objects (far first, each returning its box) and the weather over
everything, at twice the size, then shrinks it; `finish_photo` adds a camera filter and sensor noise. Below
them: the sky and scenery, the landmarks, the objects' placing, the weather. The `Pen` (colours under the
scene's light) is :mod:`capkit.sample.pen`'s; the objects, :mod:`capkit.sample.objects`'.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from capkit.sample.objects import OBJECTS
from capkit.sample.pen import GROUND, LEAF, Pen, SKY_LOW, SKY_TOP, VIVID, WEATHER_GREY, light_glow, mix


def render(category, scene, rng, size):
    """Paint one scene; returns (RGB image of size x size, [(label, box in pixels of that image)])."""
    ss = 2  # draw at twice the size and shrink: smooth edges
    W = size * ss
    img = Image.new("RGB", (W, W))
    draw, (h0, h1) = LANDMARKS[category]
    pen = Pen(img, scene)
    pen.category = category
    pen.hz = rng.uniform(h0, h1) * W
    draw_sky(img, scene, pen.hz, rng)
    regions = draw(pen, scene, rng)
    objects = place_objects(pen, scene["objects"], regions, rng)
    if category not in ("restaurant", "cave"):
        weather_fx(pen, scene, rng)
    img = img.reduce(ss)
    return img, [(label, tuple(v / ss for v in box)) for label, box in objects]


def finish_photo(img, nprng):
    """Camera look: a random filter (warm, cool, faded, vivid or none) and sensor noise."""
    a = np.asarray(img, dtype=np.float32)
    f = nprng.integers(0, 5)
    if f == 1:
        a = a * np.array([1.06, 1.0, 0.9], np.float32)
    elif f == 2:
        a = a * np.array([0.92, 1.0, 1.07], np.float32)
    elif f == 3:
        a = a * 0.85 + 30
    elif f == 4:
        m = a.mean(axis=2, keepdims=True)
        a = m + (a - m) * 1.2
    a = a + nprng.standard_normal(a.shape, dtype=np.float32) * 3.0
    return Image.fromarray(np.clip(a, 0, 255, out=a).astype(np.uint8))


# ----------------------------------------------------------------------------------------------- sky and scenery
def draw_sky(img, scene, horizon, rng):
    """Fill the image with the sky of the scene's time and weather, with sun, moon, stars and clouds."""
    W = img.width
    top, low = np.array(SKY_TOP[scene["time"]], float), np.array(SKY_LOW[scene["time"]], float)
    grey, amount = WEATHER_GREY[scene["weather"]]
    if grey is not None:
        g = np.array(grey, float) * (0.45 if scene["time"] == "night" else 0.85 if scene["time"] == "sunset" else 1)
        top, low = top + (g - top) * amount, low + (g - low) * amount * 0.85
    t = np.clip(np.arange(W) / max(horizon, 1), 0, 1)[:, None]
    col = top * (1 - t) + low * t
    if scene["time"] == "sunset" and grey is None:
        glow = np.exp(-((1 - t) ** 2) / 0.05)
        col = col + (np.array([255, 205, 120.0]) - col) * glow * 0.6
    img.paste(Image.fromarray(np.repeat(col.clip(0, 255).astype(np.uint8)[:, None, :], W, axis=1)))
    d = ImageDraw.Draw(img)
    clear = scene["weather"] == "clear"
    if scene["time"] == "night" and clear:
        for _ in range(rng.randint(40, 90)):
            x, y, r = rng.uniform(0, W), rng.uniform(0, horizon * 0.9), rng.choice((0.6, 0.8, 1.2)) * W / 448
            d.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 235))
    if scene["time"] == "night" and (clear or rng.random() < 0.3):
        x, y, r = rng.uniform(0.15, 0.85) * W, rng.uniform(0.08, 0.22) * W, rng.uniform(0.03, 0.045) * W
        d.ellipse((x - r, y - r, x + r, y + r), fill=(250, 245, 215))
        if rng.random() < 0.6:
            o = r * 0.55
            sky = tuple(int(v) for v in col[int(min(y, W - 1))])
            d.ellipse((x - r + o, y - r - o * 0.3, x + r + o, y + r - o * 0.3), fill=sky)
    elif scene["time"] == "sunset" and scene["weather"] in ("clear", "cloudy"):
        x, y, r = rng.uniform(0.2, 0.8) * W, horizon - rng.uniform(0.0, 0.08) * W, rng.uniform(0.06, 0.09) * W
        d.ellipse((x - r, y - r, x + r, y + r), fill=(255, 150, 70))
    elif scene["time"] == "day" and clear and rng.random() < 0.6:
        x, y, r = rng.uniform(0.1, 0.9) * W, rng.uniform(0.06, 0.2) * W, 0.035 * W
        d.ellipse((x - r * 1.8, y - r * 1.8, x + r * 1.8, y + r * 1.8), fill=(230, 240, 250))
        d.ellipse((x - r, y - r, x + r, y + r), fill=(255, 252, 225))
    n = {"clear": rng.randint(0, 2), "cloudy": rng.randint(4, 7), "rain": rng.randint(5, 8),
         "fog": 0, "snow": rng.randint(3, 6)}[scene["weather"]]
    base = {"day": (245, 247, 250), "sunset": (240, 180, 170), "night": (70, 72, 85)}[scene["time"]]
    if scene["weather"] in ("rain", "snow"):
        base = mix(base, (90, 95, 105), 0.5)
    for _ in range(n):
        cx, cy, s = rng.uniform(0, W), rng.uniform(0.03, 0.75) * horizon, rng.uniform(0.05, 0.1) * W
        shade = mix(base, (120, 125, 135), rng.uniform(0, 0.35))
        for _ in range(5):
            ox, oy, rr = rng.uniform(-1.6, 1.6) * s, rng.uniform(-0.4, 0.3) * s, rng.uniform(0.5, 0.9) * s
            d.ellipse((cx + ox - rr * 1.3, cy + oy - rr * 0.7, cx + ox + rr * 1.3, cy + oy + rr * 0.7), fill=shade)


def tree(pen, x, yb, h, season, rng, pine=False):
    """A tree whose crown shows the season (pink blossom, green, red/yellow leaves, bare with snow)."""
    trunk = (95, 65, 40)
    if pine:
        pen.rect((x - h * 0.04, yb - h * 0.25, x + h * 0.04, yb), trunk)
        for i in range(3):
            y0, w = yb - h * (0.2 + 0.27 * i), h * (0.36 - 0.09 * i)
            pen.poly([(x - w, y0), (x + w, y0), (x, y0 - h * 0.42)], (30, 90, 55))
            if season == "winter":
                pen.poly([(x - w * 0.4, y0 - h * 0.25), (x + w * 0.4, y0 - h * 0.25), (x, y0 - h * 0.42)],
                         (240, 243, 248))
        return
    pen.poly([(x - h * 0.05, yb), (x + h * 0.05, yb), (x + h * 0.03, yb - h * 0.5), (x - h * 0.03, yb - h * 0.5)],
             trunk)
    cy = yb - h * 0.64
    if season == "winter":
        for _ in range(6):
            a = rng.uniform(-2.6, -0.5)
            pen.line([(x, yb - h * 0.45), (x + math.cos(a) * h * 0.33, cy + math.sin(a) * h * 0.25)], trunk, h * 0.03)
        for _ in range(5):
            pen.ell((x + rng.uniform(-0.3, 0.2) * h, cy + rng.uniform(-0.25, 0.0) * h, x + rng.uniform(0.22, 0.32) * h,
                     cy + rng.uniform(0.02, 0.05) * h), (240, 243, 248))
        return
    for _ in range(6):
        r = rng.uniform(0.16, 0.24) * h
        pen.circ(x + rng.uniform(-0.2, 0.2) * h, cy + rng.uniform(-0.15, 0.12) * h, r, rng.choice(LEAF[season]))


def ground_band(pen, y0, season, rng, colour=None):
    """Fill from y0 to the bottom with season ground and a few tufts."""
    W = pen.W
    col = colour or GROUND[season]
    pen.rect((0, y0, W, W), col)
    for _ in range(12):
        x, y = rng.uniform(0, W), rng.uniform(y0, W)
        pen.ell((x - W * 0.04, y - W * 0.006, x + W * 0.04, y + W * 0.006), mix(col, (0, 0, 0), 0.1))


def side_trees(pen, scene, rng, yb, n, scale=0.35):
    """A few trees near the left and right edges."""
    W = pen.W
    for i in range(n):
        x = (rng.uniform(-0.02, 0.18) if i % 2 == 0 else rng.uniform(0.82, 1.02)) * W
        tree(pen, x, yb + rng.uniform(0, 0.04) * W, rng.uniform(0.8, 1.2) * scale * W, scene["season"], rng,
             pine=i > 0 and rng.random() < 0.2)  # the first tree always shows the season


def treeline(pen, y, season, rng, colour_dark=0.25, scale=1.0):
    """A row of small crowns along a horizon."""
    W = pen.W
    x = -W * 0.02
    while x < W * 1.02:
        r = rng.uniform(0.025, 0.045) * W * scale
        col = mix(rng.choice(LEAF[season]), (20, 40, 20), colour_dark)
        if season == "winter":
            col = rng.choice([(225, 230, 238), (120, 110, 100)])
        pen.circ(x, y - r * 0.6, r, col)
        x += r * 1.2


# --- landmarks: each draws its category over the sky and returns the regions where objects may stand:
# name -> (x0, x1, y0, y1) in pixels, the band of allowed base points (bottom-centre; centre for the sky)

def draw_beach(pen, scene, rng):
    W = pen.W
    hz, shore = pen.hz, pen.hz + rng.uniform(0.16, 0.26) * W
    pen.rect((0, hz, W, shore), (40, 110, 180))
    pen.rect((0, hz, W, hz + 0.02 * W), (30, 85, 150))
    for _ in range(14):
        x, y = rng.uniform(0, W), rng.uniform(hz + 0.03 * W, shore - 0.02 * W)
        pen.line([(x, y), (x + rng.uniform(0.05, 0.12) * W, y)], (150, 200, 230), W * 0.005)
    sand = (232, 212, 165) if scene["season"] != "winter" else (228, 226, 222)
    pts = [(0, W)] + [(x, shore + math.sin(x / W * 9 + rng.random()) * 0.01 * W) for x in np.linspace(0, W, 12)]
    pen.poly(pts + [(W, W)], sand)
    pen.line(pts[1:], (245, 250, 255), W * 0.012)
    if scene["season"] == "winter":
        for _ in range(10):
            x, y = rng.uniform(0, W), rng.uniform(shore, W)
            pen.ell((x - W * 0.06, y - W * 0.012, x + W * 0.06, y + W * 0.012), (245, 247, 250))
    side_trees(pen, scene, rng, shore + 0.08 * W, rng.choice((1, 1, 2)), 0.42)
    return {"ground": (0.08 * W, 0.92 * W, shore + 0.06 * W, 0.98 * W), "water": (0.1 * W, 0.9 * W, hz + 0.05 * W,
            shore - 0.01 * W), "sky": (0.1 * W, 0.9 * W, 0.08 * W, hz - 0.12 * W)}


def draw_palace(pen, scene, rng):
    W, hz = pen.W, pen.hz
    snow = scene["season"] == "winter"
    if rng.random() < 0.6:  # a mountain behind the palace
        px = rng.uniform(0.2, 0.8) * W
        pen.poly([(px - 0.6 * W, hz), (px, hz - rng.uniform(0.18, 0.28) * W), (px + 0.6 * W, hz)], (90, 110, 105))
    ground_band(pen, hz, scene["season"], rng, (235, 238, 244) if snow else (200, 188, 165))
    cx, bw = rng.uniform(0.38, 0.62) * W, rng.uniform(0.5, 0.72) * W
    base_top, k = hz - 0.05 * W, (0.35 if scene["time"] == "night" else 1.0)
    pen.rect((cx - bw / 2 - 0.03 * W, base_top, cx + bw / 2 + 0.03 * W, hz), (175, 170, 160), k)
    body_top = base_top - rng.uniform(0.12, 0.17) * W
    pen.rect((cx - bw / 2, body_top, cx + bw / 2, base_top), (215, 195, 150), k)
    for i in range(6):
        x = cx - bw / 2 + bw * i / 5
        pen.rect((x - 0.012 * W, body_top, x + 0.012 * W, base_top), (165, 40, 35), k)
    if rng.random() < 0.5:  # a gate: arched doors in the stone base
        for i in (-1, 0, 1):
            x = cx + i * bw * 0.28
            pen.rect((x - 0.04 * W, body_top + 0.05 * W, x + 0.04 * W, base_top), (110, 40, 30), k)
    pen.rect((cx - bw / 2, body_top - 0.03 * W, cx + bw / 2, body_top), (45, 125, 105), k)
    for i in range(10):
        x = cx - bw / 2 + bw * (i + 0.5) / 10
        pen.circ(x, body_top - 0.015 * W, 0.006 * W, (230, 80, 60) if i % 2 else (240, 200, 80), k)
    rw, up, ry = bw * 1.3, 0.05 * W, body_top - rng.uniform(0.09, 0.13) * W
    eave = body_top - 0.025 * W
    lower = [(cx - rw / 2, eave - up)] + [(cx + rw / 2 * t, eave - up * abs(t) ** 3) for t in np.linspace(-0.9, 0.9, 9)]
    roof = lower + [(cx + rw / 2, eave - up), (cx + rw * 0.33, ry), (cx - rw * 0.33, ry)]
    pen.poly(roof, (68, 68, 74), k)
    pen.line([(cx - rw * 0.35, ry), (cx + rw * 0.35, ry)], (40, 40, 45), 0.018 * W, k)
    if snow:
        pen.poly([(cx - rw * 0.33, ry), (cx + rw * 0.33, ry), (cx + rw * 0.4, ry + 0.03 * W),
                  (cx - rw * 0.4, ry + 0.03 * W)], (240, 243, 248), k)
    if scene["time"] == "night":
        for i in range(5):
            x = cx - bw / 2 + bw * (i + 0.5) / 5
            light_glow(pen, x, base_top - 0.04 * W, 0.012 * W, (255, 200, 110))
    side_trees(pen, scene, rng, hz + 0.03 * W, rng.choice((1, 2, 2)), 0.4)
    return {"ground": (0.05 * W, 0.95 * W, hz + 0.1 * W, 0.98 * W), "sky": (0.1 * W, 0.9 * W, 0.07 * W, ry - 0.05 * W)}


def draw_park(pen, scene, rng):
    W, hz = pen.W, pen.hz
    treeline(pen, hz + 0.01 * W, scene["season"], rng)
    ground_band(pen, hz, scene["season"], rng)
    x0 = rng.uniform(0.3, 0.7) * W
    pen.poly([(x0 - 0.02 * W, hz), (x0 + 0.02 * W, hz), (x0 + 0.3 * W, W), (x0 - 0.25 * W, W)],
             (205, 190, 160) if scene["season"] != "winter" else (215, 215, 215))
    side_trees(pen, scene, rng, hz + 0.18 * W, rng.choice((2, 3, 4)), 0.5)
    bx, by = rng.uniform(0.1, 0.7) * W, hz + rng.uniform(0.06, 0.12) * W
    pen.rect((bx, by - 0.07 * W, bx + 0.2 * W, by - 0.055 * W), (125, 80, 45))
    pen.rect((bx, by - 0.04 * W, bx + 0.2 * W, by - 0.025 * W), (125, 80, 45))
    for lx in (bx + 0.02 * W, bx + 0.17 * W):
        pen.rect((lx, by - 0.025 * W, lx + 0.01 * W, by), (50, 50, 50))
    lx = rng.uniform(0.05, 0.95) * W
    pen.rect((lx - 0.006 * W, hz - 0.2 * W, lx + 0.006 * W, hz + 0.08 * W), (45, 45, 50))
    if scene["time"] == "night":
        light_glow(pen, lx, hz - 0.21 * W, 0.015 * W, (255, 225, 150))
    else:
        pen.circ(lx, hz - 0.21 * W, 0.014 * W, (235, 235, 220))
    return {"ground": (0.05 * W, 0.95 * W, hz + 0.12 * W, 0.98 * W), "sky": (0.1 * W, 0.9 * W, 0.07 * W, hz - 0.15 * W)}


def draw_tower(pen, scene, rng):
    W, hz = pen.W, pen.hz
    night = scene["time"] == "night"
    x = 0.0
    while x < W:  # city skyline
        bw, bh = rng.uniform(0.04, 0.09) * W, rng.uniform(0.05, 0.16) * W
        pen.rect((x, hz - bh, x + bw, hz), mix((105, 115, 135), (60, 65, 80), rng.random()))
        if night:
            for _ in range(int(bh / W * 40)):
                wx, wy = x + rng.uniform(0.1, 0.8) * bw, hz - rng.uniform(0.1, 0.9) * bh
                pen.rect((wx, wy, wx + 0.008 * W, wy + 0.008 * W), (255, 220, 130), k=0)
        x += bw
    cx, top = rng.uniform(0.35, 0.65) * W, hz - rng.uniform(0.16, 0.22) * W
    hill = GROUND[scene["season"]]
    pen.ell((cx - 0.45 * W, top, cx + 0.45 * W, hz + 0.35 * W), mix(hill, (0, 0, 0), 0.2))
    for _ in range(14):
        a = rng.uniform(math.pi * 1.05, math.pi * 1.95)
        pen.circ(cx + math.cos(a) * 0.38 * W, hz + 0.06 * W + math.sin(a) * (hz + 0.06 * W - top) * 0.85,
                 0.025 * W, rng.choice(LEAF[scene["season"]]))
    k = 0.3 if night else 1.0
    body = (225, 225, 230) if not night else (120, 160, 255)
    pen.poly([(cx - 0.025 * W, top + 0.01 * W), (cx + 0.025 * W, top + 0.01 * W), (cx + 0.014 * W, top - 0.3 * W),
              (cx - 0.014 * W, top - 0.3 * W)], body, k)
    py = top - rng.uniform(0.3, 0.34) * W
    pen.rect((cx - 0.06 * W, py, cx + 0.06 * W, py + 0.05 * W), (215, 215, 220), k)
    pen.rect((cx - 0.05 * W, py - 0.02 * W, cx + 0.05 * W, py), (190, 190, 200), k)
    pen.rect((cx - 0.006 * W, py - 0.12 * W, cx + 0.006 * W, py - 0.02 * W), (200, 60, 60), k)
    if night:
        for i in range(6):
            pen.rect((cx - 0.05 * W + i * 0.018 * W, py + 0.015 * W, cx - 0.04 * W + i * 0.018 * W, py + 0.03 * W),
                     (255, 230, 140), k=0)
    plaza = hz + rng.uniform(0.1, 0.14) * W
    pen.rect((0, plaza, W, W), (180, 175, 168) if scene["season"] != "winter" else (230, 233, 238))
    pen.line([(0, plaza), (W, plaza)], (90, 90, 95), 0.01 * W)
    return {"ground": (0.05 * W, 0.95 * W, plaza + 0.08 * W, 0.98 * W), "sky": (0.08 * W, 0.92 * W, 0.07 * W,
            hz - 0.3 * W)}


def outside_view(pen, scene, rng, y, scale=0.5):
    """Ground and a tree seen through a window or a cave mouth."""
    ground_band(pen, y, scene["season"], rng)
    tree(pen, rng.uniform(0.25, 0.75) * pen.W, y + 0.03 * pen.W, scale * pen.W, scene["season"], rng)
    weather_fx(pen, scene, rng)


def draw_restaurant(pen, scene, rng):
    W = pen.W
    wx0, wy0 = rng.uniform(0.06, 0.4) * W, rng.uniform(0.05, 0.1) * W
    wx1, wy1 = wx0 + rng.uniform(0.38, 0.5) * W, wy0 + rng.uniform(0.32, 0.4) * W
    outside_view(pen, scene, rng, wy1 - 0.1 * W, 0.3)
    pen.tint, saved = tuple(0.75 + 0.25 * t for t in pen.tint), pen.tint  # lamps light the room
    wall = rng.choice([(225, 205, 175), (238, 232, 222), (170, 120, 85), (200, 215, 205)])
    for box in ((0, 0, W, wy0), (0, wy1, W, W), (0, wy0, wx0, wy1), (wx1, wy0, W, wy1)):
        pen.rect(box, wall)
    frame = (90, 60, 40)
    for box in ((wx0, wy0, wx1, wy0 + 0.012 * W), (wx0, wy1 - 0.012 * W, wx1, wy1), (wx0, wy0, wx0 + 0.012 * W, wy1),
                (wx1 - 0.012 * W, wy0, wx1, wy1), ((wx0 + wx1) / 2 - 0.006 * W, wy0, (wx0 + wx1) / 2 + 0.006 * W, wy1)):
        pen.rect(box, frame)
    spots = [x for x in (wx0 / 2, (wx1 + W) / 2) if x > 0.06 * W and x < 0.94 * W] or [(wx0 + wx1) / 2]
    for lx in rng.sample(spots, rng.randint(1, len(spots))):
        pen.line([(lx, 0), (lx, 0.12 * W)], (40, 40, 40), 0.006 * W)
        pen.poly([(lx - 0.05 * W, 0.18 * W), (lx + 0.05 * W, 0.18 * W), (lx + 0.02 * W, 0.12 * W),
                  (lx - 0.02 * W, 0.12 * W)], (40, 40, 45))
        light_glow(pen, lx, 0.19 * W, 0.02 * W, (255, 225, 150))
    ty = rng.uniform(0.55, 0.62) * W
    table = rng.choice([(150, 100, 60), (225, 225, 220), (110, 75, 50)])
    pen.rect((0, ty, W, W), table)
    pen.rect((0, ty, W, ty + 0.015 * W), mix(table, (0, 0, 0), 0.2))
    taken = []
    for _ in range(rng.randint(1, 2)):  # plates of food are part of the place, not objects
        px, py, r = rng.uniform(0.15, 0.85) * W, rng.uniform(ty + 0.12 * W, 0.9 * W), rng.uniform(0.1, 0.14) * W
        pen.ell((px - r, py - r * 0.55, px + r, py + r * 0.55), (248, 248, 245))
        food = rng.choice([(235, 200, 110), (120, 60, 40), (90, 160, 70), (210, 80, 50)])
        for _ in range(6):
            fx, fy = px + rng.uniform(-0.5, 0.5) * r, py + rng.uniform(-0.25, 0.25) * r
            pen.circ(fx, fy, r * 0.22, mix(food, (255, 255, 255), rng.uniform(0, 0.3)))
        taken.append((px - r, py - r * 0.55, px + r, py + r * 0.55))
    pen.tint = saved
    pen.taken = taken
    table = (0.1 * W, 0.9 * W, ty + 0.14 * W, 0.97 * W)
    return {"table": table, "ground": table, "seat": (0.15 * W, 0.85 * W, ty + 0.01 * W,
            ty + 0.02 * W), "sky": (0.25 * W, 0.75 * W, 0.25 * W, 0.35 * W)}


def draw_cave(pen, scene, rng):
    W = pen.W
    outside_view(pen, scene, rng, pen.hz, 0.45)
    cx, cy = rng.uniform(0.38, 0.62) * W, rng.uniform(0.38, 0.48) * W
    rx, ry = rng.uniform(0.26, 0.34) * W, rng.uniform(0.27, 0.35) * W
    mask = Image.new("L", (W, W), 255)
    md = ImageDraw.Draw(mask)
    pts = []
    for i in range(24):
        a = 2 * math.pi * i / 24
        j = rng.uniform(0.88, 1.08)
        pts.append((cx + math.cos(a) * rx * j, cy + math.sin(a) * ry * j * (1.15 if math.sin(a) > 0 else 1)))
    md.polygon(pts, fill=0)
    rock = Image.new("RGB", (W, W), (62, 52, 46))
    rd = ImageDraw.Draw(rock)
    for _ in range(40):
        x, y, r = rng.uniform(0, W), rng.uniform(0, W), rng.uniform(0.03, 0.09) * W
        rd.ellipse((x - r, y - r * 0.7, x + r, y + r * 0.7), fill=mix((62, 52, 46), rng.choice(
            [(30, 25, 22), (110, 95, 80)]), rng.uniform(0.2, 0.5)))
    for _ in range(rng.randint(2, 4)):  # coloured show lights
        x, y, r = rng.choice((rng.uniform(0, 0.2), rng.uniform(0.8, 1.0))) * W, rng.uniform(0.2, 0.9) * W, 0.12 * W
        col = rng.choice([(150, 70, 200), (60, 150, 220), (60, 190, 120), (230, 160, 60)])
        rd.ellipse((x - r, y - r, x + r, y + r), fill=mix((62, 52, 46), col, 0.45))
        rd.ellipse((x - r * 0.5, y - r * 0.5, x + r * 0.5, y + r * 0.5), fill=mix((62, 52, 46), col, 0.75))
    for i in range(rng.randint(4, 8)):  # stalactites along the top of the mouth
        x, w, h = cx + rng.uniform(-0.8, 0.8) * rx, rng.uniform(0.015, 0.03) * W, rng.uniform(0.05, 0.12) * W
        y = cy - ry * math.sqrt(max(0.0, 1 - ((x - cx) / rx) ** 2)) - 0.02 * W
        rd.polygon([(x - w, y), (x + w, y), (x, y + h)], fill=(80, 68, 58))
        md.polygon([(x - w, y), (x + w, y), (x, y + h)], fill=255)
    floor = cy + ry * 0.75
    rd.rectangle((0, floor, W, W), fill=(96, 84, 72))
    md.rectangle((0, floor, W, W), fill=255)
    pen.img.paste(rock, (0, 0), mask)
    return {"ground": (0.1 * W, 0.9 * W, floor + 0.05 * W, 0.98 * W), "sky": (cx - rx * 0.6, cx + rx * 0.6,
            cy - ry * 0.5, cy - ry * 0.1)}


def draw_island(pen, scene, rng):
    W, hz = pen.W, pen.hz
    pen.rect((0, hz, W, W), (32, 95, 160))
    for i in range(8):
        y = hz + (W - hz) * i / 8
        pen.rect((0, y, W, y + (W - hz) / 8 + 1), mix((32, 95, 160), (40, 170, 175), i / 8))
    for n in range(3 if rng.random() < 0.6 else 1):
        ix, iw, ih = rng.uniform(0.2, 0.8) * W, rng.uniform(0.25, 0.5) * W, rng.uniform(0.1, 0.22) * W
        if n > 0:  # smaller islets
            iw, ih = iw * 0.4, ih * 0.4
        base = hz + rng.uniform(0.01, 0.05) * W
        pts = [(ix - iw / 2, base)] + [(ix + iw / 2 * t, base - ih * (1 - t * t) ** 0.6 * rng.uniform(0.9, 1.05))
                                       for t in np.linspace(-0.9, 0.9, 10)] + [(ix + iw / 2, base)]
        pen.poly(pts, mix(GROUND[scene["season"]], (0, 0, 0), 0.25))
        pen.rect((ix - iw / 2, base - 0.015 * W, ix + iw / 2, base), (120, 100, 80))
        for _ in range(int(iw / W * 25)):
            t = rng.uniform(-0.8, 0.8)
            pen.circ(ix + iw / 2 * t, base - ih * (1 - t * t) ** 0.6 * rng.uniform(0.3, 0.9), 0.02 * W,
                     rng.choice(LEAF[scene["season"]]))
        if n == 0 and rng.random() < 0.5:  # a lighthouse
            lx, ly = ix + iw * rng.uniform(-0.3, 0.3), base - ih * 0.5
            pen.rect((lx - 0.012 * W, ly - 0.11 * W, lx + 0.012 * W, ly), (245, 245, 245))
            pen.rect((lx - 0.016 * W, ly - 0.13 * W, lx + 0.016 * W, ly - 0.11 * W), (200, 40, 40))
            if scene["time"] == "night":
                light_glow(pen, lx, ly - 0.12 * W, 0.012 * W, (255, 240, 170))
    for _ in range(12):
        x, y = rng.uniform(0, W), rng.uniform(hz + 0.1 * W, W)
        pen.line([(x, y), (x + rng.uniform(0.04, 0.1) * W, y)], (150, 210, 225), W * 0.005)
    bottom = 0.97 * W
    if "person" in scene["objects"] or rng.random() < 0.3:  # a rocky shore in front
        bottom = rng.uniform(0.84, 0.88) * W
        pts = [(x, bottom + rng.uniform(-0.015, 0.015) * W) for x in np.linspace(0, W, 10)]
        pen.poly([(0, W)] + pts + [(W, W)], (150, 130, 105) if scene["season"] != "winter" else (230, 233, 240))
    return {"water": (0.1 * W, 0.9 * W, hz + 0.14 * W, bottom - 0.02 * W), "sky": (0.08 * W, 0.92 * W, 0.07 * W,
            hz - 0.2 * W), "ground": (0.1 * W, 0.9 * W, bottom + 0.06 * W, 0.98 * W)}


def draw_lake(pen, scene, rng):
    W, hz = pen.W, pen.hz
    hills = mix(GROUND[scene["season"]], (40, 60, 70), 0.45)
    pen.ell((-0.3 * W, hz - 0.12 * W, 0.6 * W, hz + 0.1 * W), hills)
    pen.ell((0.3 * W, hz - 0.09 * W, 1.3 * W, hz + 0.1 * W), hills)
    treeline(pen, hz, scene["season"], rng, 0.15, 1.2)
    near = rng.uniform(0.78, 0.86) * W
    sky_low = pen.c(SKY_LOW[scene["time"]]) if scene["weather"] == "clear" else pen.c((150, 155, 165))
    water = mix(sky_low, (30, 70, 100), 0.45)
    pen.rect((0, hz, W, near), water, k=0)
    depth = int(min(near - hz, hz))
    reflect = pen.img.crop((0, int(hz) - depth, W, int(hz))).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    pen.img.paste(Image.blend(reflect, Image.new("RGB", reflect.size, water), 0.55), (0, int(hz)))
    for _ in range(16):
        x, y = rng.uniform(0, W), rng.uniform(hz + 0.01 * W, near)
        pen.line([(x, y), (x + rng.uniform(0.05, 0.15) * W, y)], mix(water, (255, 255, 255), 0.35), W * 0.004, k=0)
    ground_band(pen, near, scene["season"], rng)
    side_trees(pen, scene, rng, near + 0.06 * W, rng.choice((0, 1, 1, 2)), 0.45)
    return {"water": (0.1 * W, 0.9 * W, hz + 0.08 * W, near - 0.02 * W), "ground": (0.1 * W, 0.9 * W,
            near + 0.05 * W, 0.98 * W), "sky": (0.1 * W, 0.9 * W, 0.07 * W, hz - 0.18 * W)}


def draw_mountain(pen, scene, rng):
    W, hz = pen.W, pen.hz
    snow = scene["season"] == "winter"
    for layer in range(2):
        base = hz + layer * 0.12 * W
        col = (120, 135, 160) if layer == 0 else mix(GROUND[scene["season"]], (30, 50, 40), 0.3)
        peaks = [(-0.1 * W, base + 0.1 * W)]
        x = -0.1 * W
        while x < 1.1 * W:
            x += rng.uniform(0.15, 0.3) * W
            peaks.append((x, base - rng.uniform(0.15, 0.32) * W * (1.2 - layer * 0.4)))
            x += rng.uniform(0.1, 0.2) * W
            peaks.append((x, base - rng.uniform(0.0, 0.08) * W))
        pen.poly(peaks + [(1.2 * W, W), (-0.2 * W, W)], col)
        if layer == 0 or snow:
            for (x0, y0), (x1, y1), (x2, y2) in zip(peaks, peaks[1:], peaks[2:]):
                if y1 < y0 and y1 < y2:
                    d = 0.35 if snow else 0.18
                    pen.poly([(x1, y1), (x1 + (x2 - x1) * d, y1 + (y2 - y1) * d),
                              (x1 + (x0 - x1) * d, y1 + (y0 - y1) * d)], (240, 243, 248))
        if layer == 1:
            for _ in range(30):
                x, y = rng.uniform(0, W), rng.uniform(base - 0.05 * W, base + 0.2 * W)
                pen.circ(x, y, rng.uniform(0.012, 0.022) * W, rng.choice(LEAF[scene["season"]] if not snow
                                                                         else [(30, 80, 50), (240, 243, 248)]))
    ridge = rng.uniform(0.76, 0.84) * W
    rock = (125, 115, 105) if not snow else (235, 238, 244)
    pen.poly([(0, ridge + 0.03 * W), (0.4 * W, ridge), (0.7 * W, ridge + 0.02 * W), (W, ridge - 0.02 * W), (W, W),
              (0, W)], rock)
    for _ in range(6):
        x, y = rng.uniform(0, W), rng.uniform(ridge + 0.03 * W, W)
        pen.ell((x - 0.05 * W, y - 0.02 * W, x + 0.05 * W, y + 0.02 * W), mix(rock, (60, 55, 50), 0.3))
    return {"ground": (0.08 * W, 0.92 * W, ridge + 0.06 * W, 0.98 * W), "sky": (0.08 * W, 0.92 * W, 0.07 * W,
            hz - 0.32 * W)}


def draw_amusement_park(pen, scene, rng):
    W, hz = pen.W, pen.hz
    night = scene["time"] == "night"
    ground_band(pen, hz, scene["season"], rng, (238, 240, 245) if scene["season"] == "winter" else (190, 180, 172))
    side = rng.choice((-1, 1))
    cx, r = (0.5 + side * rng.uniform(0.15, 0.25)) * W, rng.uniform(0.22, 0.3) * W
    cy = hz - r - 0.03 * W
    pen.poly([(cx, cy), (cx - r * 0.5, hz), (cx - r * 0.42, hz)], (200, 200, 210))
    pen.poly([(cx, cy), (cx + r * 0.5, hz), (cx + r * 0.42, hz)], (200, 200, 210))
    for i in range(12):
        a = 2 * math.pi * i / 12
        pen.line([(cx, cy), (cx + math.cos(a) * r, cy + math.sin(a) * r)], (225, 225, 235), 0.006 * W)
    pen.d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=pen.c((240, 240, 250)), width=int(0.012 * W))
    for i in range(12):
        a = 2 * math.pi * (i + 0.5) / 12
        gx, gy = cx + math.cos(a) * r, cy + math.sin(a) * r
        pen.rect((gx - 0.018 * W, gy, gx + 0.018 * W, gy + 0.03 * W), VIVID[i % len(VIVID)], 0.4 if night else 1)
        if night:
            light_glow(pen, cx + math.cos(a - 0.26) * r, cy + math.sin(a - 0.26) * r, 0.006 * W,
                       rng.choice([(255, 120, 200), (120, 220, 255), (255, 240, 120)]))
    x0, x1 = (0.0, 0.45) if side > 0 else (0.55, 1.0)
    xs = np.linspace(x0 * W, x1 * W, 24)
    amp, y_base = rng.uniform(0.1, 0.18) * W, hz - rng.uniform(0.06, 0.12) * W
    phase = rng.uniform(0, 2 * math.pi)
    track = [(x, y_base - amp * (0.5 + 0.5 * math.sin((x / W) * 14 + phase))) for x in xs]
    for x, y in track[::3]:
        pen.line([(x, y), (x, hz)], (150, 150, 160), 0.006 * W)
    pen.line(track, (230, 60, 60) if rng.random() < 0.5 else (60, 90, 220), 0.014 * W)
    if night:
        for x, y in track[::2]:
            light_glow(pen, x, y, 0.005 * W, (255, 230, 130))
    side_trees(pen, scene, rng, hz + 0.02 * W, 1, 0.3)
    tx = (0.5 - side * rng.uniform(0.05, 0.3)) * W  # a carousel tent
    pen.rect((tx - 0.08 * W, hz - 0.08 * W, tx + 0.08 * W, hz), (240, 220, 180))
    for i in range(4):
        pen.poly([(tx, hz - 0.16 * W), (tx - 0.1 * W + i * 0.05 * W, hz - 0.08 * W),
                  (tx - 0.075 * W + i * 0.05 * W, hz - 0.08 * W)], (220, 50, 60))
        pen.poly([(tx, hz - 0.16 * W), (tx - 0.075 * W + i * 0.05 * W, hz - 0.08 * W),
                  (tx - 0.05 * W + i * 0.05 * W, hz - 0.08 * W)], (250, 250, 250))
    return {"ground": (0.05 * W, 0.95 * W, hz + 0.12 * W, 0.98 * W), "sky": (0.1 * W, 0.9 * W, 0.07 * W,
            hz - 0.2 * W)}


def draw_people(pen, scene, rng):
    W, hz = pen.W, pen.hz
    ground_band(pen, hz, scene["season"], rng)
    side_trees(pen, scene, rng, hz + 0.05 * W, rng.choice((1, 2, 2, 3)), 0.55)
    pen.img.paste(pen.img.filter(ImageFilter.GaussianBlur(W * 0.006)))  # background out of focus
    cx, cy, r = rng.uniform(0.38, 0.62) * W, rng.uniform(0.36, 0.46) * W, rng.uniform(0.17, 0.22) * W
    k = 0.35  # the face is lit (a flash or a phone screen)
    skin = rng.choice([(244, 214, 190), (230, 196, 165), (210, 170, 135)])
    hair = rng.choice([(30, 25, 25), (60, 40, 30), (120, 80, 50), (170, 130, 90)])
    shirt = rng.choice(VIVID)
    if rng.random() < 0.55:  # long hair falls behind the shoulders
        pen.ell((cx - r * 1.2, cy - r * 1.15, cx + r * 1.2, cy + r * 1.9), hair, k)
    pen.ell((cx - r * 2.2, cy + r * 1.15, cx + r * 2.2, cy + r * 4.0), shirt, k)
    pen.rect((cx - r * 0.35, cy + r * 0.6, cx + r * 0.35, cy + r * 1.4), mix(skin, (0, 0, 0), 0.08), k)
    pen.ell((cx - r * 0.9, cy - r * 1.05, cx + r * 0.9, cy + r * 1.05), skin, k)
    pen.d.chord((cx - r * 1.0, cy - r * 1.2, cx + r * 1.0, cy + r * 0.3), 180, 360, fill=pen.c(hair, k))
    if scene["season"] == "winter" and rng.random() < 0.5:  # a knit beanie
        pen.d.chord((cx - r * 1.05, cy - r * 1.35, cx + r * 1.05, cy + r * 0.1), 180, 360,
                    fill=pen.c(rng.choice(VIVID), k))
    for s in (-1, 1):
        ex, ey = cx + s * r * 0.38, cy + r * 0.02
        pen.ell((ex - r * 0.12, ey - r * 0.09, ex + r * 0.12, ey + r * 0.09), (35, 30, 30), k)
        pen.circ(ex + r * 0.03, ey - r * 0.03, r * 0.03, (255, 255, 255), k)
        pen.ell((ex - r * 0.22, ey + r * 0.16, ex + r * 0.02, ey + r * 0.3), (240, 160, 160), k) if s < 0 else \
            pen.ell((ex - r * 0.02, ey + r * 0.16, ex + r * 0.22, ey + r * 0.3), (240, 160, 160), k)
    pen.d.chord((cx - r * 0.3, cy + r * 0.3, cx + r * 0.3, cy + r * 0.7), 0, 180, fill=pen.c((200, 70, 80), k))
    pen.taken = [(cx - r * 1.1, cy - r * 1.2, cx + r * 1.1, cy + r * 1.3)]
    return {"ground": (0.05 * W, 0.95 * W, 0.95 * W, 1.0 * W), "sky": (0.05 * W, 0.95 * W, 0.1 * W, 0.3 * W),
            "scale": 1.5}


LANDMARKS = {"beach": (draw_beach, (0.36, 0.48)), "palace": (draw_palace, (0.58, 0.66)),
             "park": (draw_park, (0.45, 0.55)), "tower": (draw_tower, (0.6, 0.66)),
             "restaurant": (draw_restaurant, (0.5, 0.5)), "cave": (draw_cave, (0.55, 0.62)),
             "island": (draw_island, (0.42, 0.52)), "lake": (draw_lake, (0.42, 0.52)),
             "mountain": (draw_mountain, (0.5, 0.58)), "amusement_park": (draw_amusement_park, (0.62, 0.72)),
             "people": (draw_people, (0.6, 0.7))}


# ------------------------------------------------------------------------------------------- placing and weather
def _overlap(a, b):
    """Intersection area over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / max(1e-6, min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])))


def place_objects(pen, labels, regions, rng):
    """Choose a spot and a size for every object (far first), draw them, return [(label, box)]."""
    W = pen.W
    plans, taken = [], list(pen.taken)
    for label in labels:
        draw, aspect, (lo, hi), region = OBJECTS[label]
        if region == "ground" and label in ("coffee", "cake", "ice_cream") and "table" in regions:
            region, lo, hi = "table", lo * 1.3, hi * 1.3
        if label == "person" and "seat" in regions:
            region, lo, hi = "seat", lo * 0.6, hi * 0.6
        x0, x1, y0, y1 = regions[region] if region in regions else regions["ground"]
        y0 = min(y0, y1 - 0.02 * W)
        best = None
        for _ in range(20):
            yb = rng.uniform(y0, y1)
            depth = (yb - y0) / (y1 - y0) if region in ("ground", "water") else 0.5
            h = rng.uniform(lo, hi) * W * (0.75 + 0.45 * depth) * regions.get("scale", 1.0)
            if region == "sky":
                yb += h / 2
            w = h * aspect
            x = rng.uniform(max(x0, w / 2), min(x1, W - w / 2)) if min(x1, W - w / 2) > max(x0, w / 2) else W / 2
            box = (x - w / 2, yb - h, x + w / 2, yb)
            worst = max([_overlap(box, t) for t in taken] + [0.0])
            if best is None or worst < best[0]:
                best = (worst, label, x, yb, h, box)
            if worst < 0.1:
                break
        taken.append(best[5])
        plans.append(best[1:5])
    out = []
    for label, x, yb, h in sorted(plans, key=lambda p: p[2]):
        draw = OBJECTS[label][0]
        k = 0.3 if pen.category in ("restaurant", "cave", "people") else 0.55 if pen.night else 0.8  # lamps, flash
        box = draw(pen, x, yb, h, rng, k, upper=True) if label == "person" and "seat" in regions else \
            draw(pen, x, yb, h, rng, k)
        out.append((label, box))
    return out


def weather_fx(pen, scene, rng):
    """Fog, rain streaks, falling snow, petals and leaves over the whole picture."""
    W = pen.W
    if scene["weather"] == "fog":
        fog = Image.new("RGB", (W, W), pen.c((215, 218, 222), 0.5))
        pen.img.paste(Image.blend(pen.img, fog, rng.uniform(0.35, 0.5)))
        pen.d = ImageDraw.Draw(pen.img)
    if scene["weather"] == "rain":
        dx = rng.uniform(-0.3, 0.1)
        for _ in range(rng.randint(70, 120)):
            x, y, ln = rng.uniform(-0.1, 1.1) * W, rng.uniform(0, 1) * W, rng.uniform(0.04, 0.08) * W
            pen.line([(x, y), (x + dx * ln, y + ln)], (200, 205, 215), W / 448 * 1.5, k=0.3)
    fall = {"snow": ((250, 250, 255), rng.randint(90, 160), 0.006)}.get(scene["weather"])
    if fall is None and scene["season"] == "spring" and scene["weather"] != "rain":
        fall = ((250, 200, 215), rng.randint(15, 40), 0.005)
    if fall is None and scene["season"] == "autumn" and rng.random() < 0.5:
        fall = ((225, 120, 40), rng.randint(8, 20), 0.006)
    if fall:
        col, n, s = fall
        for _ in range(n):
            x, y, r = rng.uniform(0, W), rng.uniform(0, W), rng.uniform(0.5, 1.3) * s * W
            pen.ell((x - r, y - r * 0.8, x + r, y + r * 0.8), col, k=0.4)
