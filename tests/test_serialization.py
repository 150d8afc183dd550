"""`keras.saving.load_model` on kerastp files after a plain `import kerastp`."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from kerastp import registry, saving, serialization

LOAD = """
import sys
import kerastp{lite}
assert "keras" not in sys.modules and "tensorflow" not in sys.modules, "import kerastp loaded Keras"
import keras
import numpy as np
for path in sys.argv[1:]:
    model = keras.saving.load_model(path)
    expected = np.load(path + ".npy")
    got = keras.ops.convert_to_numpy(model(np.load(path + ".in.npy"), training=False))
    assert type(model).__module__.startswith("kerastp."), type(model)
    np.testing.assert_allclose(got, expected, atol=1e-6)
print("loaded", len(sys.argv) - 1)
"""


def _save(preset, folder):
    model = registry.build_model(preset)
    past = np.random.default_rng(0).random((1, *model.input_signature_shape[1:]), "float32")
    path = folder / f"{preset}.keras"
    saving.save_keras(model, path)
    np.save(f"{path}.in.npy", past)
    np.save(f"{path}.npy", keras.ops.convert_to_numpy(model(past, training=False)))
    return str(path)


def _load_in_fresh_python(paths, lite=False):
    code = LOAD.format(lite=".lite" if lite else "")
    result = subprocess.run(
        [sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"loaded {len(paths)}" in result.stdout


def test_keras_load_model_after_import_kerastp(tmp_path):
    # Compiled, so the file also names kerastp's optimizer, loss and metrics.
    model = registry.build_model("convlstm_tiny")
    model.compile(total_steps=10)
    past = np.random.default_rng(1).random((1, *model.input_signature_shape[1:]), "float32")
    path = tmp_path / "convlstm.keras"
    saving.save_keras(model, path)
    np.save(f"{path}.in.npy", past)
    np.save(f"{path}.npy", keras.ops.convert_to_numpy(model(past, training=False)))
    _load_in_fresh_python([str(path)], lite=True)  # even `import kerastp.lite` is enough


@pytest.mark.slow
def test_keras_load_model_loads_every_tiny_preset(tmp_path):
    _load_in_fresh_python([_save(p, tmp_path) for p in registry.list_presets(tiny=True)])


def test_without_kerastp_keras_cannot_find_the_class(tmp_path):
    # The test above can fail: a fresh Python that never imports kerastp cannot load it.
    path = _save("stlight_tiny", tmp_path)
    code = "import sys, keras; keras.saving.load_model(sys.argv[1])"
    result = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert result.returncode != 0 and "STLight" in result.stderr


def test_serializables_list_every_registered_object():
    registry.register_serializables()
    registered = {
        name
        for name, obj in keras.saving.get_custom_objects().items()
        if name.startswith("kerastp>") and not isinstance(obj, serialization.Deferred)
    }
    assert registered == set(registry.SERIALIZABLES)


def test_deferred_stand_in_resolves_to_the_real_class():
    stand_in = serialization.Deferred("kerastp>ConvSC", "kerastp.layers:ConvSC")
    from kerastp.layers import ConvSC

    assert stand_in.resolve() is ConvSC
    layer = stand_in.from_config(ConvSC(4).get_config())
    assert isinstance(layer, ConvSC) and layer.filters == 4
