"""In-process tests of the `kerastp` command line (`kerastp.cli.main`).

One tiny run is trained and exported once per module (`trained`, `exported`); the tests read
it. Everything is written under pytest's temporary directories.
"""

import contextlib
import csv
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from kerastp import __version__, cli, registry, visualize
from kerastp.data import moving_mnist
from kerastp.forecasters import load_forecaster

PRESET = "stlight_tiny"
TRAIN = [
    "train",
    "--preset",
    PRESET,
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--eval-sequences",
    "16",
    "--verbose",
    "0",
]
BATCH_SIZE = 4


def _run(argv):
    """Runs `kerastp.cli.main(argv)` in the current directory; returns (code, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def _score_table(text):
    """{"model": {score: value}, "persistence": {...}} from the CLI's score table."""
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("score"))
    names = lines[header].split()[1:]
    table = {name: {} for name in names}
    for line in lines[header + 1 :]:
        cells = line.split()
        if len(cells) != len(names) + 1:
            break
        for name, cell in zip(names, cells[1:], strict=True):
            table[name][cells[0]] = None if cell == "n/a" else float(cell)
    return table


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run trained through the CLI: `<root>/run`, with the default `--verbose` (its
    output is captured, as when piped)."""
    root = tmp_path_factory.mktemp("cli")
    argv = [*TRAIN, "--batch-size", str(BATCH_SIZE), "--run-dir", "run"]
    at = argv.index("--verbose")
    del argv[at : at + 2]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        code, out, err = _run(argv)
    return SimpleNamespace(root=root, run=root / "run", code=code, out=out, err=err)


@pytest.fixture(scope="module")
def exported(trained):
    """The run exported through the CLI into `<root>/saved_models` and `<root>/tflite`."""
    assert trained.code == 0, trained.err
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(trained.root)
        code, out, err = _run(["export", "--model", "run"])
    assert code == 0, err
    root = trained.root
    return SimpleNamespace(
        root=root,
        out=out,
        paths={
            "keras": root / "saved_models" / f"{PRESET}.keras",
            "saved_model": root / "saved_models" / PRESET,
            "tflite": root / "tflite" / f"{PRESET}.tflite",
        },
    )


@pytest.fixture(scope="module")
def first_sequence():
    """Sequence 0 of the procedural standard test set, as (past, truth)."""
    sequences = moving_mnist.standard_test_set(1, source="procedural")
    past, truth = moving_mnist.split_frames(sequences, 10, 10)
    return past[0], truth[0]


# --------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"kerastp {__version__}"


def test_list_tiny_prints_the_parameter_count(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["list", "--tiny"]) == 0
    out = capsys.readouterr().out
    tiny = registry.list_presets(tiny=True)
    assert PRESET in tiny
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in tiny:
        params = registry.count_trainable_params(registry.build_model(name))
        # Columns: preset, model, params ("35.95K", "11.10M": 2 decimals, SI prefix), ...
        shown = lines[name].split()[2]
        factor = {"K": 1e3, "M": 1e6, "G": 1e9}[shown[-1]]
        assert float(shown[:-1]) == pytest.approx(params / factor, abs=0.005), shown
        assert registry.PRESETS[name]["description"] in lines[name]
    # Only the tiny presets.
    for name in set(registry.PRESETS) - set(tiny):
        assert name not in lines
    # Then the pretrained models, with how to use them and their cards.
    assert "kerastp train --preset NAME" in out
    for name, entry in registry.PRETRAINED.items():
        assert name in lines and entry["card"] in out.replace("\n" + " " * 22, " ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "tiny", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["tiny", "all"]
)
def test_list_json_has_every_preset(monkeypatch, tmp_path, capsys, tiny):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["list", "--json", *(["--tiny"] if tiny else [])]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {row["preset"]: row for row in rows}
    assert len(rows) == len(by_name)
    assert set(by_name) == set(registry.list_presets(tiny=True if tiny else None))
    for name, row in by_name.items():
        spec = registry.PRESETS[name]
        assert row["model"] == spec["model"]
        assert isinstance(row["params"], int) and row["params"] > 0
        assert row["total_params"] >= row["params"]
        assert row["macs"] > 0 and row["fvcore_macs"] > 0
        paper = spec["paper"] or {}
        assert row["paper_params"] == paper.get("params")
        assert row["paper_flops"] == paper.get("flops")
        if paper.get("params"):
            # The paper presets reproduce the published parameter counts (given to 0.1M), with
            # the reference code's unused parameters (OpenSTL's ConvLSTM) counted as it does.
            params = row["params"] + row["paper_unused_params"]
            assert params == pytest.approx(paper["params"], rel=0.02), name
    tiny = by_name[PRESET]
    assert tiny["params"] == registry.count_trainable_params(registry.build_model(PRESET))


# --------------------------------------------------------------------------------------------
# train / evaluate
# --------------------------------------------------------------------------------------------


def test_train_writes_the_run_directory(trained):
    assert trained.code == 0, trained.err
    run = trained.run
    for name in ("config.json", "model.keras", "history.csv", "metrics.json"):
        assert (run / name).is_file(), name
    # Piped output gets Keras' one line per epoch (2 steps), not the progress bar's redraws.
    lines = trained.out.splitlines()
    assert lines[0].startswith("2/2 - ") and "val_loss" in lines[0], lines[0]
    assert lines[1].startswith("run directory: run")
    assert not any(code in trained.out for code in ("\r", "\b", "\x1b")), repr(trained.out)

    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == PRESET
    assert config["batch_size"] == BATCH_SIZE
    assert config["epochs"] == 1 and config["steps_per_epoch"] == 2
    assert config["eval_sequences"] == 16
    assert config["model_config"]["input_frames"] == 10
    assert config["params"] == registry.count_trainable_params(registry.build_model(PRESET))

    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    assert math.isfinite(float(rows[0]["loss"])) and math.isfinite(float(rows[0]["val_loss"]))
    assert float(rows[0]["epoch_seconds"]) > 0

    metrics = json.loads((run / "metrics.json").read_text())
    printed = _score_table(trained.out)["model"]
    for key in ("mse", "mae", "ssim", "psnr"):
        assert math.isfinite(metrics[key]), key
        assert printed[key] == pytest.approx(metrics[key], abs=1e-4)  # printed to 4 places
    assert 0 < metrics["mse"] and -1 <= metrics["ssim"] <= 1
    assert not any(key.endswith("_per_frame") for key in printed)


def test_fit_verbosity_defaults_to_the_bar_on_a_terminal_only(monkeypatch):
    parser = cli.build_parser()
    for command in (["train"], ["demo"]):
        assert parser.parse_args(command).verbose is None
        assert parser.parse_args([*command, "--verbose", "0"]).verbose == 0
    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: True, raising=False)
    assert cli._fit_verbosity(None) == 1
    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: False, raising=False)
    assert cli._fit_verbosity(None) == 2
    assert [cli._fit_verbosity(v) for v in (0, 1, 2)] == [0, 1, 2]


def test_train_rerun_with_other_settings_is_refused(trained, monkeypatch):
    assert trained.code == 0, trained.err
    monkeypatch.chdir(trained.root)
    before = {name: (trained.run / name).read_bytes() for name in ("config.json", "model.keras")}
    code, out, err = _run([*TRAIN, "--batch-size", str(2 * BATCH_SIZE), "--run-dir", "run"])
    assert code == 2
    assert err.startswith("kerastp train: error:")
    assert "batch_size" in err
    assert "steps_per_epoch" not in err and "preset" not in err
    after = {name: (trained.run / name).read_bytes() for name in before}
    assert after == before


def test_evaluate_prints_metrics(trained, monkeypatch):
    assert trained.code == 0, trained.err
    monkeypatch.chdir(trained.root)
    code, out, err = _run(["evaluate", "--model", "run", "--num-sequences", "16", "--json"])
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["data"] == "procedural"
    # The saved model scores what the trained model scored at the end of `train`.
    recorded = json.loads((trained.run / "metrics.json").read_text())
    for key in ("mse", "mae", "ssim", "psnr"):
        assert metrics[key] == pytest.approx(recorded[key], rel=1e-4), key
    assert len(metrics["mse_per_frame"]) == 10


# --------------------------------------------------------------------------------------------
# export / predict
# --------------------------------------------------------------------------------------------


def test_export_writes_verified_artifacts(exported, trained):
    config = json.loads((trained.run / "config.json").read_text())
    printed = {line.split()[0]: line for line in exported.out.splitlines()}
    assert set(printed) == {"keras", "saved_model", "tflite"}
    for kind, path in exported.paths.items():
        assert path.exists(), path
        assert str(path.relative_to(exported.root)) in printed[kind]
        sidecar = json.loads(path.with_name(path.name + ".json").read_text())
        assert sidecar["artifact"] == kind
        assert sidecar["preset"] == PRESET
        assert sidecar["config"] == config["model_config"]
        assert sidecar["parity"]["passed"] is True
        assert sidecar["parity"]["max_abs_error"] <= sidecar["parity"]["tolerance"]
    assert (exported.paths["saved_model"] / "saved_model.pb").is_file()
    # No temporary left next to the artifacts.
    leftovers = [
        p.name
        for folder in ("saved_models", "tflite")
        for p in (exported.root / folder).iterdir()
        if p.name.startswith(".")
    ]
    assert leftovers == []


@pytest.mark.slow
def test_export_int8_is_judged_on_held_out_sequences(exported, trained, monkeypatch):
    monkeypatch.chdir(trained.root)
    argv = ["export", "--model", "run", "--format", "tflite", "--quantize", "int8"]
    code, out, err = _run(argv)
    assert code == 0, err
    path = trained.root / "tflite" / f"{PRESET}_int8.tflite"
    parity = json.loads(path.with_name(path.name + ".json").read_text())["parity"]
    assert parity["judged_by"] == "mse_increase_on_held_out_sequences"
    assert parity["held_out_sequences"] == 64
    assert parity["mse_relative_increase"] <= parity["tolerance"] == 0.10
    assert "held-out sequences" in out and f"{parity['mse_keras']:.2f}" in out
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["float_ops"] == ["GELU", "MUL"] and not sidecar["fully_integer"]
    # The options alone: fully integer (judged by the same gate, here allowed anything).
    full = trained.root / "full"
    code, _, err = _run([*argv, "--float-ops", "--float-layers", "--tflite-dir", str(full),
                         "--max-metric-increase", "1000"])  # fmt: skip
    assert code == 0, err
    sidecar = json.loads((full / f"{PRESET}_int8.tflite.json").read_text())
    assert sidecar["fully_integer"] and sidecar["float_ops"] == sidecar["float_layers"] == []
    code, _, err = _run([*argv, "--float-layers", "nowhere", "--tflite-dir", str(full)])
    assert code == 2 and "nowhere" in err, err
    # A threshold below what int8 costs refuses the file and keeps nothing.
    path.unlink()
    path.with_name(path.name + ".json").unlink()
    code, _, err = _run([*argv, "--max-metric-increase=-1e-9"])
    assert code == 2 and "max_metric_increase" in err
    code, _, err = _run([*argv, "--max-metric-increase", "0"])
    if parity["mse_relative_increase"] > 0:
        assert code == 2 and "held-out sequences" in err, err
        assert not path.exists()


def test_bench_times_every_runtime_of_an_artifact(exported, trained, monkeypatch):
    monkeypatch.chdir(trained.root)
    tflite = str(exported.paths["tflite"])
    code, out, err = _run(
        ["bench", tflite, str(exported.paths["saved_model"]), PRESET, "--runs", "3",
         "--warmup", "1", "--threads", "1", "2", "--json"]
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["model"], r["runtime"], r["threads"]) for r in rows] == [
        (tflite, "tflite", 1),
        (tflite, "tflite", 2),
        (str(exported.paths["saved_model"]), "saved_model", None),
        (PRESET, "keras_eager", None),
        (PRESET, "keras_xla", None),
    ]
    for row in rows:
        assert row["runs"] == 3 and row["batch_size"] == 1
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["p90_ms"]
        assert row["input_shape"] == [1, 10, 64, 64, 1]
    for row in rows[:2]:
        # Which operators XNNPACK runs, and the accuracy the export recorded.
        info = row["delegation"]
        counted = sum(info["delegated_ops"].values()) + sum(info["fallback_ops"].values())
        assert counted == info["nodes"] > 0 and info["delegated"] <= info["nodes"]
        assert info["partitions"] >= 1 and info["delegated_ops"].get("CONV_2D", 0) > 0
        assert row["accuracy"]["quantize"] == "none" and row["accuracy"]["max_abs_error"] < 1e-4
    code, out, err = _run(["bench", tflite, "--runs", "2", "--warmup", "0", "--threads", "1"])
    assert code == 0, err
    assert "delegated" in out and "none: max abs error" in out
    code, _, err = _run(["bench", str(trained.root / "missing.tflite")])
    assert code == 2 and "No .tflite file" in err


def test_bench_shows_what_an_int8_file_keeps_in_float_next_to_its_accuracy():
    """The shipped selective int8 file: latency, delegation, its held-out MSE change and the
    operators it keeps in float, in one row (what its sidecar records)."""
    from kerastp import pretrained
    from kerastp.saving import read_json

    path = str(pretrained.pretrained_file("mmnist", "tflite_int8"))
    code, out, err = _run(["bench", path, "--runs", "2", "--warmup", "1", "--threads", "2",
                           "--json"])  # fmt: skip
    assert code == 0, err
    (row,) = json.loads(out)
    sidecar = read_json(path + ".json")
    assert row["accuracy"]["float_ops"] == sidecar["float_ops"] and sidecar["float_ops"]
    assert row["accuracy"]["mse_relative_increase"] == pytest.approx(
        sidecar["parity"]["mse_relative_increase"])
    assert row["delegation"]["delegated"] > 0
    code, out, err = _run(["bench", path, "--runs", "2", "--warmup", "0", "--threads", "1"])
    assert code == 0, err
    assert f"kept in float: {', '.join(sidecar['float_ops'])}" in out


@pytest.fixture(scope="module")
def forecasts(exported, trained, first_sequence):
    """Forecasts of sequence 0 by the run's model and by each exported artifact."""
    past, _ = first_sequence
    models = {"run": trained.run / "model.keras", **exported.paths}
    return {
        kind: np.asarray(load_forecaster(path).predict(past[None])) for kind, path in models.items()
    }


