"""A new user's first hour: quiet commands, fast failures, errors that name the next step."""

import subprocess
import sys

import numpy as np
import pytest

from kerastp import cli


def _python(code, *args, env=None):
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_evaluate_of_a_missing_model_fails_before_importing_tensorflow(tmp_path):
    code = (
        "import sys; from kerastp import cli;"
        "status = cli.main(['evaluate', '--model', sys.argv[1]]);"
        "assert status == 2, status;"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    result = _python(code, str(tmp_path / "runs" / "missing"))
    assert result.returncode == 0, result.stderr
    assert "No kerastp model at" in result.stderr and "missing" in result.stderr


#: Python that imports TensorFlow for the first time the ways the commands do: loading a model
#: (`kerastp evaluate`, `predict`, `export`) and the main job's module (`kerastp demo`).
#: On JAX, Keras itself imports TensorFlow where it is installed (`set_random_seed` seeds it).
_FIRST_IMPORTS = {
    "load_model": "import kerastp; kerastp.load_model('radar'); print('ok')",  # shipped, in git
    "demo": "import kerastp.demo; print('ok')",
    "jax": "import kerastp, keras; kerastp.build_model('stlight_tiny'); "
    "keras.utils.set_random_seed(0); print('ok')",
}


@pytest.mark.parametrize("way", sorted(_FIRST_IMPORTS))
def test_commands_are_quiet_by_default(way):
    """Importing TensorFlow through kerastp prints nothing (its absl / oneDNN lines at
    import are native writes to stderr that no log level reaches)."""
    import importlib.util
    import os

    env = dict(os.environ)
    if way == "jax":
        if importlib.util.find_spec("jax") is None:
            pytest.skip("jax is not installed")
        env["KERAS_BACKEND"] = "jax"
    quiet = _python(_FIRST_IMPORTS[way], env=env)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "ok", quiet.stderr[-2000:]
    assert quiet.stderr == "", quiet.stderr


def test_verbose_lets_native_lines_through():
    # KERASTP_VERBOSE=1 lets TensorFlow's native log lines through again (what they say
    # depends on the machine: only that nothing is swallowed).
    import os

    env = {**os.environ, "KERASTP_VERBOSE": "1"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    loud = _python(_FIRST_IMPORTS["load_model"], env=env)
    assert loud.returncode == 0 and loud.stdout.strip() == "ok", loud.stderr[-2000:]
    if "oneDNN" in subprocess.run(  # the machine's own TensorFlow, imported bare
        [sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=env
    ).stderr:
        assert "oneDNN" in loud.stderr


def test_cli_verbose_flag_sets_the_switch(monkeypatch):
    monkeypatch.delenv("KERASTP_VERBOSE", raising=False)
    args = cli.build_parser().parse_args(["-v", "list"])
    assert args.diagnostics
    cli._set_verbosity(args.diagnostics)
    from kerastp.backend import verbose

    assert verbose()


def test_bench_table_columns_stay_aligned_for_long_paths(monkeypatch, capsys):
    long_path = "/a/very/long/folder/name/that/goes/on/and/on/model_with_a_long_name.tflite"

    def fake_bench(target, **kwargs):
        return [
            {"runtime": "tflite", "threads": 1, "batch_size": 1, "median_ms": 1.5, "p90_ms": 2.0}
        ]

    import kerastp.bench

    monkeypatch.setattr(kerastp.bench, "bench_path", fake_bench)
    assert cli.main(["bench", long_path, "short.tflite", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    column = lines[0].index("runtime")
    assert len(lines) == 3
    for line in lines[1:]:
        assert line[column - 2 : column] == "  " and line[column:].startswith("tflite"), line


def test_refused_integer_export_names_the_next_step():
    from kerastp import export

    rng = np.random.default_rng(0)
    future = rng.random((4, 2, 4, 4, 1), dtype=np.float32)
    keras_pred = future + 0.01
    lite_pred = future + 0.1  # much worse than the float model
    with pytest.raises(export.ExportVerificationError) as info:
        export._quantized_parity(
            "int8",
            keras_pred,
            lite_pred,
            [4],
            (keras_pred, lite_pred, future),
            {"metric": 0.1, "relative": 0.05},
        )
    message = str(info.value)
    assert "nothing was written" in message
    assert "--quantize dynamic" in message and "--max-metric-increase" in message


def test_quantized_name_is_not_suffixed_twice(tmp_path, monkeypatch):
    from kerastp import export

    written = {}

    def fake_tflite(model, path, **kwargs):
        written["path"] = path
        return {"parity": {"max_abs_error": 0.0}}

    class Record:
        preset, data_scale = "p", None

        def source(self, *args, **kwargs):
            raise AssertionError("fp16 needs no data")

    monkeypatch.setattr(export, "load_model", lambda path: object())
    monkeypatch.setattr(export.RunRecord, "of", classmethod(lambda cls, path: Record()))
    monkeypatch.setattr(export, "export_tflite", fake_tflite)
    export.export_artifacts(
        tmp_path / "m.keras", formats="tflite", name="x_fp16", quantize="fp16", tflite_dir=tmp_path
    )
    assert written["path"].name == "x_fp16.tflite"
    export.export_artifacts(
        tmp_path / "m.keras", formats="tflite", name="x", quantize="fp16", tflite_dir=tmp_path
    )
    assert written["path"].name == "x_fp16.tflite"


def test_list_reads_stored_counts_without_building_models():
    code = (
        "import sys, io, contextlib; from kerastp import cli;"
        "out = io.StringIO();"
        "ctx = contextlib.redirect_stdout(out);"
        "ctx.__enter__(); status = cli.main(['list']); ctx.__exit__(None, None, None);"
        "assert status == 0;"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'built models';"
        "print(out.getvalue())"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    from kerastp import registry

    for name in registry.PRESETS:
        assert name in result.stdout
    assert "11.11M" in result.stdout  # STLight-XS's stored trainable parameters
