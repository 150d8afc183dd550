"""Integrity checks of the files kerastp reads: clear errors for corrupted or truncated models.

A `.keras` file, a `.tflite` flatbuffer or a SavedModel directory that was cut short (a full
disk, an interrupted copy) or is not what its name says raises `CorruptArtifactError` (a
`ValueError`) naming the file and what is wrong, instead of a deep TensorFlow traceback or a
misleading "file not found". This module imports only the standard library (the LiteRT
runner uses it on machines without TensorFlow).
"""

import os
import pathlib
import zipfile

#: The members every `.keras` archive written by Keras 3 holds.
KERAS_MEMBERS = ("metadata.json", "config.json")

_ZIP_MAGIC = b"PK\x03\x04"
_TFLITE_IDENTIFIER = b"TFL3"


class CorruptArtifactError(ValueError):
    """A model file or directory exists but is truncated, corrupted or of the wrong kind."""


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def check_keras_archive(path):
    """Checks that `path` is a complete `.keras` zip archive; returns it as a `Path`.

    Reads the archive's directory and the CRC of every member (a few milliseconds for a
    small model), so a truncated, partly overwritten or foreign file is caught before Keras
    reports it as "file not found" or fails deep inside h5py.

    Raises:
        FileNotFoundError: `path` does not exist.
        CorruptArtifactError: not a zip archive (with a hint when it was cut short), a member
            failing its CRC, or no Keras `config.json` / `metadata.json`.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No .keras file at {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    size = _size(path)
    if not zipfile.is_zipfile(path):
        if head == _ZIP_MAGIC:
            raise CorruptArtifactError(
                f"{path} is a truncated .keras archive: it starts like a zip file but its zip "
                f"directory is missing ({size} bytes; an interrupted write or copy?)"
            )
        raise CorruptArtifactError(
            f"{path} is not a .keras zip archive ({size} bytes starting with {head!r})"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise CorruptArtifactError(
            f"{path} is a corrupted .keras archive ({size} bytes): {error}"
        ) from error
    if bad is not None:
        raise CorruptArtifactError(
            f"{path} is a corrupted .keras archive: member {bad!r} fails its CRC check"
        )
    missing = [name for name in KERAS_MEMBERS if name not in names]
    if missing:
        raise CorruptArtifactError(
            f"{path} is a zip archive but not a .keras model: it lacks {', '.join(missing)}"
        )
    return path


def check_tflite_content(content, source="the given bytes"):
    """Checks that `content` looks like a TFLite flatbuffer (the `TFL3` file identifier).

    Raises:
        CorruptArtifactError: naming `source`, for content too short to be a flatbuffer or
            without the identifier.
    """
    if len(content) < 8:
        raise CorruptArtifactError(
            f"{source} is not a valid TFLite model: {len(content)} bytes, too short for a "
            "flatbuffer (empty or truncated file?)"
        )
    if content[4:8] != _TFLITE_IDENTIFIER:
        raise CorruptArtifactError(
            f"{source} is not a valid TFLite model: no 'TFL3' flatbuffer identifier "
            f"({len(content)} bytes starting with {bytes(content[:8])!r})"
        )


def tflite_error(source, content, error):
    """The `CorruptArtifactError` for a flatbuffer the interpreter refused."""
    return CorruptArtifactError(
        f"{source} is not a valid TFLite model ({len(content)} bytes; truncated or corrupted "
        f"flatbuffer?): {error}"
    )


def check_saved_model_dir(directory):
    """Checks a SavedModel directory's layout before TensorFlow reads it.

    Raises:
        FileNotFoundError: no directory, or no `saved_model.pb` in it.
        CorruptArtifactError: an empty `saved_model.pb`, or no `variables/variables.index`.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"No SavedModel directory at {directory}")
    graph = directory / "saved_model.pb"
    if not graph.is_file():
        raise FileNotFoundError(f"{directory} is not a SavedModel: it has no saved_model.pb")
    if _size(graph) == 0:
        raise CorruptArtifactError(
            f"{directory} is a corrupted SavedModel: saved_model.pb is empty"
        )
    if not (directory / "variables" / "variables.index").is_file():
        raise CorruptArtifactError(
            f"{directory} is an incomplete SavedModel: variables/variables.index is missing"
        )
    return directory


def saved_model_error(directory, error):
    """The `CorruptArtifactError` for a SavedModel TensorFlow could not load."""
    text = " ".join(str(error).split())
    if len(text) > 300:
        text = text[:300] + " ..."
    return CorruptArtifactError(
        f"{directory} is a corrupted or incomplete SavedModel ({type(error).__name__}: {text})"
    )
