"""Pictures of forecasts: a PNG strip (input | truth | forecast rows) and an animated GIF."""

from pathlib import Path

import numpy as np

from kerastp.data.moving_mnist import split_frames
from kerastp.forecasters import load_forecaster
from kerastp.runs import RunRecord
from kerastp.saving import atomic_write, load_npz, save_npy
from kerastp.validation import (
    check_frames,
    check_input_path,
    check_output_file,
    non_negative_int,
    positive_int,
)

#: Narrowest GIF canvas in pixels (before scaling): room for the caption.
GIF_MIN_WIDTH = 96


def _to_uint8(frames, name="frames"):
    """(T, H, W, C) frames in [0, 1] -> uint8 pixels, clipped (NaN and -Inf draw black, +Inf
    white: a diverged forecast is still drawn). ValueError naming `name` for frames that are
    not real numbers, of another rank, or empty."""
    try:
        frames = np.asarray(frames)
    except (ValueError, TypeError) as error:
        raise ValueError(f"`{name}` must be an array of frames: {error}") from error
    if frames.dtype.kind not in "iuf":
        raise ValueError(f"`{name}` must hold real numbers, got dtype {frames.dtype}")
    if frames.ndim != 4:
        raise ValueError(f"`{name}` must have shape (T, H, W, C), got {frames.shape}")
    if frames.size == 0:
        raise ValueError(f"`{name}` is empty: shape {frames.shape}")
    frames = frames.astype(np.float32)
    if frames.shape[-1] not in (1, 3):
        frames = frames[..., :1]
    return (np.clip(np.nan_to_num(frames), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _image(frame):
    from PIL import Image

    return Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)


def _check(past, truth, forecast):
    past, forecast = _to_uint8(past, "past"), _to_uint8(forecast, "forecast")
    truth = None if truth is None else _to_uint8(truth, "truth")
    if truth is not None and truth.shape != forecast.shape:
        raise ValueError(
            f"`truth` and `forecast` must have the same shape, got {truth.shape} and "
            f"{forecast.shape}"
        )
    if past.shape[1:] != forecast.shape[1:]:
        raise ValueError(
            f"`past` and `forecast` frames differ in size: {past.shape} vs {forecast.shape}"
        )
    return past, truth, forecast


def _atomic_save(image, path, **kwargs):
    return atomic_write(path, write=lambda f: image.save(f, **kwargs))


def save_forecast_strip(past, truth, forecast, path, scale=2, gap=2):
    """Writes a PNG with one row each for the input, the truth and the forecast.

    Args:
        past: (T_in, H, W, C) frames in [0, 1].
        truth: (T_out, H, W, C) frames or None (row omitted).
        forecast: (T_out, H, W, C) frames.
        path: destination `.png`.
        scale: int, pixel magnification.
        gap: int, pixels between frames.

    Returns:
        The path written.
    """
    return save_comparison_strip(past, truth, [("forecast", forecast)], path, scale, gap)


def save_comparison_strip(past, truth, forecasts, path, scale=2, gap=2):
    """Writes a PNG with rows for the input, the truth and each labelled forecast.

    Args:
        past: (T_in, H, W, C) frames in [0, 1].
        truth: (T_out, H, W, C) frames or None (row omitted).
        forecasts: list of (label, (T_out, H, W, C) frames), one row each, in order.
        path: destination `.png`.
        scale: int, pixel magnification.
        gap: int, pixels between frames.

    Returns:
        The path written.
    """
    from PIL import Image, ImageDraw

    scale, gap = positive_int("scale", scale), non_negative_int("gap", gap)
    path = check_output_file(path, "path")
    if not forecasts:
        raise ValueError("`forecasts` must hold at least one (label, frames) pair")
    checked = [_check(past, truth, frames) for _, frames in forecasts]
    past, truth = checked[0][0], checked[0][1]
    rows = [("input", past)] + ([("truth", truth)] if truth is not None else [])
    rows += [(str(label), c[2]) for (label, _), c in zip(forecasts, checked, strict=True)]
    h, w = past.shape[1:3]
    label_width = max(64, 8 + 6 * max(len(label) for label, _ in rows))
    columns = max(len(frames) for _, frames in rows)
    canvas = Image.new(
        "L", (label_width + columns * (w + gap), len(rows) * (h + gap) + gap), color=32
    )
    draw = ImageDraw.Draw(canvas)
    for r, (label, frames) in enumerate(rows):
        top = gap + r * (h + gap)
        draw.text((4, top + h // 2 - 5), label, fill=255)
        for t, frame in enumerate(frames):
            canvas.paste(_image(frame).convert("L"), (label_width + t * (w + gap), top))
    if scale > 1:
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    return _atomic_save(canvas, path, format="PNG")


def save_forecast_gif(past, truth, forecast, path, scale=3, duration_ms=200):
    """Writes an animated GIF: the input frames, then truth and forecast side by side.

    Args:
        past: (T_in, H, W, C) frames in [0, 1].
        truth: (T_out, H, W, C) frames or None.
        forecast: (T_out, H, W, C) frames.
        path: destination `.gif`.
        scale: int, pixel magnification.
        duration_ms: int, display time of each frame.

    Returns:
        The path written.
    """
    from PIL import Image, ImageDraw

    scale, duration_ms = positive_int("scale", scale), positive_int("duration_ms", duration_ms)
    path = check_output_file(path, "path")
    past, truth, forecast = _check(past, truth, forecast)
    h, w = past.shape[1:3]
    panels = 2 if truth is not None else 1
    frames = []
    for t in range(len(past) + len(forecast)):
        # Wide enough for the caption, which also keeps equal frames apart (GIF writers merge
        # identical consecutive frames).
        canvas = Image.new(
            "L", (max(panels * w + (panels - 1) * 2, GIF_MIN_WIDTH), h + 12), color=32
        )
        draw = ImageDraw.Draw(canvas)
        if t < len(past):
            for p in range(panels):
                canvas.paste(_image(past[t]).convert("L"), (p * (w + 2), 12))
            draw.text((1, 0), f"input {t + 1}", fill=255)
        else:
            k = t - len(past)
            shown = [truth[k], forecast[k]] if truth is not None else [forecast[k]]
            for p, frame in enumerate(shown):
                canvas.paste(_image(frame).convert("L"), (p * (w + 2), 12))
            draw.text(
                (1, 0), f"+{k + 1}" + (" truth | forecast" if truth is not None else ""), fill=255
            )
        if scale > 1:
            canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
        frames.append(canvas)
    return _atomic_save(
        frames[0],
        path,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=duration_ms,
        loop=0,
    )


def _predict_one(model, past):
    # Keras models take `verbose`; the LiteRT and SavedModel forecasters do not.
    kwargs = {"verbose": 0} if hasattr(model, "fit") else {}
    return np.asarray(model.predict(np.asarray(past, np.float32)[None], **kwargs))[0]


def save_forecast_pictures(model, past, truth, path):
    """Forecasts one sequence and writes `<path>.png` (strip) and `<path>.gif` (animation).

    Args:
        model: a kerastp model (Keras), a `kerastp.lite.LiteForecaster`, or anything with
            `predict(past_batch)`.
        past: (T_in, H, W, C) frames in model scale.
        truth: (T_out, H, W, C) frames or None (cropped to the forecast's length).
        path: destination; its suffix is replaced by `.png` and `.gif`.

    Returns:
        (png_path, gif_path, forecast).
    """
    forecast = _predict_one(model, past)
    if truth is not None:
        truth = np.asarray(truth)[: len(forecast)]
    path = Path(path)
    png = save_forecast_strip(past, truth, forecast, path.with_suffix(".png"))
    gif = save_forecast_gif(past, truth, forecast, path.with_suffix(".gif"))
    return png, gif, forecast


def _frame_shape(model):
    """(T_in, H, W, C) a forecaster expects, or None where it cannot tell."""
    shape = getattr(model, "input_signature_shape", None)
    if shape is None and not hasattr(model, "fit"):  # LiteRT and SavedModel forecasters
        shape = getattr(model, "input_shape", None)
    return None if shape is None else tuple(shape[1:])


def load_inputs(path, frame_shape=None, data_units=False):
    """Reads the `.npy` of (T_in, H, W, C) frames to forecast from, checking it thoroughly.

    Args:
        path: the `.npy` file (never unpickled).
        frame_shape: the (T_in, H, W, C) the model expects, or None (not checked).
        data_units: True for a model that records how its data map to the model scale
            (user arrays, radar): any real numbers are accepted. False for a model working
            on frames in [0, 1] (Moving MNIST): the frames must be floats in [0, 1].

    Returns:
        float32 (T_in, H, W, C).

    Raises:
        FileNotFoundError, PermissionError: no readable file at `path`.
        ValueError: not a `.npy` array (pickles, `.npz`, other files); a non-numeric
            dtype; a wrong rank or shape; an empty array; NaN or Inf; values outside [0, 1]
            for a [0, 1] model. Every message names `inputs` and the file.
    """
    path = check_input_path(path, "inputs")
    try:
        past = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(
            f"`inputs` file '{path}' is not a readable .npy array ({error})"
        ) from error
    if not isinstance(past, np.ndarray):
        past.close()
        raise ValueError(f"`inputs` file '{path}' is an .npz archive; save one array with np.save")
    name = f"inputs ({path})"
    if data_units and past.dtype.kind in "iu":
        past = past.astype(np.float32)
    shape = (None,) * 4 if frame_shape is None else frame_shape
    past = check_frames(past, name, shape, hint=" (T_in, height, width, channels)")
    if not data_units:
        low, high = float(past.min()), float(past.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"`{name}` holds values in [{low:g}, {high:g}]; this model works on frames in "
                "[0, 1] (Moving MNIST: uint8 pixels / 255)"
            )
    return past


def shipped_test_sequences(name, input_frames, output_frames):
    """`(past, truth, attribution)` of the test sequences shipped with pretrained model `name`
    (verified files, `kerastp.pretrained`), or None where it ships no indexed test sequences.

    `mmnist`'s `examples.npz` holds the first sequences of the fixed Moving MNIST test set (made
    from MNIST test digits), so they are what the data source would generate for those
    indices, with no MNIST file and no download. `radar` ships validation windows, not indexed
    test sequences: None.
    """
    from kerastp.pretrained import pretrained_file
    from kerastp.registry import PRETRAINED

    if PRETRAINED.get(str(name), {}).get("files", {}).get("examples") is None:
        return None
    examples = load_npz(pretrained_file(str(name), "examples"))
    if "sequences" not in examples:
        return None
    past, truth = split_frames(examples["sequences"], input_frames, output_frames)
    return past, truth, str(examples.get("attribution", ""))


def shipped_test_example(name, index, input_frames, output_frames):
    """`(past, truth)` of test sequence `index` from `shipped_test_sequences`, or None where
    none is shipped for that index."""
    shipped = shipped_test_sequences(name, input_frames, output_frames)
    if shipped is None or not 0 <= index < len(shipped[0]):
        return None
    return shipped[0][index], shipped[1][index]


def predict_to_pictures(model_path, out, data=None, index=0, inputs=None, mnist_path=None):
    """Forecasts one sequence with a saved model and writes a PNG strip and a GIF, or a `.npy`.

    For a model trained on the user's own arrays or on radar, `inputs` are in the data's units
    (radar: mm/h): they are scaled as recorded at training (run config or sidecar) and, when
    `out` ends in `.npy`, the forecast is written back in the data's units.

    Args:
        model_path: `.keras`, run directory, SavedModel directory, `.tflite` or a pretrained
            name (whose shipped test sequences serve the indices they cover, with no data
            file: `shipped_test_example`).
        out: destination; `.png` and `.gif` are written beside each other, or, for a name
            ending in `.npy`, the forecast array (T_out, H, W, C) alone.
        data: the data source `index` refers to; None: the one the model was trained on
            (Moving MNIST: the standard test set; radar and arrays: validation windows).
        index: sequence index in the standard test set (0 to 9,999), or window index.
        inputs: path of a `.npy` of (T_in, H, W, C) frames to forecast instead (no truth row).
        mnist_path: MNIST location for `data="mnist"`.

    Returns:
        (png_path, gif_path), or (npy_path, None).
    """
    # Arguments first: nothing is loaded for a mistake in them.
    out = check_output_file(out, "out")
    if inputs is not None:
        inputs = check_input_path(inputs, "inputs")
    elif isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 10_000:
        raise ValueError(f"`index` must be an integer in [0, 10000), got index={index!r}")
    from kerastp.pretrained import resolve_model_path

    pretrained = resolve_model_path(model_path)
    # A pretrained name forecasts the test sequences shipped with it where they cover `index`
    # (mmnist's first 8): offline, with no MNIST file, the same frames the data would give.
    shipped_name = model_path if pretrained is not model_path else None
    model_path = pretrained
    model = load_forecaster(model_path)
    source = RunRecord.of(model_path).source(data, mnist_path=mnist_path)
    scaled = source.has_units
    truth = None
    shipped = None
    if inputs is None and shipped_name is not None and data is None and mnist_path is None:
        shipped = shipped_test_example(
            shipped_name, index, model.input_frames, model.output_frames
        )
    if inputs is not None:
        past = load_inputs(inputs, _frame_shape(model), data_units=scaled)
        past = source.transform(past) if scaled else past
    elif shipped is not None:
        past, truth = shipped
    else:
        past, truth = source.example(model, index)
    if out.suffix == ".npy":
        forecast = _predict_one(model, past)
        return save_npy(out, source.inverse(forecast).astype(np.float32)), None
    png, gif, _ = save_forecast_pictures(model, past, truth, out)
    return png, gif
