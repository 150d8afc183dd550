"""Verified export: sidecars, refusal of mismatched artifacts, previous artifacts kept."""

import json
from pathlib import Path

import numpy as np
import pytest

from kerastp import export, forecasters, registry, runs
from kerastp.lite import LiteForecaster


@pytest.fixture(scope="module")
def model():
    return registry.build_model("stlight_tiny", output_frames=4)


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_export_all_writes_verified_artifacts_with_sidecars(model, tmp_path):
    probe = export.probe_batch(model, batch_size=3, seed=5)
    written = export.export_all(
        model,
        "tiny",
        saved_model_dir=tmp_path / "sm",
        tflite_dir=tmp_path / "tfl",
        preset="stlight_tiny",
        probe=probe,
    )
    assert set(written) == {"keras", "saved_model", "tflite"}
    for kind, (path, sidecar) in written.items():
        assert path.exists()
        on_disk = json.loads(runs.sidecar_path(path).read_text())
        assert on_disk["artifact"] == kind
        assert on_disk["preset"] == "stlight_tiny"
        assert on_disk["config"] == json.loads(json.dumps(model.get_config()))
        assert on_disk["parity"]["passed"] is True
        assert on_disk["parity"]["max_abs_error"] <= export.TOLERANCES[kind]
        assert {"kerastp", "tensorflow", "keras", "numpy"} <= set(on_disk["versions"])
        assert on_disk["signature"]["inputs"] == {"frames": [None, 10, 64, 64, 1]}
        assert on_disk["signature"]["outputs"] == {"forecast": [None, 4, 64, 64, 1]}
        assert on_disk["data_scale"]["range"] == [0.0, 1.0]
        assert sidecar == on_disk
    assert "CONV_2D" in written["tflite"][1]["ops"]
    assert _leftovers(tmp_path / "sm") == [] and _leftovers(tmp_path / "tfl") == []
    # The artifacts reproduce the model on data they were not verified with.
    past = export.probe_batch(model, batch_size=2, seed=99)
    expected = np.asarray(model(past, training=False))
    np.testing.assert_allclose(
        forecasters.run_saved_model(tmp_path / "sm" / "tiny", past), expected, atol=1e-5
    )
    lite = LiteForecaster(tmp_path / "tfl" / "tiny.tflite")
    np.testing.assert_allclose(lite.predict(past), expected, atol=1e-4)


@pytest.mark.parametrize("kind", ["keras", "saved_model", "tflite"])
def test_failed_verification_leaves_previous_artifact_and_no_partial_one(
    model, tmp_path, monkeypatch, kind
):
    exporter, path = export._targets("tiny", tmp_path, tmp_path)[kind]
    exporter(model, path)
    before = _snapshot(path)
    sidecar_before = runs.sidecar_path(path).read_text()
    monkeypatch.setitem(export.TOLERANCES, kind, -1.0)  # nothing can pass
    with pytest.raises(export.ExportVerificationError, match="nothing was written"):
        exporter(model, path)
    assert _snapshot(path) == before
    assert runs.sidecar_path(path).read_text() == sidecar_before
    assert _leftovers(tmp_path) == []


