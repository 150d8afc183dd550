"""Pretrained models: names that resolve to shipped, checksummed files (keras-hub's
`from_preset`).

`registry.PRETRAINED` lists each pretrained model's files (the `.keras` model and its TFLite
variants, paths relative to a pretrained root) with their SHA-256. A root is, in order:

1. `$KERASTP_PRETRAINED_DIR`, a folder holding `saved_models/` and `tflite/`;
2. the source checkout kerastp runs from (the repository's `saved_models/` and `tflite/`);
3. `<sys.prefix>/share/kerastp`, where a wheel installs them (setup.cfg `data_files`).

No network is used. A missing file raises `FileNotFoundError`, an altered one
`kerastp.artifacts.CorruptArtifactError`; both name the file and its expected SHA-256.
This module imports neither TensorFlow nor Keras: `kerastp.forecasters.from_preset` loads
through it, on edge boxes too.
"""

import hashlib
import os
import sys
from pathlib import Path

from kerastp.registry import PRESETS, PRETRAINED

ENV_VAR = "KERASTP_PRETRAINED_DIR"

_verified = {}


def search_roots():
    """Folders searched for pretrained files, in order."""
    roots = []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    roots.append(Path(__file__).resolve().parents[1])
    roots.append(Path(sys.prefix) / "share" / "kerastp")
    return roots


def list_pretrained():
    """Names of the pretrained models."""
    return sorted(PRETRAINED)


def _entry(name, kind):
    if name not in PRETRAINED:
        hint = ""
        if name in PRESETS:
            hint = (
                f" {name!r} is an architecture preset without trained weights: build it with "
                f"kerastp.build_model({name!r}) and train it."
            )
        raise ValueError(
            f"Unknown pretrained model {name!r}; pretrained models: "
            f"{', '.join(list_pretrained())}.{hint}"
        )
    files = PRETRAINED[name]["files"]
    if kind not in files:
        raise ValueError(
            f"Pretrained model {name!r} has no {kind!r} file; it ships {', '.join(sorted(files))}"
        )
    return files[kind]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pretrained_file(name, kind="keras"):
    """The verified path of pretrained model `name`'s `kind` file ("keras", "tflite", ...).

    Raises:
        ValueError: unknown name or kind (listing the valid ones).
        FileNotFoundError: the file is in none of `search_roots()`; names the file, the
            places searched and its expected SHA-256.
        kerastp.artifacts.CorruptArtifactError: the file's SHA-256 differs from the recorded
            one (a damaged or replaced file); names both.
    """
    entry = _entry(name, kind)
    relative, expected = entry["path"], entry["sha256"]
    roots = search_roots()
    path = next((root / relative for root in roots if (root / relative).is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"Pretrained model {name!r}: {relative} (SHA-256 {expected}) is not in "
            f"{', '.join(str(r) for r in roots)}. Set {ENV_VAR} to the folder that holds "
            "saved_models/ and tflite/, or reinstall kerastp."
        )
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if _verified.get(key) != expected:
        actual = sha256(path)
        if actual != expected:
            from kerastp.artifacts import CorruptArtifactError

            raise CorruptArtifactError(
                f"Pretrained model {name!r}: {path} has SHA-256 {actual}, expected {expected} "
                "(the file was altered or damaged; restore it from the kerastp release)"
            )
        _verified[key] = expected
    return path


def resolve_model_path(model):
    """`model` itself when it is a path that exists or no pretrained name; the verified
    `.keras` file when it names a pretrained model."""
    if isinstance(model, str | os.PathLike) and not Path(model).exists():
        if str(model) in PRETRAINED:
            return pretrained_file(str(model), "keras")
    return model
