"""The ten garment drawings of the demo catalog: one silhouette function per category.

Each function draws the garment's silhouette into a mask (fill 255) and its details (seams,
buttons, bands) onto the texture the mask later cuts out; every proportion comes from the item's
random stream, so two items of one style are alike but not equal.
"""

from __future__ import annotations

import numpy as np

# Edge length of the square product images, in pixels.
IMAGE_SIZE = 256

RGB = tuple[int, int, int]

# The styles each garment is drawn in; the catalog names items after them.
STYLES: dict[str, tuple[str, ...]] = {
    "dress": ("Mini", "Midi", "Maxi", "A-line", "Wrap", "Shift", "Slip"),
    "top": ("Crew-Neck", "V-Neck", "Boxy", "Cropped", "Long-Sleeve", "Relaxed"),
    "skirt": ("Mini", "Midi", "Pleated", "A-line", "Pencil", "Wrap"),
    "trousers": ("Straight-Leg", "Wide-Leg", "Slim", "Tailored", "Cropped", "Cargo"),
    "jacket": ("Denim", "Bomber", "Biker", "Cropped", "Utility", "Tailored"),
    "shoes": ("Sneakers", "Loafers", "Ankle Boots", "Ballet Flats", "Chelsea Boots", "Derby Shoes"),
    "bag": ("Tote", "Crossbody", "Shoulder", "Bucket", "Satchel", "Top-Handle"),
    "hat": ("Fedora", "Bucket", "Sun", "Beanie", "Baseball", "Panama"),
    "coat": ("Trench", "Wool", "Longline", "Double-Breasted", "Belted", "Car"),
    "scarf": ("Knit", "Silk", "Wool", "Oversized", "Cashmere", "Blanket"),
}


def shade(rgb: RGB, factor: float) -> RGB:
    """`rgb` darkened (factor < 1) or lightened."""
    return tuple(int(round(c * factor)) for c in rgb)  # type: ignore[return-value]


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


# Each shape function draws the silhouette into `m` (mask, fill 255) and details into `t` (texture).
C = IMAGE_SIZE / 2  # horizontal centre line


def _dress(m, t, main, sec, style, rng):
    top = _u(rng, 28, 40)
    shoulder = _u(rng, 26, 38)
    waist_y = _u(rng, 92, 112)
    waist = _u(rng, 18, 26)
    hem_y = {"Mini": _u(rng, 160, 180), "Maxi": _u(rng, 225, 240)}.get(style, _u(rng, 190, 215))
    hem = {"Shift": _u(rng, 38, 50), "Slip": _u(rng, 40, 55)}.get(style, _u(rng, 55, 92))
    if style in ("Shift", "Slip"):
        waist = max(waist, hem - 12)
    m.polygon([(C - shoulder, top), (C + shoulder, top), (C + waist, waist_y), (C - waist, waist_y)], fill=255)
    m.polygon([(C - waist, waist_y - 1), (C + waist, waist_y - 1), (C + hem, hem_y), (C - hem, hem_y)], fill=255)
    # Rounded hem and a scooped neckline.
    m.chord((C - hem, hem_y - 12, C + hem, hem_y + 12), 0, 180, fill=255)
    neck = shoulder * _u(rng, 0.35, 0.6)
    m.chord((C - neck, top - neck * 0.8, C + neck, top + neck * 0.9), 0, 180, fill=0)
    if rng.random() < 0.5:  # short sleeves
        sl = _u(rng, 14, 22)
        m.polygon([(C - shoulder, top), (C - shoulder - sl, top + sl * 1.2), (C - shoulder + 4, top + sl * 1.6)], fill=255)
        m.polygon([(C + shoulder, top), (C + shoulder + sl, top + sl * 1.2), (C + shoulder - 4, top + sl * 1.6)], fill=255)
    t.line([(C - waist, waist_y), (C + waist, waist_y)], fill=shade(main, 0.7), width=2)
    if style == "Wrap":
        t.line([(C - shoulder * 0.4, top), (C + waist, waist_y + 30)], fill=shade(main, 0.7), width=2)


