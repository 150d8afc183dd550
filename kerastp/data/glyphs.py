"""Procedural digits: MNIST-like 28x28 digits drawn with Pillow's bundled font.

`procedural_digits` needs no file and no network: it renders the ten digits once at 4x
resolution in 80 variants (stroke thickness, blur), then draws each digit with a random
rotation, shear, height, aspect and sub-pixel shift (vectorised bilinear sampling), white on
black and centred by centre of mass like MNIST. `source="procedural"` of the Moving MNIST
pipelines uses it.

This module imports only NumPy and Pillow.
"""

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from kerastp.data.mnist_files import DIGIT_SIZE
from kerastp.validation import check_int

__all__ = ["procedural_digits"]

_GLYPH_CANVAS = 144  # high-resolution glyph canvas (4x the 28-pixel digit scale, plus margin)
_GLYPH_HEIGHT = 80  # digit height in the glyph canvas: 20 px at 28x28, like MNIST's 20x20 box
_GLYPH_STROKES = (-3, 0, 3, 5)  # MinFilter(3) for -3, none for 0, MaxFilter(k) for k > 0
_GLYPH_BLURS = (1.5, 2.5)  # Gaussian radius at 4x: anti-aliasing plus a slight softening


def _render_glyph(char):
    """Renders `char` white on black, cropped to its ink and scaled to `_GLYPH_HEIGHT` rows."""
    try:
        font = ImageFont.load_default(size=_GLYPH_HEIGHT * 5 // 4)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: bitmap font
        font = ImageFont.load_default()
    image = Image.new("L", (4 * _GLYPH_HEIGHT, 4 * _GLYPH_HEIGHT), 0)
    ImageDraw.Draw(image).text((_GLYPH_HEIGHT // 2, _GLYPH_HEIGHT // 2), char, fill=255, font=font)
    box = image.getbbox()
    if box is None:
        raise RuntimeError(f"Pillow's default font rendered no ink for {char!r}.")
    glyph = image.crop(box)
    width = max(1, round(glyph.width * _GLYPH_HEIGHT / glyph.height))
    # Bitmap fallback glyphs are ~11 px tall: bicubic upscaling keeps them smooth enough.
    return glyph.resize((width, _GLYPH_HEIGHT), Image.Resampling.BICUBIC)


@functools.lru_cache(maxsize=1)
def _glyph_pool():
    """Returns (glyphs float32 (10, S, B, P, P) in [0, 1]) centred by centre of mass."""
    size = _GLYPH_CANVAS
    pool = np.zeros((10, len(_GLYPH_STROKES), len(_GLYPH_BLURS), size, size), np.float32)
    for digit in range(10):
        glyph = _render_glyph(str(digit))
        arr = np.asarray(glyph, dtype=np.float64)
        rows, cols = np.indices(arr.shape)
        mass = arr.sum()
        com_r, com_c = (rows * arr).sum() / mass, (cols * arr).sum() / mass
        canvas = Image.new("L", (size, size), 0)
        canvas.paste(glyph, (round(size / 2 - com_c), round(size / 2 - com_r)))
        for i, stroke in enumerate(_GLYPH_STROKES):
            if stroke < 0:
                thick = canvas.filter(ImageFilter.MinFilter(-stroke))
            elif stroke > 0:
                thick = canvas.filter(ImageFilter.MaxFilter(stroke))
            else:
                thick = canvas
            for j, radius in enumerate(_GLYPH_BLURS):
                blurred = thick.filter(ImageFilter.GaussianBlur(radius))
                pool[digit, i, j] = np.asarray(blurred, dtype=np.float32) / 255.0
    pool.setflags(write=False)
    return pool


def _sample_affine(pool, glyph, inverse, centre_out, chunk=2048):
    """Bilinear-samples `pool[glyph[k]]` at 28x28 points mapped by per-sample affines.

    `pool` is (G, P, P); input point = glyph centre + inverse[k] @ (output point - centre_out[k]).
    """
    n, size = len(glyph), pool.shape[-1]
    grid = np.arange(DIGIT_SIZE, dtype=np.float64) + 0.5
    out = np.empty((n, DIGIT_SIZE, DIGIT_SIZE), np.float32)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        m = inverse[sl]
        dr = grid[None, :, None] - centre_out[sl, 0, None, None]  # (b, 28, 1)
        dc = grid[None, None, :] - centre_out[sl, 1, None, None]  # (b, 1, 28)
        r = size / 2 + m[:, 0, 0, None, None] * dr + m[:, 0, 1, None, None] * dc - 0.5
        c = size / 2 + m[:, 1, 0, None, None] * dr + m[:, 1, 1, None, None] * dc - 0.5
        # The glyph canvas has an empty margin, so clamping equals zero padding.
        r = np.clip(r, 0.0, size - 1.001)
        c = np.clip(c, 0.0, size - 1.001)
        r0 = r.astype(np.intp)
        c0 = c.astype(np.intp)
        fr = (r - r0).astype(np.float32)
        fc = (c - c0).astype(np.float32)
        g = glyph[sl, None, None]
        top = pool[g, r0, c0] * (1 - fc) + pool[g, r0, c0 + 1] * fc
        bottom = pool[g, r0 + 1, c0] * (1 - fc) + pool[g, r0 + 1, c0 + 1] * fc
        out[sl] = top * (1 - fr) + bottom * fr
    return out


@functools.lru_cache(maxsize=8)
def _procedural_cached(n, seed):
    pool = _glyph_pool()
    rng = np.random.default_rng(seed)
    # Random draws, in this order (each a vector of length n):
    digit = rng.integers(0, 10, n)
    stroke = rng.integers(0, pool.shape[1], n)
    blur = rng.integers(0, pool.shape[2], n)
    angle = np.deg2rad(rng.uniform(-12.0, 12.0, n))
    shear = rng.uniform(-0.45, 0.15, n)  # negative leans the top to the right, like handwriting
    height = rng.uniform(15.5, 20.5, n)  # output pixels; MNIST fits digits into 20x20
    aspect = rng.uniform(0.8, 1.15, n)  # width scale relative to height
    shift = rng.uniform(-1.0, 1.0, (n, 2))
    gain = rng.uniform(1.2, 1.8, n)

    # Output-to-glyph map: scale @ inverse(aspect) @ inverse(shear) @ rotation(-angle).
    scale = _GLYPH_HEIGHT / height
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
    unshear = np.zeros((n, 2, 2))
    unshear[:, 0, 0] = unshear[:, 1, 1] = 1.0
    unshear[:, 1, 0] = -shear
    unaspect = np.zeros((n, 2, 2))
    unaspect[:, 0, 0] = 1.0
    unaspect[:, 1, 1] = 1.0 / aspect
    inverse = scale[:, None, None] * (unaspect @ unshear @ rot)
    centre = DIGIT_SIZE / 2 + shift

    glyph = np.ravel_multi_index((digit, stroke, blur), pool.shape[:3])
    images = _sample_affine(pool.reshape(-1, *pool.shape[3:]), glyph, inverse, centre)
    images = np.clip(images * gain[:, None, None].astype(np.float32), 0.0, 1.0)
    result = np.rint(images * 255.0).astype(np.uint8)
    result.setflags(write=False)
    return result


def procedural_digits(n=10000, seed=0):
    """Renders MNIST-like digits with Pillow's bundled font; needs no file and no network.

    Each digit is one of '0'..'9' (uniform) drawn with Pillow's default font
    (`ImageFont.load_default(size=...)`, a FreeType font in Pillow >= 10.1; the bitmap font
    otherwise), with a random stroke thickness, blur, rotation (+-12 degrees), shear, height
    (15.5-20.5 px), aspect and sub-pixel shift, white on black and centred by centre of mass
    in 28x28 like MNIST. A pool of 80 glyph variants (10 digits x 4 strokes x 2 blurs) is
    rendered once at 4x resolution; the affine jitter is applied per digit with vectorised
    bilinear sampling. The result is deterministic for a seed (for a given Pillow and
    FreeType) and cached in memory.

    Args:
        n: number of digits (positive int).
        seed: non-negative int seed for `np.random.default_rng`.

    Returns:
        uint8 array (n, 28, 28); a fresh, writable copy.

    Example:

    >>> digits = procedural_digits(100, seed=0)
    >>> digits.shape, digits.dtype
    ((100, 28, 28), dtype('uint8'))
    """
    n = check_int("n", n, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    return _procedural_cached(n, seed).copy()
