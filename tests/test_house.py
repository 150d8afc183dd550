"""The shape of the house: import layering without circles, one options module, data sources
behind one interface, saving and run records in one place each."""

import ast
import dataclasses
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from kerastp import options, registry, runs, saving
from kerastp.data.sources import DataSource, get_source, source_from_config

PACKAGE = Path(__file__).resolve().parents[1] / "kerastp"

#: Floors from the ground up: a module may import only modules of its own floor or below.
#: (Same-floor imports are checked for circles separately.)
FLOORS = [
    {
        "kerastp/__init__.py",
        "kerastp/artifacts.py",
        "kerastp/backend.py",
        "kerastp/validation.py",
        "kerastp/precision.py",
        "kerastp/registry.py",
        "kerastp/flops.py",
        "kerastp/losses.py",
        "kerastp/rain_scale.py",
        "kerastp/optimizers.py",
        "kerastp/metrics.py",
        "kerastp/options.py",
        "kerastp/serialization.py",
        "kerastp/evaluation/frames.py",
        "kerastp/evaluation/nowcasting.py",
        "kerastp/evaluation/__init__.py",
        "kerastp/lite.py",
        "kerastp/pretrained.py",
    },
    {"kerastp/saving.py", "kerastp/layers/*", "kerastp/data/*"},
    {"kerastp/models/*", "kerastp/runs.py", "kerastp/forecasters.py", "kerastp/data/sources/*"},
    {"kerastp/evaluation/evaluate.py", "kerastp/export.py", "kerastp/checkpointing.py"},
    {"kerastp/training.py", "kerastp/visualize.py", "kerastp/bench.py"},
    {"kerastp/demo.py"},
    {"kerastp/cli.py", "kerastp/__main__.py"},
]


def _floor(rel):
    for number, rooms in enumerate(FLOORS):
        for room in rooms:
            if rel == room or (room.endswith("/*") and rel.startswith(room[:-1])):
                if room.endswith("/*") and "/" in rel[len(room) - 1 :]:
                    continue  # a deeper folder has its own floor
                return number
    raise AssertionError(f"{rel} is on no floor of tests/test_house.py::FLOORS; place it")


def _module_file(name):
    parts = name.split(".")
    candidate = PACKAGE.parent.joinpath(*parts)
    if candidate.with_suffix(".py").is_file():
        return candidate.with_suffix(".py")
    if (candidate / "__init__.py").is_file():
        return candidate / "__init__.py"
    return None


