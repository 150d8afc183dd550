"""Tests for kerastp.visualize: strip layout and pixels, GIF frames, errors, atomic writes."""

import numpy as np
import pytest
from PIL import Image

from kerastp import saving, visualize
from kerastp.visualize import save_forecast_gif, save_forecast_pictures, save_forecast_strip

LABEL_WIDTH = 64  # the strip's label column
GIF_HEADER = 12  # the GIF's caption band above the frames
GIF_PANEL_GAP = 2
GIF_MIN_WIDTH = visualize.GIF_MIN_WIDTH


def _frames(rng, t, h, w, c=1):
    """Frames whose values are exact multiples of 1/255, so each maps to one uint8 value."""
    return rng.integers(0, 256, size=(t, h, w, c)).astype(np.float32) / 255.0


def _uint8(frames):
    return np.rint(np.asarray(frames, np.float64) * 255.0).astype(np.uint8)[..., 0]


def _strip_cell(strip, row, column, h, w, scale, gap):
    """The (h, w) frame at (row, column) of a strip, downsampled from the scaled image."""
    top = gap + row * (h + gap)
    left = LABEL_WIDTH + column * (w + gap)
    block = strip[top * scale : (top + h) * scale, left * scale : (left + w) * scale]
    # NEAREST upscaling: every pixel of each scale x scale block is the same value.
    np.testing.assert_array_equal(
        block, np.repeat(np.repeat(block[::scale, ::scale], scale, 0), scale, 1)
    )
    return block[::scale, ::scale]


def _gif_frames(path):
    with Image.open(path) as image:
        frames = []
        for i in range(image.n_frames):
            image.seek(i)
            frames.append(np.asarray(image.convert("L")))
        return image.n_frames, image.size, frames


# --------------------------------------------------------------------------------------------
# Strip
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t_in, t_out, h, w, scale, gap, with_truth",
    [
        (10, 10, 64, 64, 2, 2, True),
        (4, 6, 16, 12, 1, 0, True),
        (7, 3, 8, 20, 3, 5, False),
        (2, 5, 10, 10, 2, 1, False),
    ],
)
def test_strip_dimensions(tmp_path, t_in, t_out, h, w, scale, gap, with_truth):
    rng = np.random.default_rng(0)
    past = _frames(rng, t_in, h, w)
    forecast = _frames(rng, t_out, h, w)
    truth = _frames(rng, t_out, h, w) if with_truth else None
    path = save_forecast_strip(past, truth, forecast, tmp_path / "s.png", scale=scale, gap=gap)
    assert path == tmp_path / "s.png"
    rows = 3 if with_truth else 2
    columns = max(t_in, t_out)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode == "L"
        assert image.size == (
            (LABEL_WIDTH + columns * (w + gap)) * scale,
            (rows * (h + gap) + gap) * scale,
        )


@pytest.mark.parametrize("scale, gap", [(1, 2), (2, 2), (3, 4)])
def test_strip_pixels_are_the_frames(tmp_path, scale, gap):
    rng = np.random.default_rng(1)
    t_in, t_out, h, w = 5, 3, 12, 9
    past = _frames(rng, t_in, h, w)
    truth = _frames(rng, t_out, h, w)
    forecast = _frames(rng, t_out, h, w)
    path = save_forecast_strip(past, truth, forecast, tmp_path / "s.png", scale=scale, gap=gap)
    with Image.open(path) as image:
        strip = np.asarray(image)
    for row, frames in enumerate([past, truth, forecast]):
        for t, frame in enumerate(frames):
            cell = _strip_cell(strip, row, t, h, w, scale, gap)
            np.testing.assert_array_equal(cell, _uint8(frame[None])[0], err_msg=f"{row}, {t}")
    # Empty cells (the truth and forecast rows are shorter) hold the background.
    background = _strip_cell(strip, 2, t_in - 1, h, w, scale, gap)
    assert np.all(background == background[0, 0])
    assert background[0, 0] not in (0, 255)


def test_strip_constant_half_frame_is_128(tmp_path):
    past = np.full((3, 8, 8, 1), 0.5, np.float32)
    forecast = np.full((2, 8, 8, 1), 0.5, np.float32)
    path = save_forecast_strip(past, None, forecast, tmp_path / "s.png", scale=1, gap=2)
    with Image.open(path) as image:
        strip = np.asarray(image)
    for row, count in ((0, 3), (1, 2)):
        for t in range(count):
            assert np.all(_strip_cell(strip, row, t, 8, 8, 1, 2) == 128)


