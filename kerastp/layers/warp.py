"""Differentiable backward warping and semi-Lagrangian advection, in `keras.ops` only.

Both convert to TFLite builtin ops (FLOOR, CAST, GATHER and arithmetic; no custom op, no
control flow) and run on every Keras backend.
"""

import numpy as np
from keras import ops


def _grid(height, width):
    """(H, W) row and column coordinates as float32 NumPy constants."""
    rows, cols = np.meshgrid(
        np.arange(height, dtype="float32"), np.arange(width, dtype="float32"), indexing="ij"
    )
    return rows, cols


def warp(image, flow, padding="zeros"):
    """Samples `image` at each pixel displaced by `flow`, bilinearly (backward warping).

    `out[b, y, x] = image[b, y + flow[b, y, x, 0], x + flow[b, y, x, 1]]`, interpolated
    bilinearly between the four neighbouring pixels. Differentiable in `image` and in `flow`
    (the gradient with respect to the flow is the local slope of the interpolated image).

    Args:
        image: (B, H, W, C) tensor with static H, W, C.
        flow: (B, H, W, 2) displacement in pixels, (rows, columns) order.
        padding: what positions outside the frame read: "zeros" (nothing is known beyond
            the domain: pysteps' extrapolation of rain) or "border" (the nearest edge pixel:
            pysteps' interpolation of the motion field).

    Returns:
        (B, H, W, C) tensor in `image`'s dtype.

    Example:
    >>> image = keras.ops.reshape(keras.ops.arange(16, dtype="float32"), (1, 4, 4, 1))
    >>> shifted = warp(image, keras.ops.ones((1, 4, 4, 2)))  # one pixel down and right
    >>> [float(v) for v in shifted[0, 0, :, 0]]
    [5.0, 6.0, 7.0, 0.0]
    """
    if padding not in ("zeros", "border"):
        raise ValueError(f"`padding` must be 'zeros' or 'border', got padding={padding!r}")
    height, width, channels = (int(d) for d in image.shape[1:])
    dtype = image.dtype
    flow = ops.cast(flow, "float32")
    image = ops.cast(image, "float32")
    # Every tensor keeps its trailing axis (no EXPAND_DIMS, PACK or axis-dropping slices,
    # which TFLite's XNNPACK delegate does not run).
    rows, cols = (ops.convert_to_tensor(g[..., None]) for g in _grid(height, width))
    sample_rows = ops.add(rows, flow[..., 0:1])
    sample_cols = ops.add(cols, flow[..., 1:2])
    if padding == "zeros":
        # A one-pixel ring of zeros around the frame, and sample positions clipped into
        # [-1, size]: anything further out then reads only zeros, with no masks (fewer,
        # delegable ops in TFLite).
        image = ops.pad(image, [[0, 0], [1, 1], [1, 1], [0, 0]])
        sample_rows = ops.clip(sample_rows, -1.0, float(height)) + 1.0
        sample_cols = ops.clip(sample_cols, -1.0, float(width)) + 1.0
        height, width = height + 2, width + 2
    else:
        sample_rows = ops.clip(sample_rows, 0.0, float(height - 1))
        sample_cols = ops.clip(sample_cols, 0.0, float(width - 1))
    top = ops.floor(sample_rows)
    left = ops.floor(sample_cols)
    frac_rows = sample_rows - top
    frac_cols = sample_cols - left
    bottom = ops.minimum(top + 1.0, float(height - 1))
    right = ops.minimum(left + 1.0, float(width - 1))
    # The four neighbours' indices in the frame, computed in float32 where every index is an
    # exact float32 integer (below 2**24 pixels): the delegate runs float arithmetic only, so
    # the index math stays delegated and one CAST leads to the GATHER.
    if height * width > 2**24:
        top, left, bottom, right = (ops.cast(v, "int32") for v in (top, left, bottom, right))
    row_width = float(width) if height * width <= 2**24 else width
    corners = ops.concatenate(
        [
            top * row_width + left,
            top * row_width + right,
            bottom * row_width + left,
            bottom * row_width + right,
        ],
        axis=-1,
    )
    # One gather of the four neighbours over (B * H * W, C): each batch element's indices
    # are offset by b * H * W (in int32, as the whole batch can pass 2**24).
    flat = ops.reshape(image, (-1, channels))
    offsets = ops.reshape(
        ops.arange(ops.shape(image)[0], dtype="int32") * (height * width), (-1, 1, 1, 1)
    )
    corners = ops.cast(corners, "int32") + offsets
    values = ops.take(flat, ops.reshape(corners, (-1,)), axis=0)
    out_h, out_w = corners.shape[1], corners.shape[2]
    top_left, top_right, bottom_left, bottom_right = ops.split(
        ops.reshape(values, (-1, out_h, out_w, 4 * channels)), 4, axis=-1
    )
    upper = top_left + frac_cols * (top_right - top_left)
    lower = bottom_left + frac_cols * (bottom_right - bottom_left)
    result = upper + frac_rows * (lower - upper)
    return ops.cast(result, dtype)


def semi_lagrangian_displacements(velocity, steps):
    """Backward trajectories of a stationary motion field, one per lead time (pysteps' scheme).

    With `velocity` the backward displacement of one time step (each pixel's content one
    step later comes from `p + velocity(p)`), the displacement after `k` steps follows the
    trajectory through the field: `D_1 = v(p)`, `D_k = D_{k-1} + v(p + D_{k-1})` with `v`
    interpolated bilinearly (the nearest edge value outside the frame, as pysteps does), so
    curved motion stays curved and each lead time samples the advected field once (no
    repeated interpolation blur). A Python loop over the static `steps`.

    Args:
        velocity: (B, H, W, 2) backward displacement per time step in pixels.
        steps: int, lead times.

    Returns:
        list of `steps` tensors (B, H, W, 2): the displacement at lead times 1..steps.

    Example:
    >>> v = keras.ops.ones((1, 8, 8, 2)) * 0.5
    >>> [float(d[0, 0, 0, 0]) for d in semi_lagrangian_displacements(v, 3)]
    [0.5, 1.0, 1.5]
    """
    displacement = velocity
    displacements = [displacement]
    for _ in range(int(steps) - 1):
        displacement = displacement + warp(velocity, displacement, padding="border")
        displacements.append(displacement)
    return displacements
