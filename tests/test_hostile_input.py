"""Hostile input at every boundary: model calls, the LiteRT runner, metrics, data loaders,
pictures, exports and the CLI.

A user's mistake (wrong rank or frame size, wrong dtype, NaN / Inf, out-of-range values, empty
arrays, missing, unreadable or misplaced files, bad numbers or names) must raise an error of
the documented type whose message names the argument and the value, before any TensorFlow
work; the CLI turns it into one `kerastp <command>: error: ...` line and exit status 2 (1 for
other I/O failures), never a traceback. Tables of cases per boundary, then property tests
(hypothesis) over the array loader, CLI arguments and model inputs.

One tiny model (and one tiny TFLite flatbuffer) is built once per module.
"""

import contextlib
import io
import os
import re
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kerastp import cli, evaluation, registry, validation, visualize
from kerastp.data import arrays, moving_mnist, radar
from kerastp.lite import LiteForecaster, StreamingForecaster

T_IN, T_OUT, SIZE = 4, 2, 8
SHAPE = (T_IN, SIZE, SIZE, 1)


@pytest.fixture(scope="module")
def model():
    """stlight_tiny on 4 frames of 8x8 in, 2 out: milliseconds per call."""
    keras.utils.set_random_seed(0)
    return registry.build_model(
        "stlight_tiny", input_frames=T_IN, output_frames=T_OUT, height=SIZE, width=SIZE
    )


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def lite_content():
    """A flatbuffer with the kerastp signature: (B, 4, 8, 8, 1) -> (B, 2, 8, 8, 1), x / 2."""
    import tensorflow as tf

    class Forecast(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, *SHAPE), tf.float32, name="frames")])
        @tf.autograph.experimental.do_not_convert
        def serve(self, frames):
            return {"forecast": frames[:, -T_OUT:] * 0.5}

    module = Forecast()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module
    )
    return converter.convert()


@pytest.fixture(scope="module")
def lite(lite_content):
    return LiteForecaster(lite_content)


def _past(batch=1, seed=0):
    return np.random.default_rng(seed).random((batch, *SHAPE), dtype=np.float32)


def _with(value, index=(0, 0, 0, 0, 0), array=None):
    array = _past() if array is None else array.copy()
    array[index] = value
    return array


def _run(argv):
    """`kerastp.cli.main(argv)` -> (exit status, stdout, stderr); SystemExit is a status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exit_info:
            code = exit_info.code
    return code, out.getvalue(), err.getvalue()


def _assert_cli_error(code, err, command, *names):
    """One error line, argparse style, naming one of `names`; no traceback."""
    assert code in (1, 2), (code, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"kerastp {command}: error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    if names:
        assert any(name in errors[0] for name in names), (names, err)


# --------------------------------------------------------------------------------------------
# Forecaster.__call__ and predict
# --------------------------------------------------------------------------------------------

MODEL_CASES = {
    "rank 4": (np.zeros(SHAPE, np.float32), r"rank 5.*got shape \(4, 8, 8, 1\)"),
    "rank 6": (np.zeros((1, *SHAPE, 1), np.float32), r"rank 5"),
    "wrong T": (np.zeros((1, 3, SIZE, SIZE, 1), np.float32), r"axis 1 is 3, expected 4"),
    "wrong H": (np.zeros((1, T_IN, 6, SIZE, 1), np.float32), r"axis 2 is 6, expected 8"),
    "wrong W": (np.zeros((1, T_IN, SIZE, 9, 1), np.float32), r"axis 3 is 9, expected 8"),
    "wrong C": (np.zeros((1, T_IN, SIZE, SIZE, 3), np.float32), r"axis 4 is 3, expected 1"),
    "empty batch": (np.zeros((0, *SHAPE), np.float32), r"empty batch.*\(0, 4, 8, 8, 1\)"),
    "int32": (np.zeros((1, *SHAPE), np.int32), r"floating-point.*int32"),
    "uint8": (np.zeros((1, *SHAPE), np.uint8), r"divide uint8 frames by 255"),
    "bool": (np.zeros((1, *SHAPE), bool), r"floating-point.*bool"),
    "string": (np.full((1, *SHAPE), "a"), r"floating-point.*(<U1|string)"),
    "object": (np.zeros((1, *SHAPE)).astype(object), r"(Python objects|dtype object)"),
    "NaN": (_with(np.nan), r"`past` holds 1 NaN or Inf"),
    "Inf": (_with(-np.inf), r"`past` holds 1 NaN or Inf"),
    "list of arrays": ([np.zeros(SHAPE, np.float32)], r"`past` as one array"),
    "ragged list": ([[0.0], [0.0, 1.0]], r"`past` must be an array of frames"),
    "None": (None, r"`past` as one array"),
}


@pytest.mark.parametrize("how", ["numpy", "tensor"])
@pytest.mark.parametrize("case", MODEL_CASES)
def test_model_call_rejects_hostile_input_before_keras(model, case, how):
    import tensorflow as tf

    value, message = MODEL_CASES[case]
    if how == "tensor":
        if not isinstance(value, np.ndarray) or value.dtype == object:
            pytest.skip("no tensor of this value")
        value = tf.constant(value)
    with pytest.raises(ValueError, match=message) as error:
        model(value)
    # Raised by kerastp itself, not wrapped by Keras' "Exception encountered when calling".
    assert "Exception encountered" not in str(error.value)
    assert error.traceback[-1].path.parent.name in ("kerastp", "models"), error.traceback[-1]


@pytest.mark.parametrize("case", [c for c in MODEL_CASES if c not in ("None", "list of arrays")])
def test_model_predict_rejects_hostile_input(model, case):
    value, _ = MODEL_CASES[case]
    with pytest.raises(ValueError, match="past") as error:
        model.predict(value, verbose=0)
    assert "Exception encountered" not in str(error.value)


def test_model_accepts_float64_lists_and_out_of_range_values(model):
    """float64 is cast; a nested list is one array; values are not range-checked: a model
    does not know its data's range (the CLI checks it where the range is recorded)."""
    past = _past()
    expected = keras.ops.convert_to_numpy(model(past))
    assert expected.shape == (1, T_OUT, SIZE, SIZE, 1) and np.all(np.isfinite(expected))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(past.astype(np.float64))), expected)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(past.tolist())), expected)
    np.testing.assert_allclose(model.predict(past.tolist(), verbose=0), expected, atol=1e-6)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(model(past * 1e4))))


