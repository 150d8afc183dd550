"""Pretrained models: shipped files found, checksummed, loaded and forecasting well."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import kerastp
from kerastp import pretrained
from kerastp.artifacts import CorruptArtifactError
from kerastp.data import split_frames
from kerastp.evaluation.frames import ForecastEvaluator
from kerastp.registry import PRETRAINED
from kerastp.saving import load_npz


@pytest.fixture(scope="module")
def mmnist():
    return kerastp.from_preset("mmnist")


@pytest.fixture(scope="module")
def examples():
    data = load_npz(pretrained.pretrained_file("mmnist", "examples"))
    past, future = split_frames(data["sequences"], 10, 10)
    return past, future, str(data["attribution"])


def test_every_shipped_file_matches_its_recorded_checksum():
    for name, entry in PRETRAINED.items():
        for kind, spec in entry["files"].items():
            path = pretrained.pretrained_file(name, kind)
            assert pretrained.sha256(path) == spec["sha256"], (name, kind)
            assert path.stat().st_size <= 16_000_000, (name, kind)


def test_mmnist_forecasts_the_shipped_sequences_far_better_than_persistence(mmnist, examples):
    past, future, attribution = examples
    assert "MNIST" in attribution and len(past) == 8
    forecast = np.asarray(mmnist.predict(past, verbose=0))
    model, last = ForecastEvaluator(), ForecastEvaluator()
    model.update(future, forecast)
    last.update(future, np.repeat(past[:, -1:], 10, axis=1))
    ours, persistence = model.result(), last.result()
    assert ours["mse"] < 0.5 * persistence["mse"]
    assert ours["ssim"] > persistence["ssim"] + 0.02


def test_the_tflite_file_reproduces_the_keras_model(mmnist, examples):
    past = examples[0][:2]
    lite = kerastp.from_preset("mmnist", kind="tflite")
    np.testing.assert_allclose(lite.predict(past), mmnist.predict(past, verbose=0), atol=1e-4)


def test_a_path_loads_like_a_name(mmnist, examples):
    path = pretrained.pretrained_file("mmnist", "keras")
    by_path = kerastp.from_preset(path)
    past = examples[0][:1]
    np.testing.assert_allclose(by_path.predict(past, verbose=0), mmnist.predict(past, verbose=0),
                               atol=1e-5)
    assert kerastp.load_model("mmnist").name == "mmnist"


def test_an_altered_file_names_itself_and_its_checksum(tmp_path, monkeypatch):
    spec = PRETRAINED["mmnist"]["files"]["examples"]
    source = pretrained.pretrained_file("mmnist", "examples")
    target = tmp_path / spec["path"]
    target.parent.mkdir(parents=True)
    shutil.copyfile(source, target)
    with open(target, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setenv(pretrained.ENV_VAR, str(tmp_path))
    with pytest.raises(CorruptArtifactError, match=spec["sha256"]) as error:
        pretrained.pretrained_file("mmnist", "examples")
    assert str(target) in str(error.value)


def test_a_missing_file_names_itself_the_places_searched_and_its_checksum(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "search_roots", lambda: [tmp_path])
    spec = PRETRAINED["mmnist"]["files"]["keras"]
    with pytest.raises(FileNotFoundError) as error:
        kerastp.from_preset("mmnist")
    message = str(error.value)
    assert spec["path"] in message and spec["sha256"] in message and str(tmp_path) in message


def test_unknown_names_list_the_pretrained_models():
    with pytest.raises(ValueError, match="pretrained models: mmnist"):
        kerastp.from_preset("mnist_large")
    with pytest.raises(ValueError, match="architecture preset without trained weights"):
        kerastp.from_preset("stlight_tiny")
    with pytest.raises(ValueError, match="no 'tflite_int4' file"):
        kerastp.from_preset("mmnist", kind="tflite_int4")


def test_edge_box_loads_the_shipped_tflite_without_tensorflow_or_keras():
    script = (
        "import sys, numpy as np\n"
        "from kerastp.forecasters import from_preset\n"
        "lite = from_preset('mmnist', kind='tflite')\n"
        "out = lite.predict(np.zeros((1, 10, 64, 64, 1), np.float32))\n"
        "assert out.shape == (1, 10, 64, 64, 1), out.shape\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_cli_predicts_a_pretrained_name_on_the_generated_test_set(tmp_path, shared_mnist):
    from kerastp import cli

    out = tmp_path / "forecast.png"
    assert cli.main(["predict", "--model", "mmnist", "--out", str(out),
                     "--mnist-path", str(shared_mnist)]) == 0  # fmt: skip
    assert out.is_file() and out.with_suffix(".gif").is_file()


@pytest.mark.slow
def test_mmnist_reproduces_its_card_on_the_first_test_sequences(shared_mnist):
    """The card's reproduction check: its first 100 test sequences, scored from the shipped
    file (slow: 100 forecasts of the 3.6M-parameter model; the default suite scores the
    shipped sequences)."""
    check = json.loads(pretrained.pretrained_file("mmnist", "keras").with_name(
        "model_card.json").read_text())["check"]
    result = kerastp.evaluate("mmnist", num_sequences=check["sequences"],
                              mnist_path=shared_mnist, persistence=True)  # fmt: skip
    assert result["data"] == "mnist" and result["n_sequences"] == check["sequences"] == 100
    for key in ("mse", "mae", "ssim"):
        assert result[key] == pytest.approx(check[key], rel=1e-4), key
    assert result["mse"] < 0.5 * result["persistence"]["mse"]


def test_predict_on_a_pretrained_name_needs_no_mnist_for_the_shipped_sequences(
    tmp_path, monkeypatch, mmnist, examples, capsys
):
    """A fresh offline machine: `kerastp predict --model mmnist` forecasts the shipped test
    sequences; an index beyond them asks for MNIST, naming how to provide it."""
    from kerastp import cli

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))  # no cached MNIST
    monkeypatch.setenv("KERASTP_MNIST", str(tmp_path / "no_mnist_here"))  # any lookup fails
    assert cli.main(["predict", "--model", "mmnist", "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").is_file() and (tmp_path / "f.gif").is_file()
    assert cli.main(["predict", "--model", "mmnist", "--index", "5",
                     "--out", str(tmp_path / "f.npy")]) == 0  # fmt: skip
    past, _, _ = examples
    expected = np.asarray(mmnist.predict(past[5:6], verbose=0))[0]
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, atol=1e-5)
    capsys.readouterr()
    assert cli.main(["predict", "--model", "mmnist", "--index", str(len(past)),
                     "--out", str(tmp_path / "g.png")]) != 0  # fmt: skip
    assert "no_mnist_here" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


def test_shipped_sequences_are_the_test_set_the_data_source_generates(mmnist, shared_mnist):
    from kerastp.data.sources.moving_mnist import MnistMovingMnist
    from kerastp.visualize import shipped_test_example

    source = MnistMovingMnist(mnist_path=shared_mnist)
    for index in (0, 7):
        shipped = shipped_test_example("mmnist", index, 10, 10)
        generated = source.example(mmnist, index)
        for a, b in zip(shipped, generated, strict=True):
            np.testing.assert_array_equal(a, b)
    assert shipped_test_example("mmnist", 8, 10, 10) is None
    assert shipped_test_example("radar", 0, 6, 12) is None  # windows, not indices


def test_exporting_a_pretrained_name_never_replaces_its_shipped_folder(tmp_path, capsys):
    """`kerastp export --model mmnist` from a checkout would write the SavedModel to
    saved_models/mmnist/, the folder of the shipped files: refused before anything is written."""
    from kerastp import cli

    shipped = tmp_path / "saved_models" / "mmnist"
    shipped.mkdir(parents=True)
    (shipped / "MODEL_CARD.md").write_text("card")
    code = cli.main(["export", "--model", "mmnist", "--saved-model-dir",
                     str(tmp_path / "saved_models"), "--tflite-dir", str(tmp_path / "tflite")])
    assert code == 2  # a usage error, reported without a traceback
    err = capsys.readouterr().err
    assert "is not a SavedModel" in err and "MODEL_CARD.md" in err
    assert (shipped / "MODEL_CARD.md").read_text() == "card"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["MODEL_CARD.md", "mmnist",
                                                           "saved_models"]


@pytest.fixture(scope="module")
def radar_examples():
    data = load_npz(pretrained.pretrained_file("radar", "examples"))
    assert "pysteps" in str(data["attribution"])
    return data["past"].astype(np.float32), data["future"].astype(np.float32)


def test_radar_reproduces_its_card_on_the_validation_windows():
    """The shipped nowcaster scores what its card records on the 16 validation windows."""
    import json

    from kerastp.data import radar

    if not radar.resolve_radar_dir(None).is_dir():  # pragma: no cover - shipped with the repo
        pytest.skip("radar data not found")
    card = json.loads(pretrained.pretrained_file("radar", "keras").with_name(
        "model_card.json").read_text())  # fmt: skip
    result = kerastp.evaluate("radar")
    assert result["windows"] == card["test"]["windows"] == 16
    model = result["model"]
    assert model["mse_rain_rate"]["total"] == pytest.approx(card["test"]["mse_mm_h"], rel=1e-4)
    assert model["csi"]["1.0"]["total"] == pytest.approx(card["test"]["csi_1.0"], rel=1e-4)
    # Better than persistence at every lead time on squared error in mm/h.
    ours = np.array(model["mse_rain_rate"]["per_lead_time"])
    persistence = np.array(result["persistence"]["mse_rain_rate"]["per_lead_time"])
    assert np.all(ours < persistence)


def test_radar_tflite_files_reproduce_the_keras_model(radar_examples):
    past = radar_examples[0][:2]
    model = kerastp.from_preset("radar")
    expected = np.asarray(model.predict(past, verbose=0))
    for kind in PRETRAINED["radar"]["files"]:
        if not kind.startswith("tflite"):
            continue
        got = kerastp.from_preset("radar", kind=kind).predict(past)
        if kind == "tflite":
            np.testing.assert_allclose(got, expected, atol=1e-4)
        else:  # quantised weights: close on average (the export judged its held-out MSE)
            assert float(np.mean(np.abs(got - expected))) < 0.01, kind


def test_radar_predicts_rain_rates_from_the_cli(tmp_path, radar_examples):
    from kerastp import cli
    from kerastp.data import radar

    rain = radar.to_rain_rate(radar_examples[0][0])
    np.save(tmp_path / "past.npy", rain)
    out = tmp_path / "forecast.npy"
    assert cli.main(["predict", "--model", "radar", "--inputs", str(tmp_path / "past.npy"),
                     "--out", str(out)]) == 0  # fmt: skip
    forecast = np.load(out)
    assert forecast.shape == (12, 64, 64, 1) and forecast.min() >= 0.0
    expected = radar.to_rain_rate(
        kerastp.from_preset("radar").predict(radar_examples[0][:1], verbose=0)[0], clip=True
    )
    np.testing.assert_allclose(forecast, expected, rtol=1e-4, atol=1e-3)


def test_a_pretrained_name_starts_training_from_its_shipped_weights(radar_examples):
    """`train(preset="radar")` fine-tunes: a new model of the shipped class and config, in
    the current dtype policy, holding the shipped weights; the start is recorded by SHA-256."""
    from kerastp import precision, training

    shipped = kerastp.from_preset("radar")
    with precision.policy_scope("mixed_bfloat16"):
        model, init = training._pretrained_start("radar")
    assert model is not shipped and type(model) is type(shipped)
    sha256 = PRETRAINED["radar"]["files"]["keras"]["sha256"]
    assert init == {"pretrained": "radar", "sha256": sha256}
    assert precision.is_mixed(model)
    config = {k: v for k, v in model.get_config().items() if k != "dtype"}
    assert config == {k: v for k, v in shipped.get_config().items() if k != "dtype"}
    for a, b in zip(model.get_weights(), shipped.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    model, _ = training._pretrained_start("radar")  # float32: the shipped forecast
    past = radar_examples[0][:1]
    np.testing.assert_allclose(model.predict(past, verbose=0), shipped.predict(past, verbose=0),
                               atol=1e-6)  # fmt: skip


def test_a_pretrained_architecture_is_not_overridden_and_its_defaults_are_fine_tuning(
    tmp_path, radar_dir
):
    from kerastp import registry, training

    # Its own data and fine-tuning rate unless told otherwise.
    tuned = training.TrainConfig(preset="radar", run_dir=str(tmp_path / "r")).resolved()
    assert (tuned.data, tuned.learning_rate) == ("radar", 3e-5)
    assert training.TrainConfig(run_dir=str(tmp_path / "p")).resolved().data == "procedural"

    with pytest.raises(ValueError, match=r"pretrained model.*`overrides` \(hidden_dim\)"):
        training.train(preset="radar", data="radar", overrides={"hidden_dim": 8},
                       run_dir=str(tmp_path / "run"))  # fmt: skip
    assert not (tmp_path / "run").exists()
    tuned = registry.training_settings("mmnist")
    assert tuned["max_learning_rate"] < registry.training_settings("stlight_tiny")[
        "max_learning_rate"]  # fmt: skip
    with pytest.raises(ValueError, match="Valid presets: .*mmnist.*stlight_tiny"):
        registry.training_settings("mmnist_large")


@pytest.mark.slow
def test_cli_fine_tunes_the_pretrained_radar_model(tmp_path, radar_dir):
    """`kerastp train --preset radar --data radar`: a few steps at the fine-tuning rate move
    the shipped weights a little, and the run records where it started (slow: traces
    MotionCast's training step)."""
    import json

    from kerastp import cli, saving

    run = tmp_path / "ft"
    assert cli.main(["train", "--preset", "radar", "--data", "radar", "--epochs", "1",
                     "--steps-per-epoch", "3", "--batch-size", "4", "--eval-sequences", "0",
                     "--run-dir", str(run), "--verbose", "0"]) == 0  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["init"]["pretrained"] == "radar" and config["learning_rate"] == 3e-5
    tuned, shipped = saving.load_model(run), kerastp.from_preset("radar")
    moved = [
        float(np.max(np.abs(a - b)))
        for a, b in zip(tuned.trainable_weights, shipped.trainable_weights, strict=True)
    ]
    assert 0 < max(moved) < 0.01, max(moved)
    # Its artifacts take the run's name, not the shipped model's.
    assert cli.main(["export", "--model", str(run), "--format", "keras",
                     "--saved-model-dir", str(tmp_path / "out")]) == 0  # fmt: skip
    assert (tmp_path / "out" / "ft.keras").is_file()


def test_a_fine_tuned_run_names_its_artifacts_after_its_directory(tmp_path):
    from kerastp import export, runs, saving

    run = tmp_path / "radar-tuned"
    saving.write_json(run / runs.CONFIG_FILE, {"preset": "radar", "init": {"pretrained": "radar"}})
    for path in (run, run / "model.keras", run / "checkpoints" / "best.keras"):
        assert export._default_name(path, runs.RunRecord.of(path)) == "radar-tuned"
    saving.write_json(run / runs.CONFIG_FILE, {"preset": "radar"})
    assert export._default_name(run, runs.RunRecord.of(run)) == "radar"
    bare = tmp_path / "m.keras"
    assert export._default_name(bare, runs.RunRecord.of(bare)) == "m"


def test_bench_of_a_pretrained_name_times_its_shipped_tflite_files_too(monkeypatch):
    """`kerastp bench radar`: the Keras model and every shipped .tflite file, each row with
    the accuracy its sidecar records (the Keras runtimes are stubbed: their timing is
    tested on an artifact in test_cli.py)."""
    from kerastp import bench

    monkeypatch.setattr(bench, "keras_forecaster", lambda model, jit_compile=False: (
        lambda past: np.zeros((len(past), 12, 64, 64, 1), np.float32)))  # fmt: skip
    rows = bench.bench_path("radar", threads=(1,), warmup=1, runs=2)
    assert [r["runtime"] for r in rows] == ["keras_eager", "keras_xla", "tflite", "tflite_int8"]
    quantize = [r["accuracy"]["quantize"] for r in rows[2:]]
    assert quantize == ["none", "int8"] and all(r["delegation"]["nodes"] > 0 for r in rows[2:])
    assert all(r["input_shape"] == [1, 6, 64, 64, 1] for r in rows)