def _imports(path):
    """kerastp modules `path` imports (module level and inside functions)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "kerastp":
                file = _module_file(name)
                if file is not None and file != path:
                    found.add(file)
    return found


def _graph():
    files = sorted(PACKAGE.rglob("*.py"))
    return {f: _imports(f) for f in files if "tfds_builders" not in f.name}


def _rel(path):
    return path.relative_to(PACKAGE.parent).as_posix()


def test_no_import_runs_back_up_a_floor():
    upward = []
    for source, targets in _graph().items():
        for target in targets:
            if _rel(target) == "kerastp/__init__.py":
                continue  # the package's face: lazy names only
            if _floor(_rel(target)) > _floor(_rel(source)):
                upward.append(f"{_rel(source)} -> {_rel(target)}")
    assert not upward, "imports running back up: " + "; ".join(upward)


def test_no_import_circle():
    graph = {k: {t for t in v if _rel(t) != "kerastp/__init__.py"} for k, v in _graph().items()}
    # Tarjan-free check: a depth-first search for a back edge.
    state, circles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in graph.get(node, ()):
            if state.get(target) == "open":
                circles.append(" -> ".join(_rel(n) for n in stack[stack.index(target) :]))
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not circles, "import circles: " + "; ".join(circles)


def test_layering_check_finds_a_circle(tmp_path):
    # The checker itself can fail: a two-file circle is reported.
    a, b = tmp_path / "kerastp" / "a.py", tmp_path / "kerastp" / "b.py"
    a.parent.mkdir()
    a.write_text("import kerastp.b\n")
    b.write_text("from kerastp import a\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "kerastp"
    try:
        assert _imports(a) == {b} and _imports(b) == {a}
    finally:
        PACKAGE = saved


def test_no_data_source_branch_outside_the_sources():
    """No module but the sources (and the registry / options that list them) compares a
    data-source name."""
    names = set(registry.SOURCES)
    allowed = {"kerastp/registry.py", "kerastp/options.py", "kerastp/cli.py"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = _rel(path)
        if rel in allowed or rel.startswith("kerastp/data/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                constants = [
                    c.value
                    for c in ast.walk(node)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                ]
                if names & set(constants):
                    offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, "data-source branches outside kerastp/data: " + ", ".join(offenders)


def test_options_and_cli_import_without_tensorflow():
    code = (
        "import sys, kerastp.options, kerastp.cli, kerastp.runs, kerastp.saving;"
        "kerastp.cli.build_parser();"
        "assert 'tensorflow' not in sys.modules, 'tensorflow';"
        "assert 'keras' not in sys.modules, 'keras'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _choices(parser, command, flag):
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return tuple(next(a for a in sub._actions if flag in a.option_strings).choices)


def test_cli_choices_are_the_library_options():
    from kerastp.cli import build_parser

    parser = build_parser()
    assert _choices(parser, "train", "--data") == options.DATA_SOURCES
    assert _choices(parser, "evaluate", "--data") == options.DATA_SOURCES
    assert _choices(parser, "train", "--normalization") == options.NORMALIZATIONS
    assert _choices(parser, "train", "--schedule") == options.SCHEDULES
    assert _choices(parser, "train", "--loss") == options.LOSSES
    assert _choices(parser, "train", "--augment") == options.AUGMENTATIONS
    assert _choices(parser, "train", "--mixed-precision") == options.MIXED_PRECISIONS
    assert _choices(parser, "train", "--radar-resolution") == options.RADAR_RESOLUTIONS
    assert _choices(parser, "export", "--quantize") == options.QUANTIZATIONS
    assert _choices(parser, "export", "--format") == options.EXPORT_FORMATS
    assert set(_choices(parser, "train", "--strategy")) == set(options.STRATEGIES) - {None}


def test_check_choice_names_argument_and_value():
    assert options.check_choice("quantize", "int8", options.QUANTIZATIONS) == "int8"
    with pytest.raises(ValueError, match=r"`quantize` must be one of .*got quantize='int4'"):
        options.check_choice("quantize", "int4", options.QUANTIZATIONS)


# -- data sources ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(registry.SOURCES))
def test_every_registered_source_implements_the_interface(name):
    cls = registry.get_source_class(name)
    assert issubclass(cls, DataSource) and cls.name == name
    for method in (
        "training_stream",
        "validation_stream",
        "calibration_samples",
        "held_out",
        "example",
        "test_windows",
    ):
        assert getattr(cls, method) is not getattr(DataSource, method), (name, method)
    assert cls.SCALE_NAME is not None
    from kerastp.evaluation.evaluate import SCORERS

    assert cls.SCORING in SCORERS


def test_unknown_source_lists_the_registered_ones():
    with pytest.raises(ValueError, match="must be one of procedural, mnist, radar, arrays"):
        get_source("zarr_store")


def test_source_from_a_run_config_keeps_its_settings():
    source = source_from_config({"data": "radar", "radar_resolution": 128, "seed": 3})
    assert (source.name, source.radar_resolution, source.seed) == ("radar", 128, 3)
    assert source.model_overrides("ustep_tiny")["macro_frames"] == 3  # 6 inputs
    fitted = {"method": "minmax", "channels": 1, "min": [0.0], "max": [2.0]}
    config = {
        "data": "arrays",
        "data_path": "x.npy",
        "data_scale": {"name": "normalization", "normalization": fitted},
    }
    arrays = source_from_config(config)
    rain = np.array([[0.5], [2.0]], np.float32)
    np.testing.assert_allclose(arrays.inverse(arrays.transform(rain)), rain, rtol=1e-6)
    np.testing.assert_allclose(arrays.transform(rain), [[0.25], [1.0]])


def test_radar_source_maps_rain_rate_exactly():
    source = get_source("radar")
    rain = np.array([0.0, 0.5, 5.0, 100.0], np.float32)
    np.testing.assert_allclose(source.inverse(source.transform(rain)), rain, rtol=1e-5, atol=1e-6)
    # Forecasts outside the model scale's [0, 1] come back as 0 and 100 mm/h, the data's range.
    np.testing.assert_allclose(source.inverse(np.array([-0.2, 1.3])), [0.0, 100.0], rtol=1e-5)
    assert source.has_units and not get_source("procedural").has_units


def test_moving_mnist_example_is_the_standard_test_set(tiny_model_shape):
    source = get_source("procedural")
    past, truth = source.example(tiny_model_shape, index=1)
    sequences = np.asarray(source.test_sequences(2))
    np.testing.assert_array_equal(past, sequences[1, :10].astype(np.float32) / 255.0)
    assert truth.shape == (10, 64, 64, 1)
    with pytest.raises(ValueError, match="index"):
        source.example(tiny_model_shape, index=10_000)


@pytest.fixture
def tiny_model_shape():
    class Shape:  # what a source reads of a model
        input_frames, output_frames, height, width, channels = 10, 10, 64, 64, 1

    return Shape()


# -- saving and run records -----------------------------------------------------------------


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "a" / "f.json"
    saving.write_json(path, {"x": np.float32(1.5), "y": np.arange(2)})
    assert saving.read_json(path) == {"x": 1.5, "y": [0, 1]}

    def broken(f):
        f.write(b"partial")
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="simulated"):
        saving.atomic_write(path, write=broken)
    assert saving.read_json(path) == {"x": 1.5, "y": [0, 1]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.json"]
    with pytest.raises(ValueError, match="exactly one"):
        saving.atomic_write(path, b"x", write=broken)


def test_atomic_directory_replaces_or_keeps(tmp_path):
    target = tmp_path / "model"
    with saving.atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), saving.atomic_directory(target) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("failed export")
    assert (target / "a").read_text() == "1"
    with saving.atomic_directory(target) as tmp:
        (tmp / "a").write_text("3")
    assert (target / "a").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_load_npz_names_file_and_keys(tmp_path):
    path = tmp_path / "e.npz"
    saving.save_npz(path, frames=np.zeros(2), times=np.ones(1))
    assert set(saving.load_npz(path)) == {"frames", "times"}
    with pytest.raises(ValueError, match=r"e\.npz: missing key 'meta'.*found \['frames'"):
        saving.load_npz(path, ["frames", "meta"], what="a radar event")
    single = tmp_path / "s.npz"
    np.save(tmp_path / "s.npy", np.zeros(2))
    (tmp_path / "s.npy").rename(single)
    with pytest.raises(ValueError, match="holds a single .npy array"):
        saving.load_npz(single)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="not a readable .npz"):
        saving.load_npz(tmp_path / "bad.npz")


def test_run_record_reads_sidecar_then_run_config(tmp_path):
    run = tmp_path / "run"
    saving.write_json(run / runs.CONFIG_FILE, {"preset": "p", "data": "radar", "seed": 2})
    (run / "checkpoints").mkdir()
    record = runs.RunRecord.of(run / "checkpoints" / "best.keras")
    assert (record.preset, record.data, record.training_backend) == ("p", "radar", "tensorflow")
    artifact = tmp_path / "m.tflite"
    saving.write_json(
        runs.sidecar_path(artifact),
        {"preset": "q", "data_scale": {"name": "radar_log_rain_rate"}},
    )
    record = runs.RunRecord.of(artifact)
    assert record.preset == "q" and record.source().name == "radar"
    assert runs.RunRecord.of(tmp_path / "none.keras").source().name == "procedural"


def test_the_quiet_cli_still_says_where_a_moved_run_had_its_data(monkeypatch):
    from kerastp import cli
    from kerastp.backend import VERBOSE_ENV_VAR

    monkeypatch.delenv(VERBOSE_ENV_VAR, raising=False)
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        cli._set_verbosity(False)
        warnings.warn("something kerastp handles", UserWarning, stacklevel=1)
        warnings.warn("recorded mnist_path", runs.MovedRunWarning, stacklevel=1)
    assert [type(w.message) for w in caught] == [runs.MovedRunWarning]
    line = warnings.formatwarning(caught[0].message, runs.MovedRunWarning, "x.py", 1)
    assert line == "kerastp: warning: recorded mnist_path\n"


def test_a_moved_run_finds_its_data_where_this_machine_keeps_it(tmp_path):
    """A run trained elsewhere records data locations that do not exist here: they are
    dropped (the usual lookup applies); an existing one, or an explicit setting, is kept."""
    here = tmp_path / "mnist.npz"
    here.write_bytes(b"")
    run = tmp_path / "run"
    saving.write_json(run / runs.CONFIG_FILE, {
        "preset": "p", "data": "mnist", "seed": 3, "run_dir": "/gpu-box/runs/p",
        "mnist_path": str(tmp_path / "gone" / "mnist.npz"),
    })  # fmt: skip
    record = runs.RunRecord.of(run)
    with pytest.warns(runs.MovedRunWarning, match=r"recorded mnist_path='.*gone.*does not exist"):
        source = record.source()
    assert source.mnist_path is None and source.seed == 3
    with warnings.catch_warnings():  # an explicit location replaces the record: no warning
        warnings.simplefilter("error")
        assert record.source(mnist_path=str(here)).mnist_path == str(here)
    saving.write_json(run / runs.CONFIG_FILE, {"data": "mnist", "mnist_path": str(here)})
    assert runs.RunRecord.of(run).source().mnist_path == str(here)
    # Every location is a training setting, which a resumed run does not compare.
    from kerastp.training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(runs.LOCATION_SETTINGS) <= fields