def test_model_predict_checks_eager_tensors(model):
    import tensorflow as tf

    with pytest.raises(ValueError, match=r"`past` holds 1 NaN or Inf"):
        model.predict(tf.constant(_with(np.inf)), verbose=0)


# --------------------------------------------------------------------------------------------
# LiteRT runner
# --------------------------------------------------------------------------------------------

LITE_CASES = {
    "rank 4": (np.zeros(SHAPE, np.float32), r"`past` must have shape \(B, 4, 8, 8, 1\).*rank 4"),
    "wrong H": (np.zeros((1, T_IN, 7, SIZE, 1), np.float32), r"got \(1, 4, 7, 8, 1\)"),
    "empty batch": (np.zeros((0, *SHAPE), np.float32), r"`past` is empty"),
    "uint8": (np.zeros((1, *SHAPE), np.uint8), r"`past`.*uint8.*divide"),
    "string": (np.full((1, *SHAPE), "x"), r"`past`.*floating-point.*<U1"),
    "object": (np.zeros((1, *SHAPE)).astype(object), r"`past`.*floating-point.*object"),
    "NaN": (_with(np.nan), r"`past` holds 1 NaN or Inf"),
    "ragged": ([[1.0], [1.0, 2.0]], r"`past` must be an array of frames"),
}


@pytest.mark.parametrize("case", LITE_CASES)
def test_lite_predict_rejects_hostile_input(lite, case):
    value, message = LITE_CASES[case]
    with pytest.raises(ValueError, match=message):
        lite.predict(value)


def test_lite_predict_and_stream_on_good_input(lite):
    past = _past(batch=2)
    np.testing.assert_allclose(lite.predict(past), past[:, -T_OUT:] * 0.5, rtol=1e-6)
    stream = StreamingForecaster(lite)
    outputs = [stream.push(frame) for frame in past[0]]
    assert outputs[:-1] == [None] * (T_IN - 1)
    np.testing.assert_allclose(outputs[-1], past[0, -T_OUT:] * 0.5, rtol=1e-6)


@pytest.mark.parametrize(
    "frame, message",
    [
        (np.zeros((1, SIZE, SIZE, 1), np.float32), r"`frame` must have shape \(8, 8, 1\)"),
        (np.zeros((SIZE, 4, 1), np.float32), r"`frame` must have shape \(8, 8, 1\)"),
        (np.zeros((SIZE, SIZE, 1), np.int64), r"`frame`.*floating-point.*int64"),
        (np.full((SIZE, SIZE, 1), np.inf, np.float32), r"`frame` holds 64 NaN or Inf"),
        (np.zeros((0, SIZE, 1), np.float32), r"`frame` is empty"),
    ],
)
def test_stream_push_rejects_hostile_frames(lite, frame, message):
    stream = StreamingForecaster(lite)
    with pytest.raises(ValueError, match=message):
        stream.push(frame)
    assert not stream.ready and stream._count == 0  # nothing was buffered


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"path": "missing.tflite"}, FileNotFoundError, "missing.tflite"),
        ({"path": b"not a flatbuffer"}, ValueError, "TFLite model"),
        ({"num_threads": 0}, ValueError, "num_threads=0"),
        ({"num_threads": 1.5}, ValueError, "num_threads=1.5"),
    ],
)
def test_lite_constructor_rejects_bad_arguments(lite_content, tmp_path, kwargs, error, message):
    kwargs = {"path": lite_content, **kwargs}
    if isinstance(kwargs["path"], str):
        kwargs["path"] = tmp_path / kwargs["path"]
    with pytest.raises(error, match=re.escape(message)):
        LiteForecaster(**kwargs)


def test_stream_rejects_objects_that_are_not_forecasters():
    with pytest.raises(ValueError, match="`forecaster` must have `predict"):
        StreamingForecaster(object())


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _pair(shape=(2, 3, 8, 8, 1), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape), rng.random(shape)


METRIC_CASES = {
    "rank 4": (lambda t, p: (t[0], p[0]), r"`pred` must have rank 5"),
    "shape": (lambda t, p: (t, p[:, :2]), r"same shape"),
    "empty": (lambda t, p: (t[:0], p[:0]), r"empty"),
    "NaN": (lambda t, p: (t, _with(np.nan, array=p)), r"`pred` holds 1 non-finite"),
    "Inf in true": (lambda t, p: (_with(np.inf, array=t), p), r"`true` holds 1 non-finite"),
    "bool": (lambda t, p: (t, p > 0.5), r"`pred` must hold real numbers"),
    "string": (lambda t, p: (t, p.astype(str)), r"`pred` must hold real numbers"),
    "object": (lambda t, p: (t, p.astype(object)), r"`pred` must hold real numbers"),
}


