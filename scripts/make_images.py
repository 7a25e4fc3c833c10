"""Draw the add-on store images: icon.png (128x128) and logo.png (250x100).

A stylised amber sun over a blue solar panel; the logo adds the name. Drawn at
four times the size and scaled down, which smooths the edges.

Usage: python scripts/make_images.py [--out DIR]   (needs the `images` extra)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HA_BLUE = (3, 169, 244, 255)  # #03a9f4
PANEL_DARK = (2, 119, 189, 255)  # a darker shade of the blue for the frame
AMBER = (255, 193, 7, 255)  # #ffc107
WHITE = (255, 255, 255, 255)
TEXT_DARK = (38, 50, 56, 255)
SCALE = 4

Box = tuple[float, float, float, float]


def _lerp(a: tuple[float, float], b: tuple[float, float], t: float) -> tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def draw_emblem(draw: ImageDraw.ImageDraw, box: Box) -> None:
    """Sun and solar panel inside ``box`` (left, top, right, bottom)."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top

    # Sun: a disc with short rays, upper right, partly behind the panel.
    cx, cy, r = left + 0.66 * w, top + 0.30 * h, 0.16 * min(w, h)
    for i in range(12):
        angle = 2 * math.pi * i / 12
        inner, outer = r * 1.35, r * 1.85
        x1, y1 = cx + inner * math.cos(angle), cy + inner * math.sin(angle)
        x2, y2 = cx + outer * math.cos(angle), cy + outer * math.sin(angle)
        draw.line([(x1, y1), (x2, y2)], fill=AMBER, width=max(1, round(0.035 * w)))
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=AMBER)

    # Panel: a parallelogram seen slightly from above, with a cell grid.
    bl = (left + 0.06 * w, top + 0.90 * h)
    br = (left + 0.84 * w, top + 0.90 * h)
    tr = (left + 0.94 * w, top + 0.50 * h)
    tl = (left + 0.20 * w, top + 0.50 * h)
    frame = max(1, round(0.03 * w))
    draw.polygon([bl, br, tr, tl], fill=HA_BLUE, outline=PANEL_DARK, width=frame)
    line = max(1, round(0.018 * w))
    columns, rows = 4, 3
    for c in range(1, columns):
        t = c / columns
        draw.line([_lerp(bl, br, t), _lerp(tl, tr, t)], fill=WHITE, width=line)
    for r_ in range(1, rows):
        t = r_ / rows
        draw.line([_lerp(tl, bl, t), _lerp(tr, br, t)], fill=WHITE, width=line)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def make_icon() -> Image.Image:
    size = 128 * SCALE
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    pad = 6 * SCALE
    draw_emblem(draw, (pad, pad, size - pad, size - pad))
    return image.resize((128, 128), Image.Resampling.LANCZOS)


def make_logo() -> Image.Image:
    width, height = 250 * SCALE, 100 * SCALE
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw_emblem(draw, (4 * SCALE, 8 * SCALE, 88 * SCALE, 92 * SCALE))
    text_left = 96 * SCALE
    draw.text((text_left, 20 * SCALE), "Hoymiles", font=_font(30 * SCALE), fill=TEXT_DARK)
    draw.text((text_left, 54 * SCALE), "DTU Bridge", font=_font(26 * SCALE), fill=HA_BLUE)
    return image.resize((250, 100), Image.Resampling.LANCZOS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1], help="target folder"
    )
    args = parser.parse_args()
    for name, image in (("icon.png", make_icon()), ("logo.png", make_logo())):
        path = args.out / name
        image.save(path, optimize=True)
        print(f"wrote {path} ({image.width}x{image.height})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
