"""The edge install: a plain `pip install kerastp` brings `kerastp.lite` on NumPy and LiteRT,
with no TensorFlow and no Keras, in a fresh virtual environment."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kerastp import export, registry

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import sys
import numpy as np
from kerastp.lite import LiteForecaster
forecaster = LiteForecaster(sys.argv[1])
got = forecaster.predict(np.load(sys.argv[2]))
np.testing.assert_allclose(got, np.load(sys.argv[3]), atol=1e-4)
assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "heavy import"
import importlib.util
for name in ("tensorflow", "keras"):
    assert importlib.util.find_spec(name) is None, name + " is installed"
print("edge ok", got.shape)
"""


@pytest.mark.slow
def test_plain_install_runs_tflite_without_tensorflow_or_keras(tmp_path):
    model = registry.build_model("stlight_tiny")
    path = tmp_path / "m.tflite"
    export.export_tflite(model, path)
    past = np.random.default_rng(0).random((2, *model.input_signature_shape[1:]), "float32")
    np.save(tmp_path / "past.npy", past)
    np.save(tmp_path / "expected.npy", model.predict(past, verbose=0))

    venv = tmp_path / "edge"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    result = subprocess.run(
        [
            str(python),
            "-c",
            RUN,
            str(path),
            str(tmp_path / "past.npy"),
            str(tmp_path / "expected.npy"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: the installed package is what runs
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "edge ok (2, 10, 64, 64, 1)" in result.stdout