@pytest.mark.parametrize("function", ["mse", "mae", "ssim", "psnr", "evaluate_arrays"])
@pytest.mark.parametrize("case", METRIC_CASES)
def test_metrics_reject_hostile_arrays(function, case):
    make, message = METRIC_CASES[case]
    true, pred = make(*_pair())
    fn = getattr(evaluation, function)
    args = (true, pred) if function == "evaluate_arrays" else (pred, true)
    with pytest.raises(ValueError, match=message):
        fn(*args)


def test_metric_arguments_are_checked():
    true, pred = _pair()
    with pytest.raises(ValueError, match="batch_size.*0"):
        evaluation.evaluate_arrays(true, pred, batch_size=0)
    with pytest.raises(ValueError, match="SSIM needs frames of at least 7x7"):
        evaluation.ssim(*_pair((1, 1, 4, 4, 1)))
    with pytest.raises(ValueError, match=r"`threshold` must be a finite number >= 0.*nan"):
        evaluation.contingency(true, pred, float("nan"))
    with pytest.raises(ValueError, match=r"`scale` must be an int >= 1.*0"):
        evaluation.fss(true, pred, 0.5, 0)


# --------------------------------------------------------------------------------------------
# Data loaders
# --------------------------------------------------------------------------------------------


def _deny_reading(monkeypatch, path):
    """Makes `path` unreadable as `os.access` sees it (root reads files whatever their mode)."""
    real = os.access
    target = Path(path).resolve()

    def access(p, mode, *args, **kwargs):
        if Path(p).resolve() == target and mode & os.R_OK:
            return False
        return real(p, mode, *args, **kwargs)

    monkeypatch.setattr(validation.os, "access", access)


LOAD_ARRAY_CASES = {
    "wrong suffix": ("frames.txt", b"0 1 2", ValueError, r"frames\.txt: unknown suffix '\.txt'"),
    "not npy": ("junk.npy", None, ValueError, r"junk\.npy: not a readable \.npy array"),
    "empty": ("empty.npy", np.zeros((0, 8, 8)), ValueError, r"empty\.npy: the array is empty"),
    "rank 2": ("r2.npy", np.zeros((8, 8)), ValueError, r"r2\.npy: wrong rank 2"),
    "rank 6": ("r6.npy", np.zeros((1,) * 6), ValueError, r"r6\.npy: wrong rank 6"),
    "NaN": ("nan.npy", _with(np.nan), ValueError, r"nan\.npy: holds 1 NaN and 0 Inf"),
    "Inf": ("inf.npy", _with(np.inf), ValueError, r"inf\.npy: holds 0 NaN and 1 Inf"),
    "float64 overflow": (
        "big.npy",
        _with(1e300, array=_past().astype(np.float64)),
        ValueError,
        r"big\.npy: holds 0 NaN and 1 Inf",
    ),  # fmt: skip
    "strings": ("s.npy", np.full((2, 4, 4), "a"), ValueError, r"s\.npy: dtype <U1 is not numeric"),
    "complex": ("c.npy", np.zeros((2, 4, 4), complex), ValueError, r"c\.npy: dtype complex128"),
    "pickle": ("p.npy", np.array([{"a": 1}], dtype=object), ValueError, r"p\.npy: not a readable"),
}


@pytest.mark.parametrize("case", LOAD_ARRAY_CASES)
def test_load_array_rejects_hostile_files(tmp_path, case):
    name, content, error, message = LOAD_ARRAY_CASES[case]
    path = tmp_path / name
    if content is None:
        path.write_text("hello, not an array")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content, allow_pickle=content.dtype == object)
    with pytest.raises(error, match=message):
        arrays.load_array(path)


