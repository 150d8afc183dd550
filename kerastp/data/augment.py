"""Augmentations of (past, future) windows that respect the physics of gridded fields.

Rain, like most geophysical fields on a square grid, has no preferred orientation the
network should memorise: a storm moving east is as plausible as one moving north. The
transforms here (rotations by 90 degrees, mirror flips, translations) map one physically
valid sequence to another; the same transform is applied to every frame of the input and the
target, so motion, growth and decay stay consistent across the window. Values are never
resampled (no interpolation), so the data's scale stays exact. NumPy only.
"""

import numpy as np

from kerastp import options
from kerastp.validation import check_int


class WindowAugmentation:
    """Random dihedral transforms and translations of batches of windows.

    Each window gets its own transform, drawn from `rng`: a rotation by `k * 90` degrees
    (k uniform in 0..3; only 0 and 2 when frames are not square), a left-right flip with
    probability 1/2, and a translation by up to `max_shift` pixels along each axis, filling
    the uncovered border with `fill` (0: no rain comes from outside the known domain).

    Args:
        rotate: rotate by multiples of 90 degrees.
        flip: mirror left-right (with rotations: all eight symmetries of the square).
        max_shift: int >= 0, the largest translation in pixels.
        fill: value of pixels shifted in from outside.

    Example:
    >>> augment = WindowAugmentation.from_name("dihedral")
    >>> past, future = np.zeros((4, 6, 8, 8, 1)), np.zeros((4, 12, 8, 8, 1))
    >>> [a.shape for a in augment(past, future, np.random.default_rng(0))]
    [(4, 6, 8, 8, 1), (4, 12, 8, 8, 1)]
    """

    #: Named settings (`kerastp.options.AUGMENTATIONS`).
    PRESETS = {
        "none": {"rotate": False, "flip": False, "max_shift": 0},
        "dihedral": {"rotate": True, "flip": True, "max_shift": 0},
        "dihedral_shift": {"rotate": True, "flip": True, "max_shift": 8},
    }

    def __init__(self, rotate=True, flip=True, max_shift=0, fill=0.0):
        self.rotate = bool(rotate)
        self.flip = bool(flip)
        self.max_shift = check_int("max_shift", max_shift, minimum=0)
        self.fill = float(fill)

    @classmethod
    def from_name(cls, name):
        """The augmentation called `name` ("none", "dihedral", "dihedral_shift"); None for
        "none"."""
        options.check_choice("augment", name, options.AUGMENTATIONS)
        settings = cls.PRESETS[name]
        if not any(settings.values()):
            return None
        return cls(**settings)

    def transform(self, frames, k, flip, shift):
        """One window (T, H, W, C) rotated by `k` * 90 degrees, flipped, then shifted."""
        out = frames
        if flip:
            out = out[:, :, ::-1]
        if k:
            out = np.rot90(out, k, axes=(1, 2))
        d_row, d_col = shift
        if d_row or d_col:
            shifted = np.full_like(out, self.fill)
            height, width = out.shape[1:3]
            rows_to = slice(max(d_row, 0), height + min(d_row, 0))
            rows_from = slice(max(-d_row, 0), height + min(-d_row, 0))
            cols_to = slice(max(d_col, 0), width + min(d_col, 0))
            cols_from = slice(max(-d_col, 0), width + min(-d_col, 0))
            shifted[:, rows_to, cols_to] = out[:, rows_from, cols_from]
            out = shifted
        return np.ascontiguousarray(out)

    def __call__(self, past, future, rng):
        """(past, future) batches with one random transform per window, drawn from `rng`."""
        past, future = np.asarray(past), np.asarray(future)
        square = past.shape[2] == past.shape[3]
        count = len(past)
        turns = rng.integers(0, 4 if square else 2, count) * (1 if square else 2)
        turns = turns if self.rotate else np.zeros(count, int)
        flips = rng.integers(0, 2, count) if self.flip else np.zeros(count, int)
        shifts = rng.integers(-self.max_shift, self.max_shift + 1, (count, 2))
        out_past, out_future = np.empty_like(past), np.empty_like(future)
        split = past.shape[1]
        for i in range(count):
            window = np.concatenate([past[i], future[i]], axis=0)
            moved = self.transform(window, int(turns[i]), bool(flips[i]), tuple(shifts[i]))
            out_past[i], out_future[i] = moved[:split], moved[split:]
        return out_past, out_future

    def get_config(self):
        return {
            "rotate": self.rotate,
            "flip": self.flip,
            "max_shift": self.max_shift,
            "fill": self.fill,
        }
