"""Pretrained models: shipped files found, checksummed, loaded and forecasting well."""

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


def test_cli_predicts_and_evaluates_a_pretrained_name(tmp_path, shared_mnist):
    mnist_path = shared_mnist
    from kerastp import cli

    out = tmp_path / "forecast.png"
    assert cli.main(["predict", "--model", "mmnist", "--out", str(out),
                     "--mnist-path", str(mnist_path)]) == 0
    assert out.is_file() and out.with_suffix(".gif").is_file()
    result = kerastp.evaluate("mmnist", num_sequences=16, mnist_path=mnist_path,
                              persistence=True)
    assert result["data"] == "mnist" and result["n_sequences"] == 16
    assert result["mse"] < 0.5 * result["persistence"]["mse"]
