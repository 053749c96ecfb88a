"""The objects of the embedded dataset's pictures: each draws itself at bottom-centre (x, yb) with height h and
returns its box (x0, y0, x1, y1); ``OBJECTS`` says for each label its drawing, aspect, size range and the region
it stands in (ground, water, table, sky).
"""

from __future__ import annotations

from capkit.sample.pen import VIVID, light_glow, mix


def obj_person(pen, x, yb, h, rng, k, upper=False):
    skin = rng.choice([(244, 214, 190), (230, 196, 165), (210, 170, 135)])
    shirt, pants = rng.choice(VIVID), rng.choice([(50, 70, 120), (30, 30, 35), (200, 185, 150), (90, 90, 95)])
    hair = rng.choice([(30, 25, 25), (70, 45, 30), (140, 95, 60)])
    r = h * (0.2 if upper else 0.11)
    hy = yb - h + r
    w = h * (0.5 if upper else 0.2)
    ty1 = yb if upper else yb - h * 0.42
    pen.poly([(x - w * 0.8, hy + r * 1.1), (x + w * 0.8, hy + r * 1.1), (x + w, ty1), (x - w, ty1)], shirt, k)
    for s in (-1, 1):
        if not upper:
            pen.rect((x + s * w * 0.45 - h * 0.045, ty1, x + s * w * 0.45 + h * 0.045, yb), pants, k)
            pen.line([(x + s * w * 0.85, hy + r * 1.4), (x + s * w * 1.15, ty1 + h * 0.03)], skin, h * 0.06, k)
    pen.circ(x, hy, r, skin, k)
    pen.d.chord((x - r * 1.05, hy - r * 1.1, x + r * 1.05, hy + r * 0.5), 180, 360, fill=pen.c(hair, k))
    half = max(w * 1.15, r)
    return (x - half, yb - h, x + half, yb)


def obj_dog(pen, x, yb, h, rng, k):
    fur = rng.choice([(165, 110, 60), (215, 180, 130), (245, 242, 235), (120, 80, 45)])
    dark = mix(fur, (40, 25, 15), 0.5)
    f = rng.choice((-1, 1))
    w = h * 1.35
    by0, by1 = yb - h * 0.7, yb - h * 0.3
    pen.line([(x - f * w * 0.35, by0 + h * 0.1), (x - f * w * 0.5, by0 - h * 0.15)], fur, h * 0.08, k)
    for lx in (-0.3, -0.15, 0.15, 0.3):
        pen.rect((x + lx * w - h * 0.05, by1 - h * 0.05, x + lx * w + h * 0.05, yb), fur, k)
    pen.ell((x - w * 0.38, by0, x + w * 0.38, by1), fur, k)
    hx, hy, hr = x + f * w * 0.36, yb - h * 0.78, h * 0.22
    pen.circ(hx, hy, hr, fur, k)
    pen.ell((hx + f * hr * 0.5 - hr * 0.35, hy + hr * 0.05, hx + f * hr * 0.5 + hr * 0.35, hy + hr * 0.55),
            mix(fur, (255, 255, 255), 0.2), k)
    pen.circ(hx + f * hr * 0.95, hy + hr * 0.2, hr * 0.18, (25, 20, 20), k)
    pen.ell((hx - f * hr * 0.6 - hr * 0.25, hy - hr * 0.6, hx - f * hr * 0.6 + hr * 0.25, hy + hr * 0.6), dark, k)
    pen.circ(hx + f * hr * 0.35, hy - hr * 0.25, hr * 0.12, (20, 20, 20), k)
    return (x - w * 0.52, yb - h, x + w * 0.52, yb)