def test_exported_artifacts_forecast_the_same(forecasts):
    reference = forecasts["run"]
    assert reference.shape == (1, 10, 64, 64, 1)
    assert np.all(np.isfinite(reference))
    np.testing.assert_allclose(forecasts["keras"], reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(forecasts["saved_model"], reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(forecasts["tflite"], reference, rtol=0, atol=1e-4)


def test_a_saved_model_runs_with_another_backend_in_keras_backend(
    exported, forecasts, first_sequence, tmp_path
):
    """A user who trains on JAX keeps `KERAS_BACKEND=jax` in the shell: `kerastp predict` and
    `kerastp bench` of a SavedModel start on TensorFlow (the one backend that loads it) and
    say so, instead of failing on the backend."""
    import os
    import subprocess
    import sys

    np.save(tmp_path / "past.npy", first_sequence[0])
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    saved_model = str(exported.paths["saved_model"])
    done = subprocess.run(
        [sys.executable, "-m", "kerastp", "predict", "--model", saved_model, "--inputs",
         str(tmp_path / "past.npy"), "--out", str(tmp_path / "forecast.npy")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "a SavedModel loads on TensorFlow only; KERAS_BACKEND='jax' is ignored" in done.stderr
    np.testing.assert_allclose(
        np.load(tmp_path / "forecast.npy"), forecasts["saved_model"][0], rtol=0, atol=1e-6
    )
    done = subprocess.run(
        [sys.executable, "-m", "kerastp", "bench", saved_model, "--runs", "2", "--warmup", "0",
         "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert [row["runtime"] for row in json.loads(done.stdout)] == ["saved_model"]


@pytest.mark.parametrize("kind", ["keras", "saved_model", "tflite"])
def test_predict_writes_png_and_gif(exported, forecasts, first_sequence, monkeypatch, kind):
    monkeypatch.chdir(exported.root)
    model = exported.paths[kind]
    out = Path("pictures") / f"{kind}.png"
    code, stdout, err = _run(["predict", "--model", str(model), "--out", str(out)])
    assert code == 0, err
    png, gif = exported.root / out, exported.root / out.with_suffix(".gif")
    assert f"wrote {out} and {out.with_suffix('.gif')}" in stdout

    h = w = 64
    with Image.open(png) as image:
        assert image.format == "PNG"
        # Rows input | truth | forecast, 10 columns, label column 64 px, gap 2, scale 2.
        assert image.size == ((64 + 10 * (w + 2)) * 2, (3 * (h + 2) + 2) * 2)
        strip = np.asarray(image.convert("L"))
    with Image.open(gif) as image:
        assert image.format == "GIF"
        assert image.n_frames == 10 + 10
        # Truth and forecast side by side (gap 2) under a 12 px caption, scale 3.
        assert image.size == ((2 * w + 2) * 3, (h + 12) * 3)

    # The strip shows the input, the truth and this artifact's forecast.
    past, truth = first_sequence
    forecast = forecasts[kind][0]

    def cell(row, t):
        top, left = 2 + row * (h + 2), 64 + t * (w + 2)
        return strip[top * 2 : (top + h) * 2 : 2, left * 2 : (left + w) * 2 : 2].astype(int)

    def to_uint8(frame):
        return (np.clip(frame[..., 0], 0, 1) * 255 + 0.5).astype(int)

    for t in range(10):
        np.testing.assert_array_equal(cell(0, t), to_uint8(past[t]))
        np.testing.assert_array_equal(cell(1, t), to_uint8(truth[t]))
        assert np.max(np.abs(cell(2, t) - to_uint8(forecast[t]))) <= 1


def test_predict_from_a_run_directory_and_an_inputs_file(trained, tmp_path, monkeypatch):
    assert trained.code == 0, trained.err
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.save("past.npy", rng.random((10, 64, 64, 1), dtype=np.float32))
    code, _, err = _run(
        ["predict", "--model", str(trained.run), "--inputs", "past.npy", "--out", "f.png"]
    )
    assert code == 0, err
    with Image.open("f.png") as image:
        assert image.size == ((64 + 10 * 66) * 2, (2 * 66 + 2) * 2)  # no truth row
    with Image.open("f.gif") as image:
        assert image.n_frames == 20
        # One panel, widened to the GIF's minimum width for the caption.
        assert image.size == (max(64, visualize.GIF_MIN_WIDTH) * 3, (64 + 12) * 3)


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


def test_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(
        [
            "demo",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--eval-sequences",
            "16",
            "--run-dir",
            "d",
            "--verbose",
            "0",
        ]
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "d" / "demo.json").read_text())
    assert summary["preset"] == PRESET and summary["data"] == "procedural"
    assert set(summary["artifacts"]) == {"keras", "saved_model", "tflite"}
    for kind, path in summary["artifacts"].items():
        assert (tmp_path / path).exists(), kind
        assert summary["parity"][kind]["passed"] is True
    for picture in summary["pictures"]:
        assert (tmp_path / picture).is_file()
    with Image.open(tmp_path / "d" / "forecast.gif") as image:
        assert image.n_frames == 20
    for key in ("mse", "mae", "ssim", "psnr"):
        assert math.isfinite(summary["metrics"][key])
    assert set(summary["baselines"]) == {"repeat_last_frame", "mean_of_inputs"}
    assert f"{PRESET} on procedural Moving MNIST (3 artifacts verified)" in out
    for name in ("config.json", "model.keras", "metrics.json", "history.csv"):
        assert (tmp_path / "d" / name).is_file()
    # The shipped pretrained model first, on its shipped sequences, in one picture with ours.
    assert (tmp_path / "d" / "comparison.png").is_file()
    scores = summary["pretrained"]
    assert set(scores) == {"mmnist", PRESET}
    assert scores["mmnist"]["n_sequences"] == scores[PRESET]["n_sequences"] == 8
    assert scores["mmnist"]["mse"] < scores[PRESET]["mse"]  # minutes of GPU vs 2 CPU steps


# --------------------------------------------------------------------------------------------
# User errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "demo"])
def test_unknown_preset_is_rejected_by_argparse(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--preset", "no_such_model"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no_such_model'" in err
    assert PRESET in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--model", "missing.keras"],
        ["evaluate", "--model", "missing_run_dir"],
        ["export", "--model", "missing.keras"],
        ["predict", "--model", "missing.keras"],
        ["predict", "--model", "missing.tflite"],
    ],
)
def test_missing_model_path(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(argv)
    assert code == 2
    assert err.startswith(f"kerastp {argv[0]}: error:")
    assert argv[2] in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_missing_mnist_file(trained, tmp_path, monkeypatch):
    assert trained.code == 0, trained.err
    monkeypatch.chdir(tmp_path)
    model = str(trained.run)
    for argv in (
        ["evaluate", "--model", model, "--num-sequences", "4"],
        ["predict", "--model", model, "--out", "p.png"],
        [*TRAIN, "--run-dir", "r"],
    ):
        code, _, err = _run([*argv, "--data", "mnist", "--mnist-path", "nowhere/mnist.npz"])
        assert code == 2, argv
        assert err.startswith(f"kerastp {argv[0]}: error:")
        assert "nowhere/mnist.npz" in err and "does not exist" in err
    assert not (tmp_path / "p.png").exists()


def test_failed_train_start_leaves_the_run_directory_reusable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(
        [*TRAIN, "--run-dir", "r", "--data", "mnist", "--mnist-path", "nowhere/mnist.npz"]
    )
    assert code == 2, err
    assert not (tmp_path / "r" / "config.json").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--override", "{depth: 8"], "kerastp train: error:"),
        (["--eval-sequences", "20000"], "eval_sequences"),
        (["--epochs", "0"], "epochs"),
    ],
)
def test_invalid_train_arguments(extra, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run([*TRAIN, "--run-dir", "r", *extra])
    assert code == 2
    assert message in err


def test_objective_weight_flags_become_model_overrides():
    args = cli.build_parser().parse_args(
        [
            "train",
            "--preset",
            "ustep_tiny",
            "--mask-weight",
            "0.1",
            "--contrastive-weight",
            "0.05",
            "--override",
            '{"micro_frames": 1, "macro_frames": 1}',
        ]
    )
    config = cli._train_config(args)
    assert config.overrides == {
        "micro_frames": 1,
        "macro_frames": 1,
        "mask_weight": 0.1,
        "contrastive_weight": 0.05,
    }
    with pytest.raises(ValueError, match="--override must be a JSON object"):
        cli._train_config(cli.build_parser().parse_args(["train", "--override", "[1, 2]"]))


def test_evaluate_radar_prints_model_and_persistence(tmp_path, monkeypatch):
    from kerastp import registry as reg

    model = reg.build_model("stlight_tiny", input_frames=6, output_frames=12)
    model.save(tmp_path / "radar.keras")
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(["evaluate", "--model", "radar.keras", "--data", "radar"])
    assert code == 0, err
    assert "16 windows" in out and "persistence" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert {"mse", "csi_1.0", "fss"} <= set(rows)
    code, out, err = _run(["evaluate", "--model", "radar.keras", "--data", "radar", "--json"])
    assert code == 0, err
    payload = json.loads(out)
    assert len(payload["model"]["csi"]["1.0"]["per_lead_time"]) == 12


def test_user_arrays_train_export_and_predict_in_data_units(tmp_path, monkeypatch):
    """A (N, T, H, W, C) file in its own units -> train -> sidecar -> forecast in its units."""
    rng = np.random.default_rng(0)
    # 24 sequences of 8 frames of 16x16 "temperatures" around 280 K.
    data = 270.0 + 20.0 * rng.random((24, 8, 16, 16, 1), dtype=np.float32)
    np.save(tmp_path / "fields.npy", data)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--preset", "convlstm_tiny", "--data", "arrays", "--data-path",
            "fields.npy", "--normalization", "zscore", "--override",
            '{"input_frames": 4, "output_frames": 4, "patch_size": 2}', "--epochs", "2",
            "--run-dir", "run", "--verbose", "0"]  # fmt: skip
    code, out, err = _run(argv)
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model_config"]["height"] == 16
    scale = config["data_scale"]
    assert scale["name"] == "normalization" and scale["normalization"]["method"] == "zscore"
    # Fitted on the training split only: not the mean of all sequences.
    assert scale["normalization"]["mean"][0] != pytest.approx(float(data.mean()), abs=1e-4)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["windows"] > 0 and metrics["persistence"]["mse_data_units"] > 0
    code, out, err = _run(
        ["evaluate", "--model", "run", "--data", "arrays", "--data-path", "fields.npy", "--json"]
    )
    assert code == 0, err
    assert json.loads(out)["model"]["mse_data_units"] == pytest.approx(
        metrics["model"]["mse_data_units"], rel=1e-4
    )
    code, _, err = _run(["export", "--model", "run", "--format", "tflite"])
    assert code == 0, err
    sidecar = json.loads((tmp_path / "tflite" / "convlstm_tiny.tflite.json").read_text())
    assert sidecar["data_scale"] == scale
    np.save(tmp_path / "past.npy", data[0, :4])
    for model in ("run", "tflite/convlstm_tiny.tflite"):
        code, out, err = _run(
            ["predict", "--model", model, "--inputs", "past.npy", "--out", "f.npy"]
        )
        assert code == 0, err
        forecast = np.load(tmp_path / "f.npy")
        assert forecast.shape == (4, 16, 16, 1)
        # In the data's units (kelvin), not in the normalised scale.
        assert 200 < float(forecast.mean()) < 360
    code, _, err = _run([*argv[:6], "missing.npy", *argv[7:]])
    assert code == 2 and "missing.npy" in err
