"""The pen every picture of the embedded dataset is painted with: the colours of light, sky, seasons and things,
:class:`Pen` (shapes in a colour as the scene's time of day and weather light it) and a light's glow.
"""

from __future__ import annotations

from PIL import ImageDraw

SKY_TOP = {"day": (70, 130, 220), "sunset": (70, 70, 150), "night": (8, 12, 38)}
SKY_LOW = {"day": (175, 212, 245), "sunset": (250, 160, 90), "night": (35, 45, 95)}
WEATHER_GREY = {"clear": (None, 0), "cloudy": ((165, 170, 180), 0.55), "rain": ((110, 115, 125), 0.75),
                "fog": ((215, 218, 222), 0.75), "snow": ((190, 194, 202), 0.7)}
TINT = {"day": (1.0, 1.0, 1.0), "sunset": (1.0, 0.78, 0.66), "night": (0.34, 0.38, 0.56)}
WEATHER_TINT = {"clear": 1.0, "cloudy": 0.9, "rain": 0.78, "fog": 0.95, "snow": 0.92}
LEAF = {"spring": [(248, 188, 208), (240, 165, 192), (252, 216, 228)],
        "summer": [(45, 125, 50), (62, 148, 62), (35, 104, 45)],
        "autumn": [(228, 112, 35), (204, 56, 40), (236, 182, 45), (190, 90, 30)],
        "winter": [(236, 239, 246)]}
GROUND = {"spring": (128, 182, 96), "summer": (76, 150, 62), "autumn": (178, 146, 82), "winter": (232, 236, 243)}
VIVID = [(220, 50, 50), (40, 90, 200), (250, 200, 40), (240, 240, 240), (40, 160, 90), (240, 120, 170),
         (30, 30, 35), (150, 80, 190), (250, 130, 40)]


def mix(a, b, t):
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


class Pen:
    """ImageDraw with the scene's light applied: colours are tinted unless drawn as lights (k=0)."""

    def __init__(self, img, scene):
        self.img, self.d, self.W = img, ImageDraw.Draw(img), img.width
        self.hz, self.night, self.taken, self.category = img.width / 2, scene["time"] == "night", [], ""
        w = WEATHER_TINT[scene["weather"]]
        self.tint = tuple(t * w for t in TINT[scene["time"]])

    def c(self, rgb, k=1.0):
        return tuple(min(255, int(v * (1 - k + k * t))) for v, t in zip(rgb, self.tint))

    def rect(self, box, rgb, k=1.0):
        self.d.rectangle(box, fill=self.c(rgb, k))

    def ell(self, box, rgb, k=1.0):
        self.d.ellipse(box, fill=self.c(rgb, k))

    def circ(self, x, y, r, rgb, k=1.0):
        self.d.ellipse((x - r, y - r, x + r, y + r), fill=self.c(rgb, k))

    def poly(self, pts, rgb, k=1.0):
        self.d.polygon(pts, fill=self.c(rgb, k))

    def line(self, pts, rgb, width, k=1.0):
        self.d.line(pts, fill=self.c(rgb, k), width=max(1, int(width)))


def light_glow(pen, x, y, r, rgb):
    """A soft light at night (drawn untinted)."""
    pen.circ(x, y, r * 2.2, mix(rgb, pen.c((30, 30, 40)), 0.6), k=0)
    pen.circ(x, y, r, rgb, k=0)