def test_strip_clips_and_cleans_values(tmp_path):
    past = np.array([-0.5, 0.0, 1.0, 2.0, np.nan, np.inf, -np.inf, 0.25], np.float32)
    past = past.reshape(1, 2, 4, 1)
    path = save_forecast_strip(past, None, past, tmp_path / "s.png", scale=1, gap=1)
    with Image.open(path) as image:
        strip = np.asarray(image)
    cell = _strip_cell(strip, 0, 0, 2, 4, 1, 1)
    # nan -> 0, +inf -> large -> 255, -inf -> 0; 0.25 -> 64 (63.75 rounds up).
    np.testing.assert_array_equal(cell, [[0, 0, 255, 255], [0, 255, 0, 64]])


def test_strip_of_rgb_frames_is_their_luminance(tmp_path):
    rgb = np.zeros((1, 4, 4, 3), np.float32)
    rgb[..., 0] = 1.0  # pure red -> L = 299 * 255 / 1000 = 76
    path = save_forecast_strip(rgb, None, rgb, tmp_path / "s.png", scale=1, gap=0)
    with Image.open(path) as image:
        cell = _strip_cell(np.asarray(image), 0, 0, 4, 4, 1, 0)
    assert np.all(cell == 76)


# --------------------------------------------------------------------------------------------
# GIF
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t_in, t_out, with_truth, scale, w",
    [
        (10, 10, True, 3, 20),
        (3, 5, False, 1, 32),
        (6, 2, True, 2, 64),
        (3, 5, False, 1, 20),
    ],
)
def test_gif_frames_and_size(tmp_path, t_in, t_out, with_truth, scale, w):
    # Constant frames: consecutive GIF frames differ only by their caption, which must be
    # enough for Pillow not to merge them.
    h = 16
    past = np.full((t_in, h, w, 1), 0.5, np.float32)
    forecast = np.full((t_out, h, w, 1), 0.5, np.float32)
    truth = np.full((t_out, h, w, 1), 0.5, np.float32) if with_truth else None
    path = save_forecast_gif(past, truth, forecast, tmp_path / "a.gif", scale=scale)
    assert path == tmp_path / "a.gif"
    panels = 2 if with_truth else 1
    n_frames, size, frames = _gif_frames(path)
    assert n_frames == t_in + t_out
    assert size == (
        max(panels * w + (panels - 1) * GIF_PANEL_GAP, GIF_MIN_WIDTH) * scale,
        (h + GIF_HEADER) * scale,
    )
    with Image.open(path) as image:
        assert image.format == "GIF"
        assert image.info.get("loop") == 0