def test_load_array_missing_unreadable_and_bad_arguments(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"missing\.npy' not found"):
        arrays.load_array(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match=r"path=3"):
        arrays.load_array(3)
    with pytest.raises(ValueError, match=r"key=5"):
        arrays.load_array(tmp_path / "x.npz", key=5)
    path = tmp_path / "locked.npy"
    np.save(path, _past())
    _deny_reading(monkeypatch, path)
    with pytest.raises(PermissionError, match=r"`path`: '.*locked\.npy' is not readable"):
        arrays.load_array(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads mode-000 files")
def test_load_array_mode_000_file(tmp_path):
    path = tmp_path / "locked.npy"
    np.save(path, _past())
    path.chmod(0)
    with pytest.raises(PermissionError, match=r"locked\.npy"):
        arrays.load_array(path)


def _radar_dir(tmp_path, files):
    root = tmp_path / "radar"
    (root / "64").mkdir(parents=True)
    for name, content in files.items():
        (root / "64" / f"{name}.npz").write_bytes(content)
    return root


def test_radar_loader_rejects_hostile_input(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"path: '.*nowhere' does not exist"):
        radar.load_event("mch_20150515", path=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="not a radar data directory"):
        radar.load_event("mch_20150515", path=tmp_path)
    root = _radar_dir(tmp_path, {"junk_20200101": b"not an npz"})
    for resolution in (32, "64", True, None):
        with pytest.raises(ValueError, match=f"resolution={resolution!r}"):
            radar.load_event("junk_20200101", path=root, resolution=resolution)
    with pytest.raises(ValueError, match=r"name must be an event name.*'\.\./x'"):
        radar.load_event("../x", path=root)
    with pytest.raises(FileNotFoundError, match=r"mch_20150515\.npz' not found.*junk_20200101"):
        radar.load_event("mch_20150515", path=root)
    with pytest.raises(ValueError, match=r"junk_20200101\.npz: not a readable \.npz archive"):
        radar.load_event("junk_20200101", path=root)
    buffer = io.BytesIO()
    np.savez(buffer, frames=np.zeros((3, 4, 4), np.float32))
    (root / "64" / "partial_20200101.npz").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match=r"partial_20200101\.npz: missing key 'nodata_frac'"):
        radar.load_event("partial_20200101", path=root)
    _deny_reading(monkeypatch, root / "64" / "partial_20200101.npz")
    with pytest.raises(PermissionError, match=r"partial_20200101\.npz' is not readable"):
        radar.load_event("partial_20200101", path=root)
    with pytest.raises(ValueError, match="batch_size=0"):
        radar.radar_dataset("train", path=root, batch_size=0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"num_sequences": 0}, ValueError, "num_sequences=0"),
        ({"num_sequences": 2.5}, ValueError, "num_sequences=2.5"),
        ({"batch_size": -1}, ValueError, "batch_size=-1"),
        ({"batch_size": True}, ValueError, "batch_size=True"),
        ({"input_frames": 0}, ValueError, "input_frames=0"),
        ({"output_frames": "10"}, ValueError, "output_frames='10'"),
        ({"image_size": 20}, ValueError, "image_size=20"),
        ({"seed": -1}, ValueError, "seed=-1"),
        ({"split": "dev"}, ValueError, "split='dev'"),
        ({"source": "emnist"}, ValueError, "source='emnist'"),
        ({"num_sequences": 2, "batch_size": 4}, ValueError, "num_sequences=2 is smaller"),
        ({"source": "mnist", "path": "nowhere/mnist.npz"}, FileNotFoundError, "nowhere"),
    ],
)
def test_moving_mnist_dataset_rejects_bad_arguments(kwargs, error, message):
    kwargs = {"source": "procedural", "num_sequences": 8, "batch_size": 2, **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        moving_mnist.moving_mnist_dataset(**kwargs)


def test_array_dataset_rejects_bad_arguments(tmp_path):
    frames = np.random.default_rng(0).random((4, 12, 4, 4, 1), dtype=np.float32)
    common = {"input_frames": 4, "output_frames": 4}
    for kwargs, message in [
        ({"stride": 0}, "stride must be >= 1; received stride=0"),
        ({"batch_size": 0}, "batch_size must be >= 1; received batch_size=0"),
        ({"normalization": "max"}, "received method='max'"),
        ({"split": "dev"}, "split='dev'"),
        ({"input_frames": 10}, "sequences have 12 frames, too few"),
        ({"key": "x"}, "key applies to files only"),
        ({"validation_fraction": 1.5}, "validation_fraction=1.5"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            arrays.array_dataset(frames, **{**common, **kwargs})
    with pytest.raises(ValueError, match="source must be a file path or a NumPy array"):
        arrays.array_dataset([1, 2, 3], **common)


# --------------------------------------------------------------------------------------------
# Pictures and exports
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("save", [visualize.save_forecast_strip, visualize.save_forecast_gif])
def test_pictures_reject_hostile_input(tmp_path, save):
    past, forecast = _past()[0], _past(seed=1)[0, :T_OUT]
    target = tmp_path / "x.png"
    for args, kwargs, error, message in [
        ((past[0], None, forecast), {}, ValueError, "`past` must have shape (T, H, W, C)"),
        ((past, None, forecast.astype(str)), {}, ValueError, "`forecast` must hold real"),
        ((past, np.zeros((T_OUT, SIZE, SIZE, 1), bool), forecast), {}, ValueError, "`truth`"),
        ((past, None, forecast[:0]), {}, ValueError, "`forecast` is empty"),
        ((past, None, forecast), {"scale": 0}, ValueError, "scale=0"),
        ((past, None, forecast), {"scale": "2"}, ValueError, "scale='2'"),
    ]:
        with pytest.raises(error, match=re.escape(message)):
            save(*args, target, **kwargs)
    with pytest.raises(IsADirectoryError, match="`path` must be a file path"):
        save(past, None, forecast, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        save(past, None, forecast, tmp_path / "file" / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_load_inputs_checks_the_file_and_the_range(tmp_path):
    good = _past()[0]
    np.save(tmp_path / "good.npy", good)
    np.testing.assert_array_equal(visualize.load_inputs(tmp_path / "good.npy", SHAPE), good)
    for name, array, message in [
        ("u8.npy", (good * 255).astype(np.uint8), "divide uint8 frames by 255"),
        ("range.npy", good * 3.0, r"holds values in \[.*\]; this model works on .*\[0, 1\]"),
        ("shape.npy", good[:, :4], r"must have shape \(4, 8, 8, 1\)"),
        ("rank.npy", good[..., 0], r"rank 4; got shape \(4, 8, 8\)"),
        ("nan.npy", _with(np.nan, (0, 0, 0, 0), good), "holds 1 NaN or Inf"),
        ("empty.npy", good[:0], "is empty"),
    ]:
        np.save(tmp_path / name, array)
        with pytest.raises(ValueError, match=rf"`inputs \(.*{re.escape(name)}\)`.*{message}"):
            visualize.load_inputs(tmp_path / name, SHAPE)
    # Models that record their data units take any real numbers, integers included.
    counts = (good * 300).astype(np.int32)
    np.save(tmp_path / "counts.npy", counts)
    loaded = visualize.load_inputs(tmp_path / "counts.npy", SHAPE, data_units=True)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, counts)
    np.savez(tmp_path / "a.npz", x=good)
    (tmp_path / "a.npy").write_bytes((tmp_path / "a.npz").read_bytes())
    with pytest.raises(ValueError, match=r"a\.npy' is an \.npz archive"):
        visualize.load_inputs(tmp_path / "a.npy")


def test_export_checks_arguments_before_loading_the_model(tmp_path):
    from kerastp import export

    missing = tmp_path / "missing.keras"
    (tmp_path / "file").write_text("x")
    for kwargs, error, message in [
        ({"quantize": "int4"}, ValueError, "quantize='int4'"),
        ({"formats": ("onnx",)}, ValueError, "['onnx']"),
        ({"formats": ()}, ValueError, "none given"),
        ({"max_metric_increase": -0.5}, ValueError, "max_metric_increase=-0.5"),
        ({"max_metric_increase": float("nan")}, ValueError, "max_metric_increase=nan"),
        ({"name": "../up"}, ValueError, "name='../up'"),
        ({"saved_model_dir": tmp_path / "file"}, NotADirectoryError, "saved_model_dir="),
        ({"tflite_dir": tmp_path / "file" / "sub"}, NotADirectoryError, "`tflite_dir`="),
        ({}, FileNotFoundError, "missing.keras"),  # only now is the model looked for
    ]:
        with pytest.raises(error, match=re.escape(message)):
            export.export_artifacts(missing, **{"saved_model_dir": tmp_path / "sm", **kwargs})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_export_functions_reject_bad_paths_and_quantize(model, tmp_path):
    from kerastp import export

    with pytest.raises(ValueError, match=r"`path` must end in \.tflite, got '.*m\.lite'"):
        export.export_tflite(model, tmp_path / "m.lite")
    with pytest.raises(ValueError, match="quantize='int3'"):
        export.export_tflite(model, tmp_path / "m.tflite", quantize="int3")
    with pytest.raises(ValueError, match="quantize='int3'"):
        export.convert_to_tflite(tmp_path, quantize="int3")
    with pytest.raises(ValueError, match=r"`path` must end in \.keras"):
        export.export_keras(model, tmp_path / "m.h5")


# --------------------------------------------------------------------------------------------
# Training and bench arguments (library side)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"epochs": 1.5}, "epochs=1.5"),
        ({"learning_rate": float("inf")}, "learning_rate=inf"),
        ({"learning_rate": float("nan")}, "nan"),
        ({"seed": -1}, "seed=-1"),
        ({"seed": 2**32}, "seed=4294967296"),
        ({"stride": 0}, "stride=0"),
        ({"backup_every": 0}, "backup_every=0"),
        ({"eval_sequences": 10_001}, "10001"),
        ({"data": "imagenet"}, "data='imagenet'"),
        ({"schedule": "cosine"}, "schedule='cosine'"),
        ({"data": "arrays"}, "needs `data_path`"),
        ({"data": "radar", "radar_resolution": 96}, "radar_resolution=96"),
        ({"preset": "resnet50"}, "resnet50"),
    ],
)
def test_train_config_rejects_bad_values(tmp_path, kwargs, message):
    from kerastp.training import TrainConfig

    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(run_dir=str(tmp_path / "run"), **kwargs).resolved()


def test_train_config_rejects_unusable_run_dirs(tmp_path, monkeypatch):
    from kerastp.training import TrainConfig

    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"`run_dir` must be a directory.*file'"):
        TrainConfig(run_dir=str(tmp_path / "file")).resolved()
    with pytest.raises(NotADirectoryError, match=r"cannot be created: '.*file' is a file"):
        TrainConfig(run_dir=str(tmp_path / "file" / "run")).resolved()
    real = os.access
    monkeypatch.setattr(
        validation.os, "access", lambda p, m, *a, **k: Path(p) != tmp_path and real(p, m)
    )
    with pytest.raises(PermissionError, match=r"directory '.*' is not writable"):
        TrainConfig(run_dir=str(tmp_path / "new")).resolved()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"threads": [1, 0]}, "threads=0"),
        ({"threads": []}, "threads=()"),
        ({"warmup": -1}, "warmup=-1"),
        ({"runs": 0}, "runs=0"),
        ({"max_seconds": float("nan")}, "max_seconds=nan"),
        ({"max_seconds": -1.0}, "max_seconds=-1.0"),
    ],
)
def test_bench_checks_arguments_before_building(kwargs, message):
    from kerastp.bench import bench_path

    with pytest.raises(ValueError, match=re.escape(message)):
        bench_path("stlight", **kwargs)  # not a preset: would fail later, after the checks


