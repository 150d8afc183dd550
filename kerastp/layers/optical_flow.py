"""Dense Lucas-Kanade motion from the last frames, in `keras.ops` (no weights).

Classical nowcasting's motion estimate, written so that a model can start from it: MotionCast
adds its learned correction to this field, so an untrained MotionCast already extrapolates
like pysteps' Lucas-Kanade + semi-Lagrangian scheme, and training only has to improve on it.
Every step is a fixed convolution, pooling or elementwise op: it runs on every Keras backend,
is differentiable, and converts to TFLite builtin ops.
"""

import numpy as np
from keras import ops

from kerastp.layers.warp import warp
from kerastp.validation import positive_int

#: Central differences along rows and columns as (3, 3, 1, 1) depth-wise kernels.
_D_ROWS = np.array([[0, -0.5, 0], [0, 0, 0], [0, 0.5, 0]], np.float32).reshape(3, 3, 1, 1)
_D_COLS = np.array([[0, 0, 0], [-0.5, 0, 0.5], [0, 0, 0]], np.float32).reshape(3, 3, 1, 1)


def _pool(x, size):
    return ops.average_pool(x, size, strides=1, padding="same")


def lucas_kanade(
    frames, pairs=2, downsample=2, window=9, ridge=0.3, global_weight=0.2, iterations=1
):
    """Backward displacement per time step, by dense Lucas-Kanade on the last frames.

    1. The last `pairs + 1` frames (summed over channels) are block-averaged by `downsample`
       (a coarse grid where motion of a few pixels per step becomes a fraction of a pixel,
       inside Lucas-Kanade's linear range); a sequence of block sizes, coarse to fine, runs
       steps 2-5 on each grid in turn, every finer grid starting from the coarser grid's
       field (a coarse-to-fine pyramid: the coarse grid finds the large motion, the fine
       one refines it where the detail is);
    2. for each consecutive pair: spatial gradients `I_r`, `I_c` (central differences of
       the pair's mean) and the temporal difference `I_t`;
    3. the structure tensor `[[I_r I_r, I_r I_c], [I_r I_c, I_c I_c]]` and `[I_r I_t, I_c I_t]`,
       summed over the pairs and averaged over a `window` x `window` neighbourhood, plus
       `global_weight` times their mean over the whole frame (so regions without texture
       move with the field's mean motion, as pysteps' interpolation of sparse vectors does);
    4. the 2x2 system solved in closed form with a ridge `ridge * trace` (no motion where
       nothing is measured);
    5. with `iterations` > 1, iterative refinement (Bouguet's iterative Lucas-Kanade): the
       earlier frame of every pair is warped along the field found so far and steps 2-4
       solve for the remaining motion, which is added. One linearised step underestimates
       motions near the gradients' scale; each refinement recovers part of the rest;
    6. the field resized bilinearly to full resolution and scaled back to pixels.

    The result is the *backward* displacement (each pixel's content one step later comes
    from `p + flow(p)`), the convention of `kerastp.layers.warp`.

    The defaults were chosen on the radar training events only (stride-3 windows, never the
    validation events): extrapolating the last frame along this field gives an MSE over the
    hour of 3.69 (mm/h)^2 there, against 4.16 for pysteps' Lucas-Kanade extrapolation and
    5.96 for persistence (+5 min: 0.72, 0.75, 1.72). Two iterations (`iterations=2`, the
    `motioncast_radar` preset's choice until 2026-12-07, also chosen on those training
    windows) bring it to 3.60 and raise CSI at 1 and 5 mm/h and FSS there; only the +5 min
    MSE rises, to 0.74 (`python benchmarks/nowcasting.py --prior-check --out-dir
    benchmarks/results/cpu`).

    On a coarse grid, small cells moving apart share one window and blur into a slower
    common motion. Coarse to fine, `downsample=(2, 1)` with one solve on each grid (the
    `motioncast_radar` preset's choice since 2026-12-07, again on the training windows
    only) lowers the +5 min MSE there to 0.66 (two solves on the 2x2 grid: 0.74) and raises
    CSI at 1 and 5 mm/h and FSS (0.552, 0.250, 0.910 against 0.547, 0.242, 0.909), for an
    MSE over the hour 4% higher (3.75 against 3.60;
    `benchmarks/results/cpu/nowcasting_prior.md`).

    Args:
        frames: (B, T, H, W, C) with T >= pairs + 1; H and W divisible by `downsample`.
        pairs: consecutive frame pairs used (pysteps uses the last three frames: 2 pairs).
        downsample: int, block size of the coarse grid, or a sequence of strictly
            decreasing block sizes (coarse to fine; 1 is the full resolution).
        window: int, neighbourhood of the structure tensor, in pixels of each grid.
        ridge: float, Tikhonov regularisation relative to the frame's mean gradient energy.
        global_weight: float, weight of the frame-wide structure tensor.
        iterations: int, solves of the iterative refinement (1: one linearised solve).

    Returns:
        (B, H, W, 2) float32 backward displacement per step, (rows, columns) in pixels.

    Example:
    >>> y, x = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")
    >>> blob = lambda t: np.exp(-((y - 16) ** 2 + (x - 12 - t) ** 2) / 40.0)
    >>> frames = np.stack([blob(t) for t in range(3)])[None, ..., None].astype("float32")
    >>> flow = lucas_kanade(frames)  # moving right one pixel per step
    >>> -1.1 < float(flow[0, 16, 13, 1]) < -0.8  # backward: minus the motion (ridge shrinks it)
    True
    """
    shape = tuple(int(d) for d in frames.shape[1:])
    steps, height, width = shape[0], shape[1], shape[2]
    if steps < pairs + 1:
        raise ValueError(f"lucas_kanade needs {pairs + 1} frames for {pairs} pairs, got {steps}")
    scales = pyramid_scales(downsample, height, width)
    iterations = positive_int("iterations", iterations)
    frames = ops.cast(frames, "float32")
    last = range(steps - pairs - 1, steps)
    summed = [ops.sum(frames[:, t], axis=-1, keepdims=True) for t in last]
    flow = None  # backward displacement per step on the current grid
    for index, scale in enumerate(scales):
        if scale == 1:
            coarse = summed
        else:
            coarse = [ops.average_pool(f, scale, strides=scale) for f in summed]
        if flow is not None:
            size = (height // scale, width // scale)
            flow = ops.image.resize(
                flow * float(scales[index - 1] / scale), size, interpolation="bilinear"
            )
        for _ in range(iterations):
            step = _solve(coarse, flow, window, ridge, global_weight)
            flow = step if flow is None else flow + step
    if scales[-1] == 1:
        return flow
    return ops.image.resize(flow * float(scales[-1]), (height, width), interpolation="bilinear")


def pyramid_scales(downsample, height=None, width=None, name="downsample"):
    """`downsample` as a tuple of block sizes, coarse to fine, checked against the frame size.

    Args:
        downsample: int, or a list / tuple of strictly decreasing positive ints.
        height, width: optional frame size every block size must divide.
        name: the argument's name in error messages.

    Returns:
        tuple of ints.
    """
    if isinstance(downsample, (int, np.integer)):
        scales = (downsample,)
    elif isinstance(downsample, (list, tuple)):
        scales = tuple(downsample)
    else:
        scales = ()
    if not scales or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) and s >= 1
        for s in scales
    ):
        raise ValueError(
            f"`{name}` must be a positive int or a list / tuple of them, got "
            f"{name}={downsample!r}"
        )
    if any(a <= b for a, b in zip(scales[:-1], scales[1:], strict=True)):
        raise ValueError(
            f"`{name}` must list block sizes from coarse to fine (strictly decreasing), "
            f"got {name}={downsample!r}"
        )
    scales = tuple(int(s) for s in scales)
    for scale in scales:
        if (height is not None and height % scale) or (width is not None and width % scale):
            every = f" (every block size of {name}={downsample!r})" if len(scales) > 1 else ""
            raise ValueError(
                f"frame size {height}x{width} must be divisible by {name}={scale}{every}"
            )
    return scales