def test_gif_pixels_are_the_frames(tmp_path):
    rng = np.random.default_rng(2)
    t_in, t_out, h, w = 3, 4, 10, 8
    past = _frames(rng, t_in, h, w)
    truth = _frames(rng, t_out, h, w)
    forecast = _frames(rng, t_out, h, w)
    path = save_forecast_gif(past, truth, forecast, tmp_path / "a.gif", scale=1)
    _, _, frames = _gif_frames(path)

    def panel(frame, p):
        left = p * (w + GIF_PANEL_GAP)
        return frame[GIF_HEADER : GIF_HEADER + h, left : left + w]

    for t in range(t_in):  # the input is shown in both panels
        for p in range(2):
            np.testing.assert_array_equal(panel(frames[t], p), _uint8(past[t : t + 1])[0])
    for k in range(t_out):
        np.testing.assert_array_equal(panel(frames[t_in + k], 0), _uint8(truth[k : k + 1])[0])
        np.testing.assert_array_equal(panel(frames[t_in + k], 1), _uint8(forecast[k : k + 1])[0])


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("save", [save_forecast_strip, save_forecast_gif])
@pytest.mark.parametrize(
    "past_shape, truth_shape, forecast_shape, message",
    [
        ((3, 8, 8, 1), (2, 8, 8, 1), (3, 8, 8, 1), "same shape"),  # truth length
        ((3, 8, 8, 1), (2, 8, 9, 1), (2, 8, 8, 1), "same shape"),  # truth size
        ((3, 8, 8, 1), None, (2, 8, 6, 1), "differ in size"),  # forecast size
        ((3, 6, 8, 1), None, (2, 8, 8, 1), "differ in size"),  # past size
        ((3, 8, 8, 3), None, (2, 8, 8, 1), "differ in size"),  # channels
        ((3, 8, 8), None, (2, 8, 8, 1), r"\(T, H, W, C\)"),  # rank
        ((3, 8, 8, 1), None, (1, 2, 8, 8, 1), r"\(T, H, W, C\)"),  # batched forecast
    ],
)
def test_shape_mismatch_raises(tmp_path, save, past_shape, truth_shape, forecast_shape, message):
    past = np.zeros(past_shape, np.float32)
    truth = None if truth_shape is None else np.zeros(truth_shape, np.float32)
    forecast = np.zeros(forecast_shape, np.float32)
    with pytest.raises(ValueError, match=message):
        save(past, truth, forecast, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


def _failing_save(calls, folder):
    original = Image.Image.save

    def save(self, fp, *args, **kwargs):
        calls.append(sorted(p.name for p in folder.iterdir()))  # what lies beside the target
        original(self, fp, *args, **kwargs)  # a complete temporary file exists...
        raise OSError("disk full (simulated)")  # ...then the write fails

    return save


@pytest.mark.parametrize("kind", ["png", "gif"])
def test_failed_write_leaves_no_temporary_and_keeps_the_previous_file(tmp_path, monkeypatch, kind):
    rng = np.random.default_rng(3)
    past, forecast = _frames(rng, 2, 6, 6), _frames(rng, 2, 6, 6)
    save = save_forecast_strip if kind == "png" else save_forecast_gif
    path = tmp_path / f"out.{kind}"
    save(past, None, forecast, path)
    previous = path.read_bytes()

    calls = []
    monkeypatch.setattr(Image.Image, "save", _failing_save(calls, tmp_path))
    with pytest.raises(OSError, match="simulated"):
        save(1.0 - past, None, 1.0 - forecast, path)
    assert len(calls) == 1
    # The temporary was written beside the destination, then removed.
    temporaries = [name for name in calls[0] if name != path.name]
    assert len(temporaries) == 1 and temporaries[0].startswith(f".{path.name}.")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert path.read_bytes() == previous


def test_failed_rename_leaves_no_temporary(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    past, forecast = _frames(rng, 2, 6, 6), _frames(rng, 2, 6, 6)

    def replace(src, dst):
        raise PermissionError("read-only destination (simulated)")

    monkeypatch.setattr(saving.os, "replace", replace)
    with pytest.raises(PermissionError, match="simulated"):
        save_forecast_gif(past, None, forecast, tmp_path / "sub" / "a.gif")
    assert list((tmp_path / "sub").iterdir()) == []


def test_write_creates_missing_parent_directories(tmp_path):
    rng = np.random.default_rng(5)
    past, forecast = _frames(rng, 2, 6, 6), _frames(rng, 2, 6, 6)
    path = save_forecast_strip(past, None, forecast, tmp_path / "a" / "b" / "s.png")
    assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.png"]


# --------------------------------------------------------------------------------------------
# save_forecast_pictures with any object that has predict()
# --------------------------------------------------------------------------------------------


class _ShiftForecaster:
    """Predicts the last input frame shifted by one pixel, `output_frames` times."""

    def __init__(self, output_frames):
        self.output_frames = output_frames
        self.calls = []

    def predict(self, past):
        self.calls.append(past)
        last = np.roll(past[:, -1:], 1, axis=3)
        return np.repeat(last, self.output_frames, axis=1)


def test_save_forecast_pictures_with_a_plain_forecaster(tmp_path):
    rng = np.random.default_rng(6)
    past = _frames(rng, 4, 8, 8)
    truth = _frames(rng, 5, 8, 8)  # longer than the forecast: cropped
    model = _ShiftForecaster(output_frames=3)
    png, gif, forecast = save_forecast_pictures(model, past, truth, tmp_path / "out.whatever")
    assert (png, gif) == (tmp_path / "out.png", tmp_path / "out.gif")
    assert len(model.calls) == 1
    assert model.calls[0].shape == (1, 4, 8, 8, 1) and model.calls[0].dtype == np.float32
    np.testing.assert_array_equal(forecast, np.repeat(np.roll(past[-1:], 1, axis=2), 3, axis=0))
    with Image.open(png) as image:
        strip = np.asarray(image)
    # Default scale 2, gap 2; rows input, truth (cropped to 3), forecast.
    assert strip.shape == ((3 * (8 + 2) + 2) * 2, (LABEL_WIDTH + 4 * (8 + 2)) * 2)
    for k in range(3):
        np.testing.assert_array_equal(
            _strip_cell(strip, 1, k, 8, 8, 2, 2), _uint8(truth[k : k + 1])[0]
        )
        np.testing.assert_array_equal(
            _strip_cell(strip, 2, k, 8, 8, 2, 2), _uint8(forecast[k : k + 1])[0]
        )
    n_frames, _, _ = _gif_frames(gif)
    assert n_frames == 4 + 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gif", "out.png"]