def _top(m, t, main, sec, style, rng):
    top = _u(rng, 45, 60)
    half = _u(rng, 44, 62) * (1.15 if style == "Boxy" else 1.0)
    hem_y = _u(rng, 150, 170) if style == "Cropped" else _u(rng, 185, 215)
    m.rectangle((C - half, top, C + half, hem_y), fill=255)
    long_sleeve = style == "Long-Sleeve" or rng.random() < 0.25
    reach = _u(rng, 110, 150) if long_sleeve else _u(rng, 35, 55)
    drop = _u(rng, 26, 36)
    for sgn in (-1, 1):
        x0 = C + sgn * half
        m.polygon([(x0, top), (x0 + sgn * reach * 0.45, top + reach * 0.9),
                   (x0 + sgn * reach * 0.45 - sgn * drop * 0.9, top + reach * 0.9 + drop * 0.4), (x0, top + drop * 1.6)],
                  fill=255)
    neck = _u(rng, 16, 26)
    if style == "V-Neck":
        m.polygon([(C - neck, top - 1), (C + neck, top - 1), (C, top + neck * 2.0)], fill=0)
    else:
        m.chord((C - neck, top - neck * 0.7, C + neck, top + neck * 0.8), 0, 180, fill=0)
    t.line([(C - half, hem_y - 8), (C + half, hem_y - 8)], fill=shade(main, 0.8), width=1)


def _skirt(m, t, main, sec, style, rng):
    top = _u(rng, 48, 64)
    waist = _u(rng, 40, 54)
    hem_y = {"Mini": _u(rng, 150, 175), "Midi": _u(rng, 205, 230)}.get(style, _u(rng, 180, 215))
    hem = waist + (_u(rng, 4, 12) if style == "Pencil" else _u(rng, 22, 55))
    m.rectangle((C - waist, top, C + waist, top + 12), fill=255)
    m.polygon([(C - waist, top + 11), (C + waist, top + 11), (C + hem, hem_y), (C - hem, hem_y)], fill=255)
    t.rectangle((C - waist, top, C + waist, top + 11), fill=shade(main, 0.75))
    if style == "Pleated":
        for k in range(-4, 5):
            t.line([(C + k * waist / 5, top + 12), (C + k * hem / 5, hem_y)], fill=shade(main, 0.75), width=1)
    elif style == "Wrap":
        t.line([(C + waist * 0.6, top + 12), (C - hem * 0.2, hem_y)], fill=shade(main, 0.7), width=2)


def _trousers(m, t, main, sec, style, rng):
    top = _u(rng, 26, 40)
    waist = _u(rng, 44, 56)
    crotch_y = top + _u(rng, 62, 78)
    ankle_y = _u(rng, 195, 212) if style == "Cropped" else _u(rng, 228, 246)
    leg = {"Wide-Leg": _u(rng, 44, 54), "Slim": _u(rng, 24, 30)}.get(style, _u(rng, 32, 42))
    flare = {"Wide-Leg": 10.0, "Slim": -2.0}.get(style, 0.0)
    m.rectangle((C - waist, top, C + waist, crotch_y), fill=255)
    for sgn in (-1, 1):
        outer_top, inner_top = C + sgn * waist, C + sgn * 2
        outer_bot = C + sgn * (4 + leg + flare + _u(rng, -2, 2))
        inner_bot = C + sgn * _u(rng, 5, 9)
        m.polygon([(outer_top, top), (inner_top, crotch_y), (inner_bot, ankle_y), (outer_bot, ankle_y)], fill=255)
        if style == "Cargo":
            px = C + sgn * (waist * 0.75)
            t.rectangle((min(px, px + sgn * 22), crotch_y + 20, max(px, px + sgn * 22), crotch_y + 45),
                        outline=shade(main, 0.7), width=2)
    t.rectangle((C - waist, top, C + waist, top + 9), fill=shade(main, 0.8))
    t.line([(C, top + 9), (C, crotch_y - 8)], fill=shade(main, 0.7), width=2)