def test_failed_first_export_writes_nothing(model, tmp_path, monkeypatch):
    monkeypatch.setitem(export.TOLERANCES, "tflite", -1.0)
    with pytest.raises(export.ExportVerificationError):
        export.export_tflite(model, tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


def test_bad_destination_names(model, tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.keras"):
        export.export_keras(model, tmp_path / "m.h5")
    with pytest.raises(ValueError, match=r"must end in \.tflite"):
        export.export_tflite(model, tmp_path / "m.lite")


def test_lite_forecaster_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        LiteForecaster(tmp_path / "missing.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match="not a valid TFLite model"):
        LiteForecaster(tmp_path / "junk.tflite")
    export.export_tflite(model, tmp_path / "m.tflite")
    lite = LiteForecaster(tmp_path / "m.tflite")
    assert lite.input_shape == (None, 10, 64, 64, 1)
    with pytest.raises(ValueError, match=r"must have shape \(B, 10, 64, 64, 1\)"):
        lite.predict(np.zeros((1, 9, 64, 64, 1), np.float32))
    bad = np.zeros((1, 10, 64, 64, 1), np.float32)
    bad[0, 0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        lite.predict(bad)


def test_lite_module_does_not_import_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, kerastp.lite; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
        "assert 'keras' not in sys.modules, 'keras imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _snapshot(path):
    if path.is_dir():
        return sorted(
            (str(p.relative_to(path)), p.read_bytes()) for p in path.rglob("*") if p.is_file()
        )
    return path.read_bytes()


@pytest.mark.parametrize(
    "quantize",
    [
        pytest.param("fp16", marks=pytest.mark.slow),
        pytest.param("dynamic", marks=pytest.mark.slow),
        "int8",
        pytest.param("int8_io", marks=pytest.mark.slow),
    ],
)
def test_quantized_tflite_is_verified_and_recorded(model, tmp_path, quantize):
    rng = np.random.default_rng(0)
    calibration = rng.random((8, 10, 64, 64, 1), dtype=np.float32)
    sidecar = export.export_tflite(
        model, tmp_path / "q.tflite", quantize=quantize, representative_data=calibration
    )
    assert sidecar["quantization"] == quantize
    assert sidecar["parity"]["passed"]
    assert (
        sidecar["parity"]["relative_squared_error"] <= export.QUANTIZED_MAX_RELATIVE_ERROR[quantize]
    )
    assert not any(op.startswith("Flex") or op == "WHILE" for op in sidecar["ops"])
    lite = LiteForecaster(tmp_path / "q.tflite")
    if quantize == "int8_io":
        assert lite.input_details["dtype"] == np.int8
    past = rng.random((2, 10, 64, 64, 1), dtype=np.float32)
    got = lite.predict(past)
    assert got.dtype == np.float32 and got.shape == (2, 4, 64, 64, 1)
    expected = np.asarray(model(past, training=False))
    relative = np.mean((got - expected) ** 2) / np.mean(expected**2)
    assert relative < 2 * export.QUANTIZED_MAX_RELATIVE_ERROR[quantize]
    # Quantised weights make a smaller file than float32.
    float_size = export.export_tflite(model, tmp_path / "f.tflite")["bytes"]
    assert sidecar["bytes"] < float_size


def test_fp16_is_judged_by_max_abs_error(model, tmp_path):
    sidecar = export.export_tflite(model, tmp_path / "h.tflite", quantize="fp16")
    parity = sidecar["parity"]
    assert parity["judged_by"] == "max_abs_error"
    assert parity["tolerance"] == export.FP16_TOLERANCE == 1e-2
    assert 0 < parity["max_abs_error"] <= 1e-2


def test_integer_export_is_judged_by_the_metric_on_held_out_sequences(model, tmp_path):
    rng = np.random.default_rng(5)
    calibration = rng.random((8, 10, 64, 64, 1), dtype=np.float32)
    past = rng.random((6, 10, 64, 64, 1), dtype=np.float32)
    future = rng.random((6, 4, 64, 64, 1), dtype=np.float32)
    path = tmp_path / "q.tflite"
    sidecar = export.export_tflite(
        model,
        path,
        quantize="int8",
        representative_data=calibration,
        validation_data=(past, future),
        max_metric_increase=0.25,
    )
    parity = sidecar["parity"]
    assert parity["judged_by"] == "mse_increase_on_held_out_sequences"
    assert parity["held_out_sequences"] == 6 and parity["tolerance"] == 0.25

    def mse(pred):  # OpenSTL: per-frame sum, averaged over sequences and frames
        return float(np.mean(np.sum((pred - future) ** 2, axis=(2, 3, 4))))

    keras_mse = mse(np.asarray(model(past, training=False)))
    lite_mse = mse(LiteForecaster(path).predict(past))
    assert parity["mse_keras"] == pytest.approx(keras_mse, rel=1e-5)
    assert parity["mse_tflite"] == pytest.approx(lite_mse, rel=1e-5)
    assert parity["mse_relative_increase"] == pytest.approx(
        (lite_mse - keras_mse) / keras_mse, rel=1e-4, abs=1e-9
    )
    # Judged against the float model's own forecast, the float MSE is 0 and any quantisation
    # error is an unbounded increase: refused, and nothing is left behind.
    own = np.asarray(model(past, training=False))
    target = tmp_path / "refused.tflite"
    with pytest.raises(export.ExportVerificationError, match="held-out sequences"):
        export.export_tflite(
            model,
            target,
            quantize="dynamic",
            validation_data=(past, own),
            max_metric_increase=0.5,
        )
    assert not target.exists() and not _leftovers(tmp_path)
    with pytest.raises(ValueError, match=r"validation_data\[1\] \(future\)"):
        export.export_tflite(model, target, quantize="int8", validation_data=(past, past))
    with pytest.raises(ValueError, match="max_metric_increase"):
        export.export_tflite(model, target, quantize="int8", max_metric_increase=-0.1)


def test_quantized_export_refused_above_threshold_leaves_nothing(model, tmp_path):
    with pytest.raises(export.ExportVerificationError, match="relative squared error"):
        export.export_tflite(model, tmp_path / "q.tflite", quantize="int8", max_relative_error=0.0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="`quantize` must be one of"):
        export.export_tflite(model, tmp_path / "q.tflite", quantize="int4")


def test_streaming_forecaster_matches_batch_forecasts(model, tmp_path):
    from kerastp.lite import StreamingForecaster

    export.export_tflite(model, tmp_path / "m.tflite")
    lite = LiteForecaster(tmp_path / "m.tflite", num_threads=2)
    stream = StreamingForecaster(lite)
    frames = np.random.default_rng(4).random((13, 64, 64, 1), dtype=np.float32)
    outputs = [stream.push(frame) for frame in frames]
    assert outputs[:9] == [None] * 9 and stream.ready
    for t in range(9, 13):
        expected = lite.predict(frames[None, t - 9 : t + 1])[0]
        np.testing.assert_array_equal(outputs[t], expected)
    np.testing.assert_array_equal(stream.window(), frames[3:13])
    stream.reset()
    assert not stream.ready and stream.push(frames[0]) is None
    with pytest.raises(ValueError, match="only 1 of 10 frames"):
        stream.window()
    with pytest.raises(ValueError, match=r"must have shape \(64, 64, 1\)"):
        stream.push(np.zeros((32, 32, 1), np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        stream.push(np.full((64, 64, 1), np.nan, np.float32))


@pytest.mark.slow
def test_saved_model_cli_shows_and_runs_the_signature(model, tmp_path):
    """TensorFlow's own client reads the serving signature and runs it (slow: a subprocess
    that loads TensorFlow; the signature itself is checked in-process by
    `test_contract.py::test_saved_model_reload_at_two_batch_sizes`)."""
    import shutil
    import subprocess
    import sys

    export.export_saved_model(model, tmp_path / "sm")
    cli = shutil.which("saved_model_cli") or str(Path(sys.executable).parent / "saved_model_cli")
    if not Path(cli).exists():
        pytest.skip("saved_model_cli is not installed with this TensorFlow")
    shown = subprocess.run(
        [
            cli,
            "show",
            "--dir",
            str(tmp_path / "sm"),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "inputs['frames']" in shown.stdout and "outputs['forecast']" in shown.stdout
    assert "(-1, 10, 64, 64, 1)" in shown.stdout and "(-1, 4, 64, 64, 1)" in shown.stdout
    past = np.random.default_rng(6).random((2, 10, 64, 64, 1), dtype=np.float32)
    np.save(tmp_path / "past.npy", past)
    ran = subprocess.run(
        [
            cli,
            "run",
            "--dir",
            str(tmp_path / "sm"),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"frames={tmp_path / 'past.npy'}",
            "--outdir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    forecast = np.load(tmp_path / "out" / "forecast.npy")
    np.testing.assert_allclose(forecast, np.asarray(model(past, training=False)), atol=1e-4)


def _op_output_dtypes(path):
    """{op name: set of output dtypes} of a .tflite file's operators."""
    interpreter = LiteForecaster(path).interpreter
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    found = {}
    for op in interpreter._get_ops_details():
        found.setdefault(op["op_name"], set()).update(dtypes[int(t)] for t in op["outputs"])
    return found


def test_int8_keeps_the_models_sensitive_ops_in_float(model, tmp_path):
    """STLight's GELU -> BatchNorm pairs stay float by default; () gives fully integer."""
    rng = np.random.default_rng(1)
    calibration = rng.random((4, 10, 64, 64, 1), dtype=np.float32)
    assert model.int8_float_ops == ("GELU", "MUL")
    selective = export.export_tflite(
        model, tmp_path / "s.tflite", quantize="int8", representative_data=calibration
    )
    assert selective["float_ops"] == ["GELU", "MUL"] and selective["float_layers"] == []
    assert selective["fully_integer"] is False
    dtypes = _op_output_dtypes(tmp_path / "s.tflite")
    assert dtypes["GELU"] == {np.float32} and dtypes["MUL"] == {np.float32}
    assert dtypes["CONV_2D"] == {np.int8} and dtypes["DEPTHWISE_CONV_2D"] == {np.int8}
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(dtypes)

    full = export.export_tflite(
        model, tmp_path / "f.tflite", quantize="int8", representative_data=calibration,
        float_ops=(), float_layers=(),
    )  # fmt: skip
    assert full["fully_integer"] is True and full["float_ops"] == []
    dtypes = _op_output_dtypes(tmp_path / "f.tflite")
    assert dtypes["GELU"] == {np.int8} and dtypes["MUL"] == {np.int8}


@pytest.mark.slow
def test_int8_keeps_a_named_layer_in_float(model, tmp_path):
    """A layer by name: the patch embedding's convolution runs in float, the mixers' in int8
    (slow: two int8 conversions; SimVP's and MotionCast's shipped choices are layers)."""
    calibration = np.random.default_rng(1).random((4, 10, 64, 64, 1), dtype=np.float32)
    by_layer = export.export_tflite(
        model, tmp_path / "l.tflite", quantize="int8", representative_data=calibration,
        float_ops=(), float_layers=("encoder_conv",),
    )  # fmt: skip
    assert by_layer["float_layers"] == ["encoder_conv"]
    assert _op_output_dtypes(tmp_path / "l.tflite")["CONV_2D"] == {np.float32, np.int8}


def test_unknown_float_layers_are_named_and_nothing_is_written(model, tmp_path):
    calibration = np.random.default_rng(2).random((2, 10, 64, 64, 1), dtype=np.float32)
    target = tmp_path / "q.tflite"
    with pytest.raises(ValueError, match=r"\['no_such_layer'\] name no layer"):
        export.export_tflite(model, target, quantize="int8", representative_data=calibration,
                             float_layers=("no_such_layer",))  # fmt: skip
    with pytest.raises(ValueError, match="float_ops"):
        export.export_tflite(model, target, quantize="int8", float_ops=("GELU", 3))
    with pytest.raises(ValueError, match=r"\['GELUU'\] name no operator.*GELU"):
        export.export_tflite(model, target, quantize="int8", representative_data=calibration,
                             float_ops=("GELUU",), float_layers=())  # fmt: skip
    assert list(tmp_path.iterdir()) == []
