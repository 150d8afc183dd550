"""Run records: what a run directory and an artifact's sidecar hold, read in one place.

A run directory (`kerastp.training.train`):

    <run_dir>/config.json        the resolved configuration (`CONFIG_FILE`)
    <run_dir>/backup/            state.npz: a killed run resumes from here
    <run_dir>/checkpoints/       best.keras and last.keras
    <run_dir>/history.csv        one row per epoch
    <run_dir>/model.keras        the final model (`MODEL_FILE`)
    <run_dir>/metrics.json       test scores (`METRICS_FILE`)

Every exported artifact has a sidecar `<artifact>.json` (`sidecar_path`) with the preset,
the model config, the data scale, the training backend and the parity check.

`RunRecord.of(path)` reads what is recorded for any model path (a run directory, a `.keras`
file inside or beside one, a SavedModel directory or a `.tflite` file with its sidecar):
the sidecar first, then the run's `config.json`. This module imports neither TensorFlow nor
Keras.
"""

import warnings
from pathlib import Path

from kerastp.saving import read_json


class MovedRunWarning(UserWarning):
    """A run recorded a data location that does not exist here (it was trained elsewhere).

    Shown by the CLI even when it quiets other warnings: a "not found" error that follows
    would otherwise not say where the run had its data."""


CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
BACKUP_DIR = "backup"
CHECKPOINTS_DIR = "checkpoints"

#: Settings that say where something lies, not what the run is: where the run directory
#: and the standard data sets (MNIST, the radar events) are on the machine that trained it.
#: A run moved to another machine keeps its identity (`training.train` does not compare them)
#: and finds its data there (`RunRecord.source` drops a recorded location that is gone).
LOCATION_SETTINGS = ("run_dir", "mnist_path", "radar_path")

#: The scale of a model that records none: frames in [0, 1].
DEFAULT_DATA_SCALE = {
    "name": "unit",
    "description": "frames in [0, 1] (Moving MNIST: uint8 / 255)",
    "range": [0.0, 1.0],
}


def sidecar_path(path):
    """`<artifact>.json`: where an artifact's sidecar lives."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _run_config_candidates(model_path):
    model_path = Path(model_path)
    run_dir = model_path if model_path.is_dir() else model_path.parent
    # A run directory itself, or a .keras file in it or in its checkpoints/.
    return [run_dir / CONFIG_FILE, run_dir.parent / CONFIG_FILE]


class RunRecord:
    """What is recorded about a saved model: its sidecar and its run's `config.json`.

    Args:
        path: the model path the record belongs to.
        sidecar: the sidecar dict, or None.
        config: the run's config.json dict, or None.
    """

    def __init__(self, path=None, sidecar=None, config=None):
        self.path = None if path is None else Path(path)
        self.sidecar = sidecar or {}
        self.config = config or {}

    @classmethod
    def of(cls, model_path):
        """Reads the sidecar next to `model_path` and the config.json of its run, if any."""
        model_path = Path(model_path)
        sidecar = read_json(sidecar_path(model_path))
        config = None
        for candidate in _run_config_candidates(model_path):
            config = read_json(candidate)
            if isinstance(config, dict):
                break
        return cls(
            model_path,
            sidecar if isinstance(sidecar, dict) else None,
            config if isinstance(config, dict) else None,
        )

    def get(self, key, default=None):
        """`key` from the sidecar, else from the run's config.json (the first set value)."""
        for record in (self.sidecar, self.config):
            value = record.get(key)
            if value:
                return value
        return default

    @property
    def preset(self):
        return self.get("preset")

    @property
    def run_dir(self):
        """The run directory whose config.json was read (None for a bare artifact)."""
        for candidate in _run_config_candidates(self.path) if self.config else ():
            if candidate.is_file():
                return candidate.parent
        return None

    @property
    def data(self):
        """The data source the model was trained on, or None when nothing says."""
        return self.get("data")

    @property
    def data_scale(self):
        """What the model's numbers mean (`DataSource.data_scale`), or None."""
        return self.get("data_scale")

    @property
    def training_backend(self):
        """The Keras backend the model was trained on ("tensorflow" for older runs)."""
        return self.get("backend", "tensorflow" if self.config else None)

    def settings(self):
        """The run's settings as one dict: config.json overlaid with the sidecar's record."""
        merged = dict(self.config)
        for key in ("data", "data_scale", "preset"):
            if self.sidecar.get(key):
                merged[key] = self.sidecar[key]
        return merged

    def source(self, data=None, **settings):
        """The `DataSource` the model was trained on (or `data`), as the run configured it;
        `settings` (e.g. `mnist_path`) replace recorded ones when not None.

        A recorded data location (`LOCATION_SETTINGS`) that does not exist here, say a run
        trained on another machine, is dropped with a warning naming it: the data are then
        found the usual way (`KERASTP_MNIST` / `KERASTP_RADAR`, the Keras cache, ../shared),
        so an error that they are found nowhere follows a line saying where the run had them.
        Without any record, Moving MNIST from procedural digits.
        """
        from kerastp.data.sources import source_from_config

        config = self.settings()
        for key in LOCATION_SETTINGS:
            if config.get(key) and not Path(config[key]).exists():
                if key != "run_dir" and settings.get(key) is None:
                    warnings.warn(
                        f"{self.path} recorded {key}={config[key]!r}, which does not exist on "
                        "this machine; looking for the data the usual way instead.",
                        MovedRunWarning,
                        stacklevel=2,
                    )
                config[key] = None
        config.update({k: v for k, v in settings.items() if v is not None})
        name = data or self.data
        if name is None:
            name = _source_of_scale(self.data_scale)
        return source_from_config(config, data=name)

    def __repr__(self):
        return f"RunRecord.of({str(self.path)!r})"


def _source_of_scale(scale):
    """The first registered source whose scale a recorded data scale names (for artifacts
    that record no `data`); procedural Moving MNIST when none does."""
    from kerastp import registry

    name = (scale or {}).get("name")
    for source in registry.SOURCES:
        if registry.get_source_class(source).SCALE_NAME == name:
            return source
    return "procedural"