def _outerwear(m, t, main, sec, rng, hem_y, half, long_lapel):
    """Shared body of jackets and coats: long sleeves, lapels, front opening, buttons."""
    top = _u(rng, 34, 46)
    m.polygon([(C - half + 6, top), (C + half - 6, top), (C + half, hem_y), (C - half, hem_y)], fill=255)
    for sgn in (-1, 1):
        x0 = C + sgn * (half - 6)
        m.polygon([(x0, top), (x0 + sgn * _u(rng, 40, 50), top + _u(rng, 135, 160)),
                   (x0 + sgn * 18, top + _u(rng, 150, 170)), (x0 - sgn * 2, top + 55)], fill=255)
    neck = _u(rng, 14, 20)
    m.polygon([(C - neck, top - 1), (C + neck, top - 1), (C, top + neck * 1.4)], fill=0)
    dark = shade(main, 0.6)
    lapel_y = top + (_u(rng, 70, 95) if long_lapel else _u(rng, 40, 55))
    for sgn in (-1, 1):
        t.polygon([(C + sgn * neck, top), (C + sgn * (neck + 18), top + 14), (C, lapel_y)], outline=dark, width=2)
    t.line([(C, lapel_y), (C, hem_y)], fill=dark, width=2)
    for k in range(int(rng.integers(3, 6))):
        by = lapel_y + 10 + k * (hem_y - lapel_y - 20) / 5
        t.ellipse((C + 3, by - 3, C + 9, by + 3), fill=sec)
    return top


def _jacket(m, t, main, sec, style, rng):
    hem_y = _u(rng, 150, 168) if style == "Cropped" else _u(rng, 175, 200)
    half = _u(rng, 48, 60)
    _outerwear(m, t, main, sec, rng, hem_y, half, long_lapel=style == "Tailored")
    if style == "Bomber":
        t.rectangle((C - half, hem_y - 10, C + half, hem_y), fill=shade(main, 0.7))


def _coat(m, t, main, sec, style, rng):
    hem_y = _u(rng, 220, 246)
    half = _u(rng, 52, 66)
    top = _outerwear(m, t, main, sec, rng, hem_y, half, long_lapel=True)
    if style in ("Belted", "Trench") or rng.random() < 0.3:
        belt_y = top + _u(rng, 70, 85)
        t.rectangle((C - half, belt_y, C + half, belt_y + 9), fill=shade(main, 0.7))


def _shoes(m, t, main, sec, style, rng):
    boot = "Boots" in style
    length = _u(rng, 100, 120)
    height = _u(rng, 75, 95) if boot else _u(rng, 34, 46)
    sole = _u(rng, 6, 11)
    sole_colour = sec if style == "Sneakers" else shade(main, 0.4)
    inside = shade(main, 0.45)
    # Two shoes side on, the back one higher and further left, like a packshot of a pair.
    for dx, base in ((-26, _u(rng, 140, 150)), (24, _u(rng, 195, 205))):
        heel_x = C - length / 2 + dx
        toe_x = heel_x + length
        if boot:
            # Shaft up from the heel, then the instep slopes down to a rounded toe.
            outline = [(heel_x, base - height), (heel_x + length * 0.38, base - height),
                       (heel_x + length * 0.45, base - height * 0.45), (toe_x - 22, base - height * 0.32),
                       (toe_x, base - 8), (toe_x, base), (heel_x, base)]
        else:
            # Heel counter, a dip for the foot opening, then a low vamp to the toe.
            outline = [(heel_x, base - height * 0.8), (heel_x + length * 0.08, base - height),
                       (heel_x + length * 0.5, base - height * 0.7), (toe_x - 24, base - height * 0.5),
                       (toe_x, base - 8), (toe_x, base), (heel_x, base)]
        m.polygon(outline, fill=255)
        m.ellipse((toe_x - 34, base - height * 0.55, toe_x + 2, base), fill=255)
        m.rectangle((heel_x - 2, base, toe_x + 4, base + sole), fill=255)
        t.rectangle((heel_x - 2, base, toe_x + 4, base + sole), fill=sole_colour)
        if not boot:
            # The dark inside of the shoe, seen through the opening.
            t.ellipse((heel_x + length * 0.06, base - height * 1.12, heel_x + length * 0.52, base - height * 0.78),
                      fill=inside)
        if style in ("Sneakers", "Derby Shoes"):
            for k in range(3):
                lx = heel_x + length * (0.5 + 0.08 * k)
                t.line([(lx, base - height * 0.72), (lx + 7, base - height * 0.55)], fill=sec, width=2)
        elif style == "Chelsea Boots":
            t.rectangle((heel_x + length * 0.14, base - height, heel_x + length * 0.3, base - height * 0.45),
                        fill=shade(main, 0.7))