def obj_cat(pen, x, yb, h, rng, k):
    fur = rng.choice([(235, 145, 55), (125, 125, 130), (35, 35, 40), (240, 240, 240)])
    w = h * 0.6
    pen.line([(x + w * 0.35, yb - h * 0.05), (x + w * 0.75, yb - h * 0.1), (x + w * 0.8, yb - h * 0.4)],
             fur, h * 0.07, k)
    pen.ell((x - w * 0.45, yb - h * 0.62, x + w * 0.45, yb), fur, k)
    hy, hr = yb - h * 0.7, h * 0.2
    for s in (-1, 1):
        pen.poly([(x + s * hr * 0.95, hy - hr * 0.2), (x + s * hr * 0.2, hy - hr * 0.8), (x + s * hr * 0.85,
                  hy - hr * 1.5)], fur, k)
    pen.circ(x, hy, hr, fur, k)
    for s in (-1, 1):
        pen.ell((x + s * hr * 0.4 - hr * 0.15, hy - hr * 0.2, x + s * hr * 0.4 + hr * 0.15, hy + hr * 0.1),
                (110, 200, 90), k)
    if fur[0] > 200 and fur[1] < 200:  # tabby stripes
        for i in range(3):
            y = yb - h * (0.45 - 0.12 * i)
            pen.line([(x - w * 0.3, y), (x - w * 0.1, y + h * 0.03)], (190, 100, 30), h * 0.03, k)
    return (x - w * 0.5, yb - h, x + w * 0.85, yb)


def obj_boat(pen, x, yb, h, rng, k):
    w = h * 1.7
    hull = rng.choice([(245, 245, 245), (200, 45, 45), (40, 80, 170), (240, 200, 50)])
    pen.poly([(x - w / 2, yb - h * 0.35), (x + w / 2, yb - h * 0.35), (x + w * 0.35, yb), (x - w * 0.35, yb)], hull, k)
    pen.rect((x - w / 2, yb - h * 0.35, x + w / 2, yb - h * 0.29), mix(hull, (0, 0, 0), 0.35), k)
    if rng.random() < 0.5:  # sail boat
        pen.line([(x, yb - h * 0.35), (x, yb - h)], (80, 70, 60), h * 0.04, k)
        pen.poly([(x + h * 0.03, yb - h * 0.97), (x + h * 0.03, yb - h * 0.42), (x + w * 0.42, yb - h * 0.42)],
                 (250, 250, 250), k)
        pen.poly([(x - h * 0.03, yb - h * 0.85), (x - h * 0.03, yb - h * 0.42), (x - w * 0.3, yb - h * 0.42)],
                 (235, 235, 240), k)
    else:  # motor boat with a cabin
        pen.rect((x - w * 0.25, yb - h * 0.75, x + w * 0.15, yb - h * 0.35), (240, 240, 240), k)
        pen.rect((x - w * 0.2, yb - h * 0.68, x + w * 0.1, yb - h * 0.52), (90, 150, 200), k)
        if pen.night:
            light_glow(pen, x - w * 0.05, yb - h * 0.6, h * 0.06, (255, 230, 150))
    return (x - w / 2, yb - h, x + w / 2, yb)


def obj_bird(pen, x, yb, h, rng, k):
    w = h * 1.7
    cy = yb - h * 0.5
    water = pen.category in ("beach", "island", "lake")
    dark = [(120, 125, 135), (60, 60, 70), (150, 150, 160)] if not pen.night else [(200, 200, 205)]
    body = rng.choice([(250, 250, 250)] if water else dark)
    tip = (25, 25, 30) if body[0] > 100 else (200, 200, 205)
    up = rng.uniform(-0.2, 0.2)
    for s in (-1, 1):
        pen.poly([(x, cy), (x + s * w * 0.25, cy - h * (0.45 + up)), (x + s * w * 0.5, cy - h * (0.25 + up)),
                  (x + s * w * 0.3, cy - h * (0.2 + up)), (x + s * w * 0.1, cy + h * 0.15)], body, k)
        pen.poly([(x + s * w * 0.4, cy - h * (0.3 + up)), (x + s * w * 0.5, cy - h * (0.25 + up)),
                  (x + s * w * 0.42, cy - h * (0.2 + up))], tip, k)
    pen.ell((x - w * 0.14, cy - h * 0.12, x + w * 0.14, cy + h * 0.2), body, k)
    pen.poly([(x + w * 0.12, cy), (x + w * 0.2, cy + h * 0.05), (x + w * 0.12, cy + h * 0.1)], (240, 180, 40), k)
    return (x - w / 2, yb - h, x + w / 2, yb)