def _solve(coarse, flow, window, ridge, global_weight):
    """One Lucas-Kanade solve over consecutive pairs, each earlier frame warped by `flow`."""
    sums = None
    for earlier, later in zip(coarse[:-1], coarse[1:], strict=True):
        if flow is not None:
            earlier = warp(earlier, flow, padding="border")
        mean = 0.5 * (earlier + later)
        padded = ops.pad(mean, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric")
        grad_r = ops.depthwise_conv(padded, _D_ROWS, 1, "valid")
        grad_c = ops.depthwise_conv(padded, _D_COLS, 1, "valid")
        grad_t = later - earlier
        terms = ops.concatenate(
            [grad_r * grad_r, grad_r * grad_c, grad_c * grad_c, grad_r * grad_t, grad_c * grad_t],
            axis=-1,
        )
        sums = terms if sums is None else sums + terms
    local = _pool(sums, window)
    frame_mean = ops.mean(sums, axis=(1, 2), keepdims=True)
    tensor = local + global_weight * frame_mean
    rr, rc, cc, rt, ct = (tensor[..., i] for i in range(5))
    energy = ops.mean(frame_mean[..., 0] + frame_mean[..., 2], axis=(1, 2), keepdims=True)
    lam = ridge * energy + 1e-12
    rr, cc = rr + lam, cc + lam
    det = rr * cc - rc * rc
    # Forward motion (d_r, d_c) solves [[rr, rc], [rc, cc]] d = -[rt, ct]; the backward
    # displacement is its opposite.
    back_r = (cc * rt - rc * ct) / det
    back_c = (rr * ct - rc * rt) / det
    return ops.stack([back_r, back_c], axis=-1)
