import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import copy  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402

# Before any test module imports Keras or TensorFlow: the suite runs with kerastp's defaults
# (KERAS_BACKEND=tensorflow, TF_ENABLE_ONEDNN_OPTS=1), as a user's script that imports kerastp
# first does (importing kerastp imports neither).
import kerastp  # noqa: E402, F401

#: ../shared/data/mnist beside the repository (CI clones the repo with ../shared beside it).
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
SHARED_RADAR = SHARED_MNIST.parent / "radar"

#: The one tiny training run the session shares (`tiny_trained_run`): `training.train`
#: arguments, without `run_dir`. A stlight_tiny narrowed to d=16 and 2 mixer blocks, 2 epochs
#: of 3 steps: a finished run with checkpoints, history, metrics and a one-cycle optimizer.
TINY_RUN = {
    "preset": "stlight_tiny",
    "epochs": 2,
    "steps_per_epoch": 3,
    "batch_size": 4,
    "val_sequences": 8,
    "eval_sequences": 16,
    "verbose": 0,
    "overrides": {"hidden_dim": 16, "depth": 2},
}


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)


@pytest.fixture
def shared_mnist():
    if not (SHARED_MNIST / "mnist.npz").is_file():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST}")
    return SHARED_MNIST / "mnist.npz"


@pytest.fixture
def radar_dir(monkeypatch):
    """The shared radar data folder, found through the default path (env var unset)."""
    if not (SHARED_RADAR / "64").is_dir():
        pytest.skip(f"shared radar data not found at {SHARED_RADAR}")
    monkeypatch.delenv("KERASTP_RADAR", raising=False)
    return SHARED_RADAR


def _session_keras_home(tmp_path_factory):
    if "KERASTP_TEST_KERAS_HOME" not in os.environ:
        os.environ["KERASTP_TEST_KERAS_HOME"] = str(tmp_path_factory.mktemp("keras_home"))
    return os.environ["KERASTP_TEST_KERAS_HOME"]


@pytest.fixture(autouse=True)
def _isolated_keras_home(tmp_path_factory, monkeypatch):
    """Caches (the standard test set) go to a per-session temporary KERAS_HOME."""
    monkeypatch.setenv("KERAS_HOME", _session_keras_home(tmp_path_factory))


@pytest.fixture(scope="session")
def paper_counts():
    """{preset: {"config", "params", "total_params", "macs", "fvcore_macs"}} of every non-tiny
    preset, as stored in kerastp/preset_counts.json (`registry.stored_counts`) instead of
    building the paper-size models.

    `test_baselines.py::test_stored_counts_cover_every_preset_and_config` fails when the file
    and the registry disagree on the presets or their configs; CI's slow step recounts
    (`test_slow.py::test_stored_counts_match_a_recount`).
    """
    from kerastp import registry

    tiny = set(registry.list_presets(tiny=True))
    return {k: v for k, v in registry.stored_counts().items() if k not in tiny}


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory):
    """`TINY_RUN` trained once per session (per xdist worker) into `<tmp>/run`.

    Returns a namespace with `run_dir` (Path), `kwargs` (the `training.train` arguments
    without `run_dir`, to rerun or vary the same run) and `result` (what `train` returned:
    "model", "history", "metrics", ...). Shared by many tests: READ ONLY. A test that writes
    into the run (resumes, retrains, exports next to it) copies it first, e.g.
    `shutil.copytree(tiny_trained_run.run_dir, tmp_path / "run")`.
    """
    import keras

    from kerastp import training

    keras.utils.set_random_seed(1234)
    run_dir = tmp_path_factory.mktemp("tiny_trained_run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_HOME", _session_keras_home(tmp_path_factory))
        result = training.train(**TINY_RUN, run_dir=str(run_dir))
    return SimpleNamespace(run_dir=run_dir, kwargs=copy.deepcopy(TINY_RUN), result=result)


@pytest.fixture(scope="session")
def tiny_param_counts():
    """{tiny preset: trainable parameters of `registry.build_model(preset)`}, built once."""
    from kerastp import registry

    return {
        name: registry.count_trainable_params(registry.build_model(name))
        for name in registry.list_presets(tiny=True)
    }