def obj_balloon(pen, x, yb, h, rng, k):
    col = rng.choice([(230, 40, 50), (250, 120, 180), (250, 210, 40), (70, 170, 240), (150, 80, 210)])
    bw, bh = h * 0.55, h * 0.62
    pen.line([(x, yb - h + bh), (x + h * 0.05, yb - h * 0.2), (x, yb)], (230, 230, 230), max(1, h * 0.02), 0.5)
    pen.ell((x - bw / 2, yb - h, x + bw / 2, yb - h + bh), col, k * 0.5)
    pen.poly([(x, yb - h + bh * 0.95), (x - h * 0.04, yb - h + bh * 1.08), (x + h * 0.04, yb - h + bh * 1.08)], col,
             k * 0.5)
    pen.ell((x - bw * 0.28, yb - h + bh * 0.15, x - bw * 0.1, yb - h + bh * 0.4), (255, 255, 255), k * 0.5)
    return (x - bw / 2, yb - h, x + bw / 2, yb)


def obj_coffee(pen, x, yb, h, rng, k):
    if rng.random() < 0.6:  # iced americano to go: a clear cup, dark coffee, ice, a straw
        w = h * 0.55
        pen.line([(x + w * 0.1, yb - h * 0.78), (x + w * 0.3, yb - h)], rng.choice([(40, 160, 80), (30, 30, 30)]),
                 h * 0.06, k)
        pen.poly([(x - w / 2, yb - h * 0.78), (x + w / 2, yb - h * 0.78), (x + w * 0.38, yb), (x - w * 0.38, yb)],
                 (225, 230, 235), k)
        pen.poly([(x - w * 0.46, yb - h * 0.66), (x + w * 0.46, yb - h * 0.66), (x + w * 0.36, yb - h * 0.03),
                  (x - w * 0.36, yb - h * 0.03)], (75, 42, 25), k)
        for _ in range(3):
            ix, iy = x + rng.uniform(-0.25, 0.15) * w, yb - rng.uniform(0.35, 0.62) * h
            pen.rect((ix, iy, ix + w * 0.18, iy + w * 0.18), (190, 170, 160), k)
        pen.rect((x - w * 0.43, yb - h * 0.45, x + w * 0.43, yb - h * 0.3), (190, 150, 100), k)
        pen.ell((x - w / 2, yb - h * 0.84, x + w / 2, yb - h * 0.72), (250, 250, 250), k)
        return (x - w / 2, yb - h, x + w / 2, yb)
    w = h * 1.1  # a latte in a mug on a saucer
    pen.ell((x - w / 2, yb - h * 0.18, x + w / 2, yb), (245, 245, 245), k)
    pen.d.arc((x + w * 0.12, yb - h * 0.8, x + w * 0.5, yb - h * 0.35), 270, 90, fill=pen.c((240, 240, 240), k),
              width=max(1, int(h * 0.08)))
    pen.rect((x - w * 0.32, yb - h * 0.85, x + w * 0.32, yb - h * 0.12), (245, 245, 245), k)
    pen.ell((x - w * 0.32, yb - h * 0.95, x + w * 0.32, yb - h * 0.75), (195, 140, 90), k)
    pen.ell((x - w * 0.12, yb - h * 0.9, x + w * 0.12, yb - h * 0.8), (250, 235, 215), k)
    return (x - w / 2, yb - h, x + w / 2, yb)


