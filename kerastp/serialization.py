"""`keras.saving.load_model` on kerastp files after a plain `import kerastp`, as keras-hub
models load after `import keras_hub`, without `import kerastp` importing Keras (so that
`kerastp.lite` stays free of TensorFlow and Keras on an edge box).

Keras finds a custom class through its registry of custom objects ("kerastp>ConvLSTM").
kerastp's classes register themselves when their module is imported; until then this module
puts a stand-in under each name of `kerastp.registry.SERIALIZABLES` in
`keras.saving.get_custom_objects()`, which imports the real object at first use (its
import replaces the stand-in). The stand-ins go in as soon as Keras is imported: at once if
it already is, else right after Keras' own import finishes (an import hook that touches no
other module). This module imports only the standard library.
"""

import importlib
import importlib.abc
import importlib.util
import sys


class Deferred:
    """Stands in Keras' registry for one kerastp object; imports it when Keras uses it."""

    def __init__(self, registered_name, target):
        self.registered_name = registered_name
        self.target = target

    def resolve(self):
        """The real class or function (importing its module registers it with Keras)."""
        module, attribute = self.target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def from_config(self, *args, **kwargs):
        return self.resolve().from_config(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self):
        return f"Deferred({self.registered_name!r} -> {self.target!r})"


def install(keras_module):
    """Puts the stand-ins into Keras' custom objects (never over a registered object)."""
    from kerastp.registry import SERIALIZABLES

    custom_objects = keras_module.saving.get_custom_objects()
    for name, target in SERIALIZABLES.items():
        custom_objects.setdefault(name, Deferred(name, target))


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Runs `install` right after the `keras` package has been imported."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # once; and let the other finders find Keras
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_install(module):
            exec_module(module)
            try:
                install(module)
            except Exception:  # never break `import keras` (a partial or foreign Keras)
                pass

        spec.loader.exec_module = exec_then_install
        return spec


def enable():
    """Makes `keras.saving.load_model` find kerastp's objects, now or once Keras loads."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "saving"):
        install(keras)
    elif not any(isinstance(finder, _AfterKerasImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport())
