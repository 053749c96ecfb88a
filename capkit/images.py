"""Opening an image file safely: RGB with its EXIF orientation applied, or :class:`BadImage` saying why not.

Every module that reads pixels (the encoders, the captioning command, the figures, the viewer) opens them here,
so a missing, empty, truncated or corrupt file, or a decompression bomb, gets the same name everywhere: its
``reason`` is the key under which a loader's skip report counts it (``BAD_IMAGE_REASONS``). Grayscale, CMYK,
16-bit, palette and transparent images become RGB (transparency on white).

This module imports no other capkit module.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 60_000_000  # larger images are refused as decompression bombs
BAD_IMAGE_REASONS = ("missing_image", "empty_image", "truncated_image", "corrupt_image", "decompression_bomb")


class BadImage(Exception):
    """An image that cannot be used; ``reason`` is the skip-report key."""

    def __init__(self, reason: str, path, detail: str = ""):
        super().__init__(f"{reason}: {path}" + (f" ({detail})" if detail else ""))
        self.reason, self.path, self.detail = reason, str(path), detail


def open_image(path, max_pixels: int = MAX_PIXELS, draft: tuple | None = None) -> Image.Image:
    """Open an image as RGB with its EXIF orientation applied, or raise :class:`BadImage`.

    Grayscale, CMYK, 16-bit, palette and transparent images are converted (transparency on
    white). ``draft=(w, h)`` lets JPEG decode at a reduced scale (fast checks, thumbnails).
    """
    path = Path(path)
    if not path.is_file():
        raise BadImage("missing_image", path)
    if path.stat().st_size == 0:
        raise BadImage("empty_image", path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
            if img.width * img.height > max_pixels:
                raise BadImage("decompression_bomb", path, f"{img.width}x{img.height} pixels")
            if draft:
                img.draft("RGB", draft)
            img.load()
        except BadImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise BadImage("decompression_bomb", path, str(e)) from None
        except UnidentifiedImageError:
            raise BadImage("corrupt_image", path, "not a readable image") from None
        except OSError as e:
            reason = "truncated_image" if "truncated" in str(e) else "corrupt_image"
            raise BadImage(reason, path, str(e)) from None
        except (SyntaxError, ValueError, EOFError, IndexError) as e:
            raise BadImage("corrupt_image", path, str(e)) from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """EXIF-rotate and convert any mode to RGB."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not lose an otherwise good image
        pass
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        a = np.asarray(img, dtype="float64")
        hi = a.max() or 1.0
        img = Image.fromarray((a * (255.0 / hi)).clip(0, 255).astype("uint8"), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def image_issue(path) -> str | None:
    """Which normalisation a usable image needed (for the report), or None."""
    try:
        with Image.open(path) as img:
            if img.getexif().get(0x0112, 1) not in (1, None):
                return "exif_rotated"
            return None if img.mode == "RGB" else f"mode_{img.mode}"
    except Exception:
        return None
