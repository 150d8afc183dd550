"""The latency tools: the timing loop, each runtime's forecast function, ONNX conversion."""

import subprocess
import sys

import numpy as np
import pytest

from kerastp import bench, export, registry


class _Clock:
    """A forecast function that advances a fake clock by `step` seconds per call."""

    def __init__(self, monkeypatch, step):
        self.now = 0.0
        self.calls = 0
        self.step = step
        monkeypatch.setattr(bench.time, "perf_counter", lambda: self.now)

    def __call__(self, past):
        self.calls += 1
        self.now += self.step
        return past


def test_timing_loop_counts_runs_and_respects_the_budget(monkeypatch):
    clock = _Clock(monkeypatch, step=0.010)
    stats = bench.time_forecasts(clock, np.zeros(3), warmup=2, runs=7, max_seconds=100)
    assert clock.calls == 2 + 7 and stats["runs"] == 7
    assert stats["median_ms"] == pytest.approx(10.0) and stats["p90_ms"] == pytest.approx(10.0)
    # A budget of 25 ms stops after 3 timed calls, but never below min_runs.
    clock = _Clock(monkeypatch, step=0.010)
    assert bench.time_forecasts(clock, 0, warmup=0, runs=50, max_seconds=0.025)["runs"] == 5
    clock = _Clock(monkeypatch, step=0.010)
    stats = bench.time_forecasts(clock, 0, warmup=0, runs=50, min_runs=1, max_seconds=0.025)
    assert stats["runs"] == 3
    with pytest.raises(ValueError, match="`runs` must be >= 1"):
        bench.time_forecasts(clock, 0, runs=0)
    with pytest.raises(ValueError, match="`warmup`"):
        bench.time_forecasts(clock, 0, warmup=-1)



def test_interleaved_timing_alternates_blocks_and_respects_the_budget(monkeypatch):
    """Each round gives every function its warm-up and its share of the runs, in turn."""
    import time as time_module

    now = {"t": 0.0}
    calls = []

    def forecaster(name, seconds):
        def forecast(past):
            calls.append(name)
            now["t"] += seconds
            return past

        return forecast

    monkeypatch.setattr(time_module, "perf_counter", lambda: now["t"])
    funcs = {"a": forecaster("a", 0.010), "b": forecaster("b", 0.020)}
    stats = bench.time_interleaved(funcs, np.zeros(2), warmup=1, runs=6, rounds=3,
                                   max_seconds=100)  # fmt: skip
    # 1 warm-up + 2 timed per block; the order rotates (3 rounds of 2: a b, a b, b a).
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    assert stats["a"]["runs"] == stats["b"]["runs"] == 6 and stats["b"]["rounds"] == 3
    assert stats["a"]["median_ms"] == pytest.approx(10.0)
    assert stats["b"]["median_ms"] == pytest.approx(20.0)
    # A 60 ms budget is 20 ms per round: two timed calls of "a" (10 ms), one of "b" (20 ms).
    calls.clear()
    stats = bench.time_interleaved(funcs, 0, warmup=0, runs=30, rounds=3, max_seconds=0.06)
    assert stats["a"]["runs"] == 3 * 2 and stats["b"]["runs"] == 3 * 1
    with pytest.raises(ValueError, match="rounds"):
        bench.time_interleaved(funcs, 0, rounds=0)


def test_files_are_timed_in_a_process_without_tensorflow(tmp_path):
    model = registry.build_model("stlight_tiny", output_frames=2)
    export.export_tflite(model, tmp_path / "m.tflite")
    past = export.probe_batch(model, batch_size=1)
    files = {("tflite", 1): (tmp_path / "m.tflite", 1), ("tflite", 2): (tmp_path / "m.tflite", 2)}
    stats = bench.time_files_interleaved(files, past, warmup=1, runs=4, rounds=2)
    assert list(stats) == list(files)
    for row in stats.values():
        assert row["runs"] == 4 and row["rounds"] == 2 and 0 < row["min_ms"] <= row["median_ms"]
    # The timing process loads the files with LiteRT / ONNX Runtime only.
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, kerastp.bench, kerastp.lite; "
         "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "[]"
    (tmp_path / "bad.tflite").write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="bad.tflite"):
        bench.time_files_interleaved({"bad": (tmp_path / "bad.tflite", 1)}, past, runs=1)


def test_every_runtime_forecasts_the_same(tmp_path):
    model = registry.build_model("convlstm_tiny", output_frames=3)
    past = export.probe_batch(model, batch_size=2, seed=1)
    expected = np.asarray(model(past, training=False))
    export.export_saved_model(model, tmp_path / "sm")
    export.export_tflite(model, tmp_path / "m.tflite")
    forecasters = {
        "keras_eager": bench.keras_forecaster(model),
        "keras_xla": bench.keras_forecaster(model, jit_compile=True),
        "saved_model": bench.saved_model_forecaster(tmp_path / "sm"),
        "tflite": bench.tflite_forecaster(tmp_path / "m.tflite", num_threads=2),
    }
    for name, forecast in forecasters.items():
        np.testing.assert_allclose(forecast(past), expected, atol=1e-4, err_msg=name)


def test_onnx_runtime_peer_forecasts_the_same(tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    # STLight's exact GELU lowers to Erfc, which ONNX lacks: the converter's handler maps it.
    model = registry.build_model("stlight_tiny", output_frames=4)
    path = bench.convert_to_onnx(model, tmp_path / "m.onnx")
    forecast = bench.onnx_forecaster(path, num_threads=1)
    for batch in (1, 3):
        past = export.probe_batch(model, batch_size=batch, seed=batch)
        np.testing.assert_allclose(
            forecast(past), np.asarray(model(past, training=False)), atol=1e-4
        )