def obj_bicycle(pen, x, yb, h, rng, k):
    w = h * 1.6
    r = h * 0.33
    frame = rng.choice([(220, 50, 50), (40, 150, 140), (40, 80, 200), (240, 200, 40)])
    for s in (-1, 1):
        pen.d.ellipse((x + s * w * 0.29 - r, yb - 2 * r, x + s * w * 0.29 + r, yb), outline=pen.c((30, 30, 30), k),
                      width=max(1, int(h * 0.07)))
    a, b, c, d = (x - w * 0.29, yb - r), (x, yb - r), (x - w * 0.08, yb - h * 0.72), (x + w * 0.2, yb - h * 0.78)
    pen.line([a, b, c, a], frame, h * 0.06, k)
    pen.line([b, d, (x + w * 0.29, yb - r)], frame, h * 0.06, k)
    pen.line([(c[0] - w * 0.07, c[1]), (c[0] + w * 0.05, c[1])], (30, 30, 30), h * 0.07, k)
    pen.line([(d[0] - w * 0.03, d[1] - h * 0.1), (d[0] + w * 0.06, d[1] - h * 0.1), d], (30, 30, 30), h * 0.05, k)
    return (x - w * 0.29 - r, yb - h * 0.9, x + w * 0.29 + r, yb)


def obj_car(pen, x, yb, h, rng, k):
    w = h * 2.0
    body = rng.choice([(200, 40, 40), (245, 245, 245), (40, 70, 160), (30, 30, 35), (230, 190, 40)])
    pen.poly([(x - w * 0.28, yb - h * 0.55), (x - w * 0.18, yb - h), (x + w * 0.2, yb - h),
              (x + w * 0.32, yb - h * 0.55)], body, k)
    pen.poly([(x - w * 0.22, yb - h * 0.58), (x - w * 0.15, yb - h * 0.9), (x + w * 0.17, yb - h * 0.9),
              (x + w * 0.26, yb - h * 0.58)], (150, 190, 220), k)
    pen.rect((x - w / 2, yb - h * 0.58, x + w / 2, yb - h * 0.2), body, k)
    for s in (-1, 1):
        pen.circ(x + s * w * 0.3, yb - h * 0.18, h * 0.18, (25, 25, 25), k)
        pen.circ(x + s * w * 0.3, yb - h * 0.18, h * 0.08, (170, 170, 170), k)
    lamp = (255, 240, 170) if pen.night else (240, 230, 180)
    pen.rect((x + w * 0.44, yb - h * 0.52, x + w / 2, yb - h * 0.42), lamp, 0 if pen.night else k)
    return (x - w / 2, yb - h, x + w / 2, yb)


def obj_ice_cream(pen, x, yb, h, rng, k):
    w = h * 0.5
    pen.poly([(x - w * 0.4, yb - h * 0.55), (x + w * 0.4, yb - h * 0.55), (x, yb)], (215, 165, 95), k)
    pen.line([(x - w * 0.25, yb - h * 0.5), (x + w * 0.1, yb - h * 0.15)], (170, 120, 60), h * 0.02, k)
    pen.line([(x + w * 0.25, yb - h * 0.5), (x - w * 0.1, yb - h * 0.15)], (170, 120, 60), h * 0.02, k)
    if rng.random() < 0.5:  # soft serve swirl
        for i, s in enumerate((0.5, 0.4, 0.28, 0.15)):
            y = yb - h * (0.6 + 0.11 * i)
            pen.ell((x - w * s, y - h * 0.07, x + w * s, y + h * 0.07), (252, 250, 240), k)
    else:  # scoops
        cols = rng.sample([(250, 170, 190), (160, 230, 200), (110, 70, 45), (252, 245, 225)], 2)
        pen.circ(x, yb - h * 0.62, w * 0.45, cols[0], k)
        pen.circ(x, yb - h * 0.82, w * 0.38, cols[1], k)
    return (x - w / 2, yb - h, x + w / 2, yb)


def obj_umbrella(pen, x, yb, h, rng, k):
    w = h * 1.1
    col = rng.choice([(230, 50, 60), (40, 90, 200), (250, 200, 40), (235, 235, 240), (40, 150, 90)])
    pen.line([(x, yb - h * 0.75), (x, yb - h * 0.05)], (50, 40, 35), h * 0.04, k)
    pen.d.arc((x - h * 0.1, yb - h * 0.12, x, yb), 0, 180, fill=pen.c((50, 40, 35), k), width=max(1, int(h * 0.04)))
    pen.d.pieslice((x - w / 2, yb - h, x + w / 2, yb - h * 0.45), 180, 360, fill=pen.c(col, k))
    for i in range(4):
        sx = x - w / 2 + w * (i + 0.5) / 4
        pen.circ(sx, yb - h * 0.725, w * 0.125, mix(col, (0, 0, 0), 0.15) if i % 2 else col, k)
    pen.d.pieslice((x - w / 2, yb - h, x + w / 2, yb - h * 0.45), 180, 360, fill=pen.c(col, k))
    return (x - w / 2, yb - h, x + w / 2, yb)