def _bag(m, t, main, sec, style, rng):
    top = _u(rng, 95, 120)
    bottom = _u(rng, 205, 230)
    half_top = _u(rng, 45, 62)
    half_bottom = half_top + _u(rng, 0, 18)
    if style == "Bucket":
        half_top, half_bottom = half_bottom, half_top
    m.polygon([(C - half_top, top), (C + half_top, top), (C + half_bottom, bottom), (C - half_bottom, bottom)], fill=255)
    m.rounded_rectangle((C - half_bottom, bottom - 16, C + half_bottom, bottom), radius=8, fill=255)
    handle = half_top * _u(rng, 0.4, 0.75) if style not in ("Crossbody", "Shoulder") else half_top * 0.95
    rise = _u(rng, 40, 70) if style not in ("Crossbody", "Shoulder") else _u(rng, 80, 95)
    m.arc((C - handle, top - rise, C + handle, top + rise), 180, 360, fill=255, width=int(_u(rng, 6, 10)))
    flap_y = top + (bottom - top) * _u(rng, 0.3, 0.5)
    t.polygon([(C - half_top, top), (C + half_top, top), (C + half_top, flap_y), (C - half_top, flap_y)],
              fill=shade(main, 0.82))
    t.rectangle((C - 7, flap_y - 5, C + 7, flap_y + 5), fill=sec)


def _hat(m, t, main, sec, style, rng):
    crown_half = _u(rng, 40, 55)
    crown_top = _u(rng, 60, 90)
    base = _u(rng, 150, 170)
    if style == "Beanie":
        m.chord((C - crown_half - 8, crown_top - 20, C + crown_half + 8, base + 60), 180, 360, fill=255)
        m.rectangle((C - crown_half - 8, base + 5, C + crown_half + 8, base + 30), fill=255)
        for k in range(-6, 7):
            x = C + k * (crown_half + 8) / 7
            t.line([(x, base + 5), (x, base + 30)], fill=shade(main, 0.75), width=2)
        return
    m.rounded_rectangle((C - crown_half, crown_top, C + crown_half, base + 4), radius=int(crown_half * 0.6), fill=255)
    if style == "Baseball":
        m.chord((C - crown_half, base - 14, C + crown_half + 55, base + 14), 0, 180, fill=255)
    else:
        brim = crown_half + (_u(rng, 45, 70) if style in ("Sun", "Panama") else _u(rng, 20, 38))
        m.ellipse((C - brim, base - 12, C + brim, base + 14), fill=255)
    t.rectangle((C - crown_half, base - 16, C + crown_half, base - 4), fill=sec)


def _scarf(m, t, main, sec, style, rng):
    width = _u(rng, 28, 40) * (1.4 if style in ("Oversized", "Blanket") else 1.0)
    loop_top = _u(rng, 28, 45)
    loop_half = _u(rng, 48, 62)
    m.arc((C - loop_half, loop_top, C + loop_half, loop_top + 2 * loop_half * 0.8), 180, 360, fill=255, width=int(width))
    mid_y = loop_top + loop_half * 0.8
    ends = (_u(rng, 190, 235), _u(rng, 170, 215))
    for sgn, end_y, lean in ((-1, ends[0], _u(rng, -10, 15)), (1, ends[1], _u(rng, -15, 10))):
        x_out = C + sgn * loop_half
        x_in = x_out - sgn * width
        m.polygon([(x_out, mid_y), (x_in, mid_y), (x_in + lean, end_y), (x_out + lean, end_y)], fill=255)
        # Fringe at the end.
        for k in range(7):
            fx = min(x_in, x_out) + lean + (k + 0.5) * width / 7
            m.line([(fx, end_y), (fx, end_y + 12)], fill=255, width=2)
        t.line([(min(x_in, x_out) + lean, end_y - 6), (max(x_in, x_out) + lean, end_y - 6)], fill=shade(main, 0.7), width=2)


SHAPES = {
    "dress": _dress,
    "top": _top,
    "skirt": _skirt,
    "trousers": _trousers,
    "jacket": _jacket,
    "shoes": _shoes,
    "bag": _bag,
    "hat": _hat,
    "coat": _coat,
    "scarf": _scarf,
}
