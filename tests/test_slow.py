"""Slow tests (run in CI's second step: `pytest -m slow`)."""

import numpy as np
import pytest

from kerastp import demo, export, registry, training
from kerastp.lite import LiteForecaster

pytestmark = pytest.mark.slow


def test_training_beats_trivial_forecasts(tmp_path):
    """~2,000 sequences of training must beat repeating the last frame by a wide margin."""
    result = training.train(
        preset="stlight_tiny",
        epochs=3,
        steps_per_epoch=40,
        eval_sequences=200,
        verbose=0,
        run_dir=str(tmp_path / "run"),
    )
    baselines = demo.baselines("procedural", 200)
    mse = result["metrics"]["mse"]
    assert mse < 0.75 * baselines["repeat_last_frame"]["mse"]
    assert mse < baselines["mean_of_inputs"]["mse"]
    history = result["history"]["loss"]
    assert history[-1] < history[0]


@pytest.mark.parametrize(
    "preset", ["stlight_large", "convlstm_mmnist", "predrnn_mmnist", "simvp_mmnist", "tau_mmnist"]
)
def test_paper_preset_exports_verify(preset, tmp_path):
    """Full-size presets export to SavedModel and TFLite (builtin ops) and match Keras."""
    model = registry.build_model(preset)
    probe = export.probe_batch(model, batch_size=2, seed=3)
    sm = export.export_saved_model(model, tmp_path / preset, probe=probe)
    assert sm["parity"]["passed"]
    lite = export.export_tflite(model, tmp_path / f"{preset}.tflite", probe=probe)
    assert lite["parity"]["passed"]
    assert not [op for op in lite["ops"] if op.startswith("Flex") or op == "WHILE"]
    forecaster = LiteForecaster(tmp_path / f"{preset}.tflite", num_threads=2)
    expected = np.asarray(model(probe[:1], training=False))
    np.testing.assert_allclose(forecaster.predict(probe[:1]), expected, atol=1e-4)


def test_stored_counts_match_a_recount(paper_counts):
    """Every paper-size preset rebuilt and recounted equals kerastp/preset_counts.json, which
    `kerastp list` and the default suite's parameter and FLOP tests read instead of building
    the models."""
    import json

    recount = {}
    for name in registry.list_presets(tiny=False):
        summary = registry.preset_summary(name, recount=True)
        paper = registry.get_preset(name)["paper"] or {}
        assert summary["paper_params"] == paper.get("params")
        assert summary["paper_flops"] == paper.get("flops")
        assert summary["paper_unused_params"] == paper.get("openstl_unused_params", 0)
        assert summary["paper_zero_state_macs"] == paper.get("openstl_zero_state_macs", 0)
        recount[name] = {
            "config": json.loads(json.dumps(registry.get_preset(name)["config"])),
            **{key: summary[key] for key in ("params", "total_params", "macs", "fvcore_macs")},
        }
    if recount != paper_counts:
        names = set(recount) | set(paper_counts)
        stale = sorted(name for name in names if recount.get(name) != paper_counts.get(name))
        pytest.fail(
            f"kerastp/preset_counts.json is stale for {stale}; their new entries are:\n"
            + json.dumps(recount, indent=2)
        )


@pytest.mark.parametrize("preset", ["convlstm_tiny", "predrnn_tiny", "simvp_tiny", "tau_tiny"])
def test_baselines_convert_to_full_int8(preset, tmp_path):
    """Unrolled recurrences and the translators calibrate and quantise to int8 (no WHILE)."""
    model = registry.build_model(preset)
    rng = np.random.default_rng(0)
    calibration = rng.random((8, 10, 64, 64, 1), dtype=np.float32)
    sidecar = export.export_tflite(
        model, tmp_path / "q.tflite", quantize="int8", representative_data=calibration
    )
    assert sidecar["parity"]["passed"]
    assert not [op for op in sidecar["ops"] if op.startswith("Flex") or op == "WHILE"]
    past = rng.random((2, 10, 64, 64, 1), dtype=np.float32)
    expected = np.asarray(model(past, training=False))
    got = LiteForecaster(tmp_path / "q.tflite").predict(past)
    assert np.mean((got - expected) ** 2) / np.mean(expected**2) < 0.05


def test_ustep_ablation_benchmark_smoke(tmp_path):
    """The benchmark script runs end to end at a tiny budget and writes JSON + markdown."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ustep_ablation.py"
    out = tmp_path / "ablation"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            "--budget-seconds",
            "1",
            "--eval-sequences",
            "8",
            "--data",
            "procedural",
            "--configs",
            "ustep_recurrent_free",
            "stlight_similar_macs",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads(out.with_suffix(".json").read_text())
    assert [r["name"] for r in payload["results"]] == [
        "ustep_recurrent_free",
        "stlight_similar_macs",
    ]
    for row in payload["results"]:
        assert row["train_steps"] >= 2 and np.isfinite(row["mse"])
    table = out.with_suffix(".md").read_text()
    assert "| ustep_recurrent_free |" in table and "| stlight_similar_macs |" in table


def test_latency_benchmark_smoke(tmp_path):
    """benchmarks/latency.py runs end to end on one tiny preset and writes JSON + markdown."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py"
    out = tmp_path / "latency"
    done = subprocess.run(
        [sys.executable, str(script), "--presets", "convlstm_tiny", "--runs", "2",
         "--max-seconds", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(out.with_suffix(".json").read_text())
    runtimes = [(r["runtime"], r.get("threads")) for r in payload["results"]]
    assert ("keras_eager", None) in runtimes and ("tflite_int8", 2) in runtimes
    assert ("onnxruntime", 1) in runtimes
    for row in payload["results"]:
        assert row["median_ms"] > 0 and row["gmacs"] > 0
    assert "| convlstm_tiny |" in out.with_suffix(".md").read_text()


def test_pipeline_benchmark_smoke(tmp_path):
    """benchmarks/pipeline.py measures both rates for a source and writes JSON + markdown."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "pipeline.py"
    out = tmp_path / "pipeline"
    done = subprocess.run(
        [sys.executable, str(script), "--seconds", "1", "--sources", "radar_64", "--out",
         str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(out.with_suffix(".json").read_text())["results"]
    assert row["pipeline_sequences_per_second"] > 0 and row["training_sequences_per_second"] > 0
    assert row["headroom"] == pytest.approx(
        row["pipeline_sequences_per_second"] / row["training_sequences_per_second"]
    )