def obj_cake(pen, x, yb, h, rng, k):
    w = h * 1.2
    cream = rng.choice([(252, 250, 245), (250, 215, 225), (120, 75, 50)])
    pen.ell((x - w / 2, yb - h * 0.22, x + w / 2, yb), (245, 245, 245), k)
    pen.rect((x - w * 0.35, yb - h * 0.7, x + w * 0.35, yb - h * 0.15), cream, k)
    pen.rect((x - w * 0.35, yb - h * 0.45, x + w * 0.35, yb - h * 0.38), (240, 150, 170), k)
    pen.ell((x - w * 0.35, yb - h * 0.8, x + w * 0.35, yb - h * 0.6), mix(cream, (255, 255, 255), 0.3), k)
    for i in range(4):
        pen.circ(x - w * 0.24 + i * w * 0.16, yb - h * 0.82, h * 0.08, (215, 30, 45), k)
    return (x - w / 2, yb - h, x + w / 2, yb)


def obj_snowman(pen, x, yb, h, rng, k):
    w = h * 0.65
    white = (248, 250, 255)
    pen.line([(x - w * 0.2, yb - h * 0.55), (x - w * 0.55, yb - h * 0.75)], (110, 70, 40), h * 0.03, k)
    pen.line([(x + w * 0.2, yb - h * 0.55), (x + w * 0.55, yb - h * 0.75)], (110, 70, 40), h * 0.03, k)
    pen.circ(x, yb - h * 0.27, h * 0.27, white, k * 0.6)
    pen.circ(x, yb - h * 0.66, h * 0.19, white, k * 0.6)
    pen.rect((x - h * 0.17, yb - h * 0.53, x + h * 0.17, yb - h * 0.47), rng.choice(VIVID[:3]), k)
    pen.rect((x - h * 0.14, yb - h * 0.95, x + h * 0.14, yb - h * 0.8), (25, 25, 30), k)
    pen.rect((x - h * 0.2, yb - h * 0.83, x + h * 0.2, yb - h * 0.8), (25, 25, 30), k)
    pen.poly([(x, yb - h * 0.66), (x + h * 0.15, yb - h * 0.64), (x, yb - h * 0.62)], (245, 130, 30), k)
    for s in (-1, 1):
        pen.circ(x + s * h * 0.07, yb - h * 0.72, h * 0.025, (20, 20, 20), k)
    return (x - w * 0.55, yb - h, x + w * 0.55, yb)


# label -> (draw, width / height, height range as a fraction of the image, region)
OBJECTS = {
    "person": (obj_person, 0.42, (0.25, 0.45), "ground"),
    "dog": (obj_dog, 1.4, (0.13, 0.22), "ground"),
    "cat": (obj_cat, 0.75, (0.15, 0.26), "ground"),
    "boat": (obj_boat, 1.7, (0.11, 0.2), "water"),
    "bird": (obj_bird, 1.7, (0.09, 0.15), "sky"),
    "balloon": (obj_balloon, 0.55, (0.18, 0.3), "sky"),
    "coffee": (obj_coffee, 0.6, (0.15, 0.28), "ground"),
    "bicycle": (obj_bicycle, 1.8, (0.14, 0.22), "ground"),
    "car": (obj_car, 2.0, (0.12, 0.19), "ground"),
    "ice_cream": (obj_ice_cream, 0.5, (0.17, 0.28), "ground"),
    "umbrella": (obj_umbrella, 1.1, (0.2, 0.32), "ground"),
    "cake": (obj_cake, 1.2, (0.13, 0.2), "ground"),
    "snowman": (obj_snowman, 0.65, (0.2, 0.34), "ground"),
}
