"""The one place kerastp writes files: atomic file and directory writes, `.npz` reading and
`.keras` saving and loading.

Every file kerastp writes (JSON sidecars and run records, backups, checkpoints, pictures,
cached data, SavedModel directories) goes through `atomic_write` or `atomic_directory`: the
content is written to a private temporary beside the target (same file system), flushed and
fsync'ed, then renamed onto the target. A write that fails or is killed leaves any previous
file intact and, for files, no temporary behind.

Importing this module imports neither TensorFlow nor Keras; `save_keras` and `load_keras`
import Keras when called.
"""

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from kerastp.artifacts import CorruptArtifactError, check_keras_archive

#: What numpy raises for a truncated, corrupted or foreign `.npz` / `.npy` file.
UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)


def umask():
    """The process umask (read without changing it for longer than two calls)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory):
    # Makes a rename durable; some file systems (and Windows) do not support it.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path, data=None, *, write=None):
    """Writes `data` (bytes or str), or whatever `write(file)` writes, to `path` atomically.

    The content goes to a temporary file beside `path`, is flushed and fsync'ed, then renamed
    onto `path`. On any failure the temporary is removed and a previous `path` is untouched.

    Args:
        path: the target file; its parent folders are created.
        data: bytes, or str (written as UTF-8). Exactly one of `data` and `write`.
        write: a callable given the open binary file object.

    Returns:
        `path` as a `Path`.
    """
    if (data is None) == (write is None):
        raise ValueError("Pass exactly one of `data` and `write`")
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            if write is None:
                f.write(data)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(payload):
    """`payload` as the indented, key-sorted JSON text kerastp writes (numpy values allowed)."""
    return json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n"


def write_json(path, payload):
    """Writes `payload` as JSON atomically (see `atomic_write`); returns the path."""
    return atomic_write(path, to_json(payload))


def read_json(path, default=None):
    """The JSON object in `path`, or `default` when the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def save_npy(path, array):
    """Writes one array as a `.npy` file atomically; returns the path."""
    return atomic_write(path, write=lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def save_npz(path, **arrays):
    """Writes arrays as an uncompressed `.npz` archive atomically; returns the path."""
    return atomic_write(path, write=lambda f: np.savez(f, **arrays))


def remove(path):
    """Removes a file, link or directory tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _old_of(path):
    return path.with_name(f".{path.name}.old")


def temporary_sibling(path):
    """A private temporary directory beside `path` (same file system, so renames are atomic).

    First puts back a previous artifact that a crash left aside mid-swap (see `replace`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = _old_of(path)
    if old.is_dir() and not path.exists():
        os.replace(old, path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def replace(src, dst):
    """Moves a finished `src` onto `dst`, replacing any previous file or directory.

    A file is replaced by one atomic rename. A directory takes two: the old one moves aside
    to `.<name>.old` first; should a crash fall between the renames, the next write to that
    path moves it back before anything else (`temporary_sibling`).
    """
    src, dst = Path(src), Path(dst)
    old = _old_of(dst)
    if dst.is_dir() and not dst.is_symlink():
        remove(old)
        os.replace(dst, old)
        os.replace(src, dst)
        remove(old)
    else:
        os.replace(src, dst)
    _fsync_directory(dst.parent)


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a temporary directory; on a clean exit it replaces `path`, else it is removed.

    Example:
        >>> with atomic_directory("saved_models/m") as tmp:  # doctest: +SKIP
        ...     write_everything_into(tmp)
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        replace(tmp, path)
    finally:
        remove(tmp)


def load_npz(path, keys=None, *, what="an .npz archive"):
    """Reads arrays from an `.npz` file safely (no pickles), with errors that name the file.

    Args:
        path: the `.npz` file.
        keys: the array names to read (each must be present); None reads every array.
        what: what the file should be, for error messages ("a radar event", ...).

    Returns:
        dict of name -> array (fully read; the file is closed).

    Raises:
        ValueError: unreadable, a single `.npy` array, a missing key (the message lists the
            keys found) or a corrupt member; the message names the file.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except UNREADABLE as error:
        raise ValueError(f"{path}: not a readable .npz archive ({error}).") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: holds a single .npy array, not {what}.")
    with archive:
        names = archive.files if keys is None else list(keys)
        arrays = {}
        for key in names:
            if key not in archive.files:
                raise ValueError(
                    f"{path}: missing key {key!r} ({what} expected with "
                    f"{sorted(names)}); found {sorted(archive.files)}."
                )
            try:
                arrays[key] = archive[key]
            except UNREADABLE as error:
                raise ValueError(f"{path}: array {key!r} is corrupt ({error}).") from error
    return arrays


def _uncompiled_copy(model):
    """The same model (config and weights) without optimizer or compile state."""
    copy = type(model).from_config(model.get_config())
    if not copy.built:
        copy.build(model.input_signature_shape)
    copy.set_weights(model.get_weights())
    return copy


def save_keras(model, path, include_optimizer=True):
    """Saves `model` as a `.keras` file atomically; returns the path.

    `include_optimizer=False` leaves the optimizer's state and compile settings out (a
    shipped model's size): an uncompiled copy with the same config and weights is saved.

    The archive is written beside `path`, checked (a complete zip whose every member passes
    its CRC, with Keras' config), then renamed onto `path`: a save that fails or is killed
    leaves any previous file intact and no temporary behind.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"`path` must end in .keras, got {str(path)!r}")
    tmp_dir = temporary_sibling(path)
    try:
        tmp = tmp_dir / path.name
        if not include_optimizer and getattr(model, "optimizer", None) is not None:
            model = _uncompiled_copy(model)
        model.save(tmp)
        check_keras_archive(tmp)
        replace(tmp, path)
    finally:
        remove(tmp_dir)
    return path


def load_model(path):
    """Loads a kerastp model from a `.keras` file or a run directory (its model.keras).

    Raises:
        FileNotFoundError: no such file or run directory.
        kerastp.artifacts.CorruptArtifactError: (a `ValueError`) a truncated, corrupted or
            foreign file, or one Keras cannot rebuild; the message names the file.
    """
    from kerastp.pretrained import resolve_model_path

    path = Path(resolve_model_path(path))
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"No kerastp model at {path} (expected a .keras file or a run dir)")
    check_keras_archive(path)  # CorruptArtifactError for a truncated or foreign file
    from kerastp import registry
    from kerastp.backend import require_keras

    keras = require_keras()  # quietly: a first import of TensorFlow logs natively

    registry.register_serializables()
    try:
        return keras.saving.load_model(path)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise CorruptArtifactError(f"{path} is not a readable .keras model: {error}") from error
