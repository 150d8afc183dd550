import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

#: ../shared/data/mnist beside the repository (CI clones the repo with ../shared beside it).
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)


@pytest.fixture
def shared_mnist():
    if not (SHARED_MNIST / "mnist.npz").is_file():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST}")
    return SHARED_MNIST / "mnist.npz"


@pytest.fixture(autouse=True)
def _isolated_keras_home(tmp_path_factory, monkeypatch):
    """Caches (the standard test set) go to a per-session temporary KERAS_HOME."""
    if "KERASTP_TEST_KERAS_HOME" not in os.environ:
        os.environ["KERASTP_TEST_KERAS_HOME"] = str(tmp_path_factory.mktemp("keras_home"))
    monkeypatch.setenv("KERAS_HOME", os.environ["KERASTP_TEST_KERAS_HOME"])
