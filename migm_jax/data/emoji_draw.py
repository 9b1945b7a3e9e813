"""Drawing one emoji in each style as a (64, 64, 3) uint8 RGB image on white.

Both styles are framed alike: the drawing (RGBA) is cropped to its visible pixels, centred on a white
square of the style's frame side (or of the drawing's longer side, where that is larger), and resized to
64x64 with LANCZOS. The frame keeps each style's scale, so a small emoji stays small: TWEMOJI_FRAME is
its 72 px PNG, which most drawings fill; NOTO_FRAME makes a typical Noto drawing as large (measured: the
median ratio of the two drawings' longer sides is 1.68). Noto: the font at NOTO_SIZE px (its bitmap
strike, glyphs 136x128) drawn by Pillow with embedded colour on a transparent canvas; emoji sequences
(ZWJ, skin tones, keycaps) need Pillow's raqm layout, which joins them into the font's single glyph.
"""

from __future__ import annotations

import io
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

RESOLUTION = 64
NOTO_SIZE = 109
TWEMOJI_FRAME, NOTO_FRAME = 72, 121


def framed(rgba: Image.Image, frame: int) -> Optional[np.ndarray]:
    """The RGBA drawing cropped to its visible pixels, centred on a white square of side max(frame, its
    longer side), resized to (64, 64, 3) uint8; None when nothing is visible."""
    box = rgba.getchannel("A").getbbox()
    if box is None:
        return None
    art = rgba.crop(box)
    size = max(frame, *art.size)
    square = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    square.alpha_composite(art, ((size - art.width) // 2, (size - art.height) // 2))
    return np.asarray(square.convert("RGB").resize((RESOLUTION, RESOLUTION), Image.LANCZOS))


def draw_twemoji(png: bytes) -> Optional[np.ndarray]:
    """A Twemoji PNG (bytes) -> (64, 64, 3) uint8 on white; None when it is blank."""
    return framed(Image.open(io.BytesIO(png)).convert("RGBA"), TWEMOJI_FRAME)


def check_pillow() -> None:
    """ValueError unless this Pillow lays out text with raqm (emoji sequences would draw as several glyphs)."""
    if not features.check("raqm"):
        raise ValueError("this Pillow has no raqm text layout, so emoji sequences (skin tones, ZWJ) cannot be "
                         "drawn with the Noto font; install a Pillow wheel that bundles it (pip install -U pillow)")


def noto_font(path: str) -> ImageFont.FreeTypeFont:
    """The Noto Color Emoji font at NOTO_SIZE px (its colour bitmap strike)."""
    check_pillow()
    try:
        return ImageFont.truetype(path, NOTO_SIZE, layout_engine=ImageFont.Layout.RAQM)
    except OSError as e:
        raise ValueError(f"--noto-font {path}: cannot open it as a font ({e}); give NotoColorEmoji.ttf") from None


def draw_noto(font: ImageFont.FreeTypeFont, text: str) -> Optional[np.ndarray]:
    """The emoji `text` drawn with `font` -> (64, 64, 3) uint8 on white; None when the font does not draw it
    as one glyph (its layout is wider than 1.5 times that of the first code point) or draws nothing."""
    if font.getlength(text) > 1.5 * font.getlength(text[0]):
        return None
    left, top, right, bottom = font.getbbox(text)
    pad = font.size // 4
    canvas = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, fill="black", font=font, embedded_color=True)
    return framed(canvas, NOTO_FRAME)