def test_evaluate_checks_arguments_before_loading(tmp_path):
    from kerastp.evaluation.evaluate import evaluate, evaluate_radar

    missing = tmp_path / "missing.keras"
    with pytest.raises(ValueError, match="batch_size=0"):
        evaluate(missing, batch_size=0)
    with pytest.raises(ValueError, match="num_sequences=10001"):
        evaluate(missing, num_sequences=10_001)
    with pytest.raises(ValueError, match="batch_size=-2"):
        evaluate_radar(missing, batch_size=-2)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        evaluate(missing)


# --------------------------------------------------------------------------------------------
# CLI: one line `kerastp <command>: error: ...`, exit status 2, no traceback
# --------------------------------------------------------------------------------------------


@pytest.fixture
def cli_files(tmp_path, monkeypatch, model_file):
    """A working directory with a model and hostile --inputs files; nothing heavy runs."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    good = _past()[0]
    for name, array in {
        "good.npy": good,
        "nan.npy": _with(np.nan, (0, 0, 0, 0), good),
        "u8.npy": (good * 255).astype(np.uint8),
        "big.npy": good * 255.0,
        "rank3.npy": good[..., 0],
        "short.npy": good[:2],
        "strings.npy": np.full(SHAPE, "a"),
    }.items():
        np.save(tmp_path / name, array)
    np.save(tmp_path / "pickle.npy", np.array([None], dtype=object), allow_pickle=True)
    _forbid_heavy_work(monkeypatch)
    return tmp_path


def _forbid_heavy_work(monkeypatch):
    def heavy(*args, **kwargs):
        raise AssertionError("heavy work reached with invalid arguments")

    monkeypatch.setattr(keras.Model, "fit", heavy)
    monkeypatch.setattr(registry, "build_model", heavy)


CLI_CASES = [
    # (argv, names the message must contain one of)
    (["train", "--preset", "nope"], ["--preset"]),
    (["train", "--epochs", "0"], ["epochs=0"]),
    (["train", "--epochs", "2.5"], ["--epochs", "2.5"]),
    (["train", "--batch-size", "-4"], ["batch_size=-4"]),
    (["train", "--steps-per-epoch", "0"], ["steps_per_epoch=0"]),
    (["train", "--learning-rate", "nan"], ["learning_rate", "nan"]),
    (["train", "--learning-rate", "inf"], ["learning_rate=inf"]),
    (["train", "--learning-rate", "abc"], ["--learning-rate"]),
    (["train", "--seed", "-1"], ["seed=-1"]),
    (["train", "--backup-every", "0"], ["backup_every=0"]),
    (["train", "--eval-sequences", "-1"], ["eval_sequences"]),
    (["train", "--run-dir", "afile"], ["run_dir"]),
    (["train", "--run-dir", "afile/run"], ["run_dir"]),
    (["train", "--data", "arrays"], ["data_path"]),
    (["train", "--data", "arrays", "--data-path", "missing.npy"], ["missing.npy"]),
    (["train", "--data", "arrays", "--data-path", "nan.npy"], ["nan.npy"]),
    (["train", "--data", "arrays", "--data-path", "pickle.npy"], ["pickle.npy"]),
    (["train", "--data", "arrays", "--data-path", "strings.npy"], ["strings.npy"]),
    (["train", "--data", "arrays", "--data-path", "good.npy", "--stride", "0"], ["stride=0"]),
    (["train", "--data", "radar", "--radar-path", "nowhere"], ["nowhere"]),
    (["train", "--data", "radar", "--radar-resolution", "96"], ["--radar-resolution"]),
    (["train", "--data", "mnist", "--mnist-path", "nowhere/mnist.npz"], ["nowhere"]),
    (["train", "--override", "{bad json"], ["--override"]),
    (["evaluate", "--model", "m.keras", "--num-sequences", "0"], ["num_sequences=0"]),
    (["evaluate", "--model", "m.keras", "--num-sequences", "10001"], ["num_sequences=10001"]),
    (["evaluate", "--model", "m.keras", "--batch-size", "0"], ["batch_size=0"]),
    (["evaluate", "--model", "missing.keras"], ["missing.keras"]),
    (["evaluate", "--model", "afile"], ["afile"]),
    (["export", "--model", "m.keras", "--quantize", "int4"], ["--quantize"]),
    (["export", "--model", "m.keras", "--max-metric-increase", "-1"], ["max_metric_increase"]),
    (["export", "--model", "m.keras", "--saved-model-dir", "afile"], ["saved_model_dir"]),
    (["export", "--model", "m.keras", "--tflite-dir", "afile/x"], ["tflite_dir"]),
    (["export", "--model", "m.keras", "--name", "a/b"], ["name='a/b'"]),
    (["export", "--model", "missing.keras"], ["missing.keras"]),
    (["bench", "m.keras", "--batch-size", "0"], ["batch_size=0"]),
    (["bench", "m.keras", "--threads", "0"], ["threads=0"]),
    (["bench", "m.keras", "--runs", "0"], ["runs=0"]),
    (["bench", "m.keras", "--max-seconds", "nan"], ["max_seconds=nan"]),
    (["bench", "no_such_preset"], ["no_such_preset"]),
    (["bench", "missing.tflite"], ["missing.tflite"]),
    (["predict", "--model", "m.keras", "--index", "-1"], ["index=-1"]),
    (["predict", "--model", "m.keras", "--index", "10000"], ["index=10000"]),
    (["predict", "--model", "m.keras", "--inputs", "missing.npy"], ["missing.npy"]),
    (["predict", "--model", "m.keras", "--inputs", "."], ["inputs"]),
    (["predict", "--model", "m.keras", "--inputs", "nan.npy"], ["nan.npy"]),
    (["predict", "--model", "m.keras", "--inputs", "u8.npy"], ["u8.npy"]),
    (["predict", "--model", "m.keras", "--inputs", "big.npy"], ["big.npy"]),
    (["predict", "--model", "m.keras", "--inputs", "rank3.npy"], ["rank3.npy"]),
    (["predict", "--model", "m.keras", "--inputs", "short.npy"], ["short.npy"]),
    (["predict", "--model", "m.keras", "--inputs", "pickle.npy"], ["pickle.npy"]),
    (["predict", "--model", "m.keras", "--out", "afile/f.png"], ["`out`"]),
    (["predict", "--model", "m.keras", "--out", "."], ["`out`"]),
    (["predict", "--model", "missing.keras", "--inputs", "good.npy"], ["missing.keras"]),
    (["demo", "--epochs", "0", "--run-dir", "d"], ["epochs=0"]),
    (["demo", "--run-dir", "afile"], ["run_dir"]),
]


@pytest.mark.parametrize("argv, names", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_reports_one_line_errors(cli_files, model_file, argv, names):
    argv = [str(model_file) if a == "m.keras" else a for a in argv]
    code, out, err = _run(argv)
    assert code == 2, (code, out, err)
    _assert_cli_error(code, err, argv[0], *names)
    assert not (cli_files / "runs").exists() and not (cli_files / "saved_models").exists()


def test_cli_other_io_failures_exit_1(cli_files, model_file, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(visualize, "save_forecast_pictures", disk_full)
    code, _, err = _run(["predict", "--model", str(model_file), "--inputs", "good.npy"])
    assert code == 1
    _assert_cli_error(code, err, "predict", "No space left on device")


def test_cli_predict_accepts_good_inputs(cli_files, model_file):
    code, out, err = _run(
        ["predict", "--model", str(model_file), "--inputs", "good.npy", "--out", "f.npy"]
    )
    assert code == 0, err
    forecast = np.load(cli_files / "f.npy")
    assert forecast.shape == (T_OUT, SIZE, SIZE, 1) and np.all(np.isfinite(forecast))


# --------------------------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------------------------

_DTYPES = st.sampled_from(
    [np.float16, np.float32, np.float64, np.int8, np.int32, np.uint8, bool, np.complex64, "<U2"]
)


def _hostile_arrays(max_rank=6):
    """Arrays of any rank 0..max_rank (sides 0..4) and dtype, with NaN / Inf / huge values
    placed anywhere in the floating ones."""

    @st.composite
    def build(draw):
        dtype = np.dtype(draw(_DTYPES))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_rank, min_side=0, max_side=4))
        if dtype.kind == "U":
            return np.full(shape, "ab", dtype)
        array = draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(dtype, **_finite(dtype))))
        if dtype.kind == "f" and array.size and draw(st.booleans()):
            flat = array.reshape(-1)
            for _ in range(draw(st.integers(1, 3))):
                where = draw(st.integers(0, flat.size - 1))
                flat[where] = draw(st.sampled_from([np.nan, np.inf, -np.inf, np.finfo(dtype).max]))
        return array

    return build()


def _finite(dtype):
    if dtype.kind == "f":
        return {"allow_nan": False, "allow_infinity": False, "min_value": -10, "max_value": 10}
    if dtype.kind == "c":
        return {"allow_nan": False, "allow_infinity": False, "max_magnitude": 10}
    return {}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array=_hostile_arrays(), t_in=st.integers(1, 3), t_out=st.integers(1, 3))
def test_load_array_property(array, t_in, t_out):
    """Any array either loads as float32 (T, H, W, C) / (N, T, H, W, C) and yields windows of
    the right shape and dtype, or raises ValueError naming the file and the problem."""
    _check_load_array(array, t_in, t_out)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array=_hostile_arrays(), t_in=st.integers(1, 3), t_out=st.integers(1, 3))
def test_load_array_property_long(array, t_in, t_out):
    _check_load_array(array, t_in, t_out)


def _check_load_array(array, t_in, t_out):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frames.npy"
        np.save(path, array)
        as_float32 = None
        if array.dtype.kind in "biuf":
            with np.errstate(over="ignore"):
                as_float32 = array.astype(np.float32)
        valid = (
            as_float32 is not None
            and array.ndim in (3, 4, 5)
            and array.size > 0
            and bool(np.all(np.isfinite(as_float32)))
        )
        if not valid:
            with pytest.raises(ValueError) as error:
                arrays.load_array(path)
            message = str(error.value)
            assert "frames.npy" in message
            assert re.search(r"not numeric|wrong rank|empty|NaN|not a readable", message), message
            return
        loaded = np.asarray(arrays.load_array(path))
        expected_shape = array.shape + (1,) if array.ndim == 3 else array.shape
        assert loaded.dtype == np.float32 and loaded.shape == expected_shape
        np.testing.assert_array_equal(loaded, as_float32.reshape(expected_shape))
        frames = loaded.shape[-4]
        if frames < t_in + t_out:
            with pytest.raises(ValueError, match=str(t_in + t_out)):
                arrays.array_windows(loaded, t_in, t_out)
            return
        past, future = arrays.array_windows(loaded, t_in, t_out)
        assert past.dtype == future.dtype == np.float32
        assert past.shape[1:] == (t_in, *loaded.shape[-3:])
        assert future.shape[1:] == (t_out, *loaded.shape[-3:])
        assert len(past) == len(future) >= 1


# (flag, dest, kind): the numeric arguments of each subcommand.
_CLI_NUMBERS = {
    "train": [
        ("--epochs", "epochs", "positive"),
        ("--steps-per-epoch", "steps_per_epoch", "positive"),
        ("--batch-size", "batch_size", "positive"),
        ("--learning-rate", "learning_rate", "positive_float"),
        ("--eval-sequences", "eval_sequences", "non_negative"),
        ("--seed", "seed", "non_negative"),
        ("--backup-every", "backup_every", "positive"),
    ],
    "evaluate": [
        ("--num-sequences", "num_sequences", "positive"),
        ("--batch-size", "batch_size", "positive"),
    ],
    "export": [("--max-metric-increase", "max_metric_increase", "non_negative_float")],
    "predict": [("--index", "index", "non_negative")],
    "bench": [
        ("--batch-size", "batch_size", "positive"),
        ("--threads", "threads", "positive"),
        ("--warmup", "warmup", "non_negative"),
        ("--runs", "runs", "positive"),
        ("--max-seconds", "max_seconds", "non_negative_float"),
    ],
}
_BASE_ARGV = {
    "train": ["train", "--run-dir", "run", "--verbose", "0"],
    "evaluate": ["evaluate", "--model", "missing.keras"],
    "export": ["export", "--model", "missing.keras"],
    "predict": ["predict", "--model", "missing.keras"],
    "bench": ["bench", "missing.keras"],
}


@st.composite
def _invalid_cli_argument(draw):
    command = draw(st.sampled_from(sorted(_CLI_NUMBERS)))
    flag, dest, kind = draw(st.sampled_from(_CLI_NUMBERS[command]))
    if kind.endswith("float"):
        # positive: 0 and below are invalid; non-negative: strictly below 0.
        below = 0.0 if kind.startswith("positive") else -1e-9
        bad_numbers = st.one_of(
            st.floats(max_value=below, allow_nan=False).map(repr),
            st.sampled_from(["nan", "inf", "-inf", "NaN"]),
        )
    else:
        minimum = 1 if kind.startswith("positive") else 0
        bad_numbers = st.one_of(
            st.integers(max_value=minimum - 1).map(str),
            st.floats(allow_nan=True).map(repr),  # not an integer at all
        )
    if dest in ("eval_sequences", "num_sequences", "index"):
        upper = {"eval_sequences": 10_001, "num_sequences": 10_001, "index": 10_000}[dest]
        bad_numbers = st.one_of(bad_numbers, st.integers(upper, 2**70).map(str))
    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
    value = draw(st.one_of(bad_numbers, text.filter(lambda s: not _is_number(s))))
    return command, flag, dest, value


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_invalid_cli_argument())
def test_cli_invalid_numbers_property(case):
    """One invalid number or non-number per command: never exit 0, never a traceback, one
    error line naming the argument, and nothing heavy (no model, no fit) is reached."""
    _check_cli_case(case)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_invalid_cli_argument())
def test_cli_invalid_numbers_property_long(case):
    _check_cli_case(case)


def _check_cli_case(case):
    command, flag, dest, value = case
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        _forbid_heavy_work(mp)
        import kerastp.forecasters
        import kerastp.saving

        mp.setattr(kerastp.saving, "load_model", _raise_heavy)
        mp.setattr(kerastp.forecasters, "load_forecaster", _raise_heavy)
        mp.setattr(visualize, "load_forecaster", _raise_heavy)
        code, out, err = _run([*_BASE_ARGV[command], f"{flag}={value}"])
        assert code in (1, 2), (case, code, out, err)
        _assert_cli_error(code, err, command, flag, f"{dest}=", f"`{dest}`")
        assert os.listdir(folder) == []


def _raise_heavy(*args, **kwargs):
    raise AssertionError("heavy work reached with invalid arguments")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(min_size=1, max_size=12))
def test_cli_unknown_presets_property(name):
    assume(name not in registry.PRESETS)
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        _forbid_heavy_work(mp)
        code, _, err = _run(["train", f"--preset={name}", "--run-dir", "run"])
        assert code == 2
        _assert_cli_error(code, err, "train", "--preset")
        assert os.listdir(folder) == []


@st.composite
def _model_inputs(draw):
    """The right shape or a near miss (one axis off by one, one axis missing or extra), any
    dtype (float32 most often), NaN or Inf somewhere in some floating ones."""
    dtype = np.dtype(draw(st.one_of(st.just(np.float32), _DTYPES)))
    axes = [draw(st.integers(0, 2)), *SHAPE]
    mutation = draw(st.sampled_from(["none", "none", "axis", "drop", "add"]))
    if mutation == "axis":
        axes[draw(st.integers(1, 4))] += draw(st.sampled_from([-1, 1]))
    elif mutation == "drop":
        del axes[draw(st.integers(0, 4))]
    elif mutation == "add":
        axes.insert(draw(st.integers(0, 5)), 1)
    if dtype.kind == "U":
        return np.full(axes, "ab", dtype)
    array = np.random.default_rng(draw(st.integers(0, 9))).random(axes)
    if dtype.kind == "f" and array.size and draw(st.integers(0, 3)) == 0:
        array.reshape(-1)[draw(st.integers(0, array.size - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf])
        )
    with np.errstate(invalid="ignore"):
        return array.astype(dtype)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(past=_model_inputs(), use_predict=st.booleans())
def test_forecaster_input_property(model, past, use_predict):
    """A forecast of shape (B, T_out, H, W, C), finite, or a ValueError naming `past`."""
    valid = (
        past.ndim == 5
        and past.shape[0] > 0
        and past.shape[1:] == SHAPE
        and past.dtype.kind == "f"
        and bool(np.all(np.isfinite(past)))
    )
    try:
        if use_predict:
            forecast = model.predict(past, verbose=0)
        else:
            forecast = keras.ops.convert_to_numpy(model(past))
    except ValueError as error:
        assert not valid, error
        assert "past" in str(error) and "Exception encountered" not in str(error)
        return
    assert valid, (past.shape, past.dtype)
    assert forecast.shape == (past.shape[0], T_OUT, SIZE, SIZE, 1)
    assert np.all(np.isfinite(forecast))
