"""Reading the user's frames from files: `.npy`, `.npz`, HDF5, Zarr and netCDF.

`load_array` picks a reader by suffix (`ARRAY_SUFFIXES`) and checks what it read: a numeric
array of rank 3 `(T, H, W)` (given a channel axis), 4 `(T, H, W, C)` or 5 `(N, T, H, W, C)`,
not empty, without NaN or Inf. `.npy` and `.npz` are read with NumPy (`.npz` through
`kerastp.saving.load_npz`); `.h5` / `.hdf5` with h5py, `.zarr` stores with zarr and `.nc` with
xarray (+ netCDF4 or h5netcdf). The three libraries are optional extras, imported only when
such a file is read:

    pip install "kerastp[hdf5]"     # h5py
    pip install "kerastp[zarr]"     # zarr
    pip install "kerastp[netcdf]"   # xarray + netCDF4

This module imports only NumPy.
"""

import importlib
import os
import pathlib
import types

import numpy as np

from kerastp.saving import UNREADABLE, load_npz
from kerastp.validation import check_input_path

__all__ = ["ARRAY_SUFFIXES", "as_frames", "describe_source", "load_array"]

#: File suffixes `load_array` reads -> (reader library, pip extra or None for NumPy).
ARRAY_SUFFIXES = types.MappingProxyType(
    {
        ".npy": ("numpy", None),
        ".npz": ("numpy", None),
        ".h5": ("h5py", "hdf5"),
        ".hdf5": ("h5py", "hdf5"),
        ".zarr": ("zarr", "zarr"),
        ".nc": ("xarray", "netcdf"),
    }
)


def describe_source(file, key):
    """How messages name a file and the key read from it."""
    return f"{file}" if key is None else f"{file} (key {key!r})"


def _require(module, file, extra):
    """Imports an optional reader library, or raises ImportError naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"reading '{file}' needs the optional library {module}, which is not installed; "
            f'install it with: pip install "kerastp[{extra}]"'
        ) from error


def _pick_key(file, key, names, kind):
    """The one name to read: `key`, or the only name; ValueError listing names otherwise."""
    names = sorted(names)
    if not names:
        raise ValueError(f"{file}: holds no {kind}s.")
    if key is None:
        if len(names) > 1:
            raise ValueError(
                f"{file}: holds {len(names)} {kind}s {names}; pass key=... to choose one."
            )
        return names[0]
    return key


def _missing_key(file, key, names, kind):
    return ValueError(f"{file}: no {kind} {key!r}; available {kind}s: {sorted(names)}.")


def _read_npy(file, key):
    if key is not None:
        raise ValueError(f"{file}: a .npy file holds a single array; pass key=None, not {key!r}.")
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except UNREADABLE as error:
        raise ValueError(f"{file}: not a readable .npy array ({error}).") from error


def _read_npz(file, key):
    if key is not None:
        return load_npz(file, [key])[key]
    # Without a key the archive must hold exactly one array; an archive of several is read
    # whole before `_pick_key` refuses it (an error path only).
    arrays = load_npz(file)
    return arrays[_pick_key(file, key, arrays, "array")]


def _read_hdf5(file, key):
    h5py = _require("h5py", file, "hdf5")
    try:
        handle = h5py.File(file, "r")
    except OSError as error:
        raise ValueError(f"{file}: not a readable HDF5 file ({error}).") from error
    with handle:
        datasets = []
        handle.visititems(
            lambda name, node: datasets.append(name) if isinstance(node, h5py.Dataset) else None
        )
        name = _pick_key(file, key, datasets, "dataset")
        node = handle.get(name)
        if node is None:
            raise _missing_key(file, name, datasets, "dataset")
        if not isinstance(node, h5py.Dataset):
            raise ValueError(
                f"{file}: {name!r} is an HDF5 group, not a dataset; datasets: {sorted(datasets)}."
            )
        if node.dtype.kind not in "biuf":
            raise ValueError(
                f"{file} (key {name!r}): dtype {node.dtype} is not numeric; expected integer "
                "or floating data."
            )
        try:
            return node[()]
        except (OSError, ValueError) as error:
            raise ValueError(f"{file}: dataset {name!r} is unreadable ({error}).") from error


def _zarr_array_names(group):
    return [name for name, _ in group.arrays()]


def _read_zarr(file, key):
    zarr = _require("zarr", file, "zarr")
    try:
        node = zarr.open(str(file), mode="r")
    except UNREADABLE as error:
        raise ValueError(f"{file}: not a readable Zarr store ({error}).") from error
    if isinstance(node, zarr.Array):
        if key is not None:
            raise ValueError(
                f"{file}: the Zarr store is a single array; pass key=None, not {key!r}."
            )
        array = node
    else:
        names = _zarr_array_names(node)
        name = _pick_key(file, key, names, "array")
        try:
            array = node[name]
        except KeyError:
            raise _missing_key(file, name, names, "array") from None
        if not isinstance(array, zarr.Array):
            raise ValueError(f"{file}: {name!r} is a Zarr group, not an array; arrays: {names}.")
    try:
        return np.asarray(array[...])
    except UNREADABLE as error:
        raise ValueError(f"{file}: Zarr array is unreadable ({error}).") from error


def _netcdf_engine(file):
    """The first installed netCDF backend of xarray ("netcdf4", else "h5netcdf")."""
    for module, engine in (("netCDF4", "netcdf4"), ("h5netcdf", "h5netcdf")):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return engine
    raise ImportError(
        f"reading '{file}' needs xarray with the netCDF4 (or h5netcdf) backend, which is not "
        'installed; install it with: pip install "kerastp[netcdf]"'
    )


def _read_netcdf(file, key):
    xarray = _require("xarray", file, "netcdf")
    engine = _netcdf_engine(file)
    try:
        dataset = xarray.open_dataset(file, engine=engine)
    except UNREADABLE as error:
        raise ValueError(f"{file}: not a readable netCDF file ({error}).") from error
    with dataset:
        names = [str(name) for name in dataset.data_vars]
        name = _pick_key(file, key, names, "variable")
        if name not in names:
            raise _missing_key(file, name, names, "variable")
        try:
            return dataset[name].to_numpy()
        except UNREADABLE as error:
            raise ValueError(f"{file}: variable {name!r} is unreadable ({error}).") from error


_READERS = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".h5": _read_hdf5,
    ".hdf5": _read_hdf5,
    ".zarr": _read_zarr,
    ".nc": _read_netcdf,
}


def as_frames(array, name, hint=""):
    """Validates frames and returns them float32 of rank 4 or 5 (rank 3 gains a channel)."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name}: expected a NumPy array; received {type(array).__name__}.")
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{name}: dtype {array.dtype} is not numeric; expected integer or floating data."
        )
    if array.ndim not in (3, 4, 5):
        raise ValueError(
            f"{name}: wrong rank {array.ndim} (shape {array.shape}); expected (T, H, W), "
            "(T, H, W, C) or (N, T, H, W, C)."
        )
    if array.size == 0:
        raise ValueError(f"{name}: the array is empty (shape {array.shape}).")
    if array.ndim == 3:
        array = array[..., None]
    with np.errstate(over="ignore"):  # values beyond float32 become Inf: counted below
        array = np.asarray(array, dtype=np.float32)
    nan = int(np.count_nonzero(np.isnan(array)))
    inf = int(np.count_nonzero(np.isinf(array)))
    if nan or inf:
        raise ValueError(
            f"{name}: holds {nan} NaN and {inf} Inf values (as float32) out of {array.size}; "
            f"clean or fill them first.{hint}"
        )
    return array


def load_array(path, key=None):
    """Reads frames from a `.npy`, `.npz`, HDF5, Zarr or netCDF file and checks them.

    Formats (by suffix, case-insensitive):

    * `.npy`: memory-mapped with NumPy; `key` must be None.
    * `.npz`: the array `key`; may be omitted when the archive holds exactly one array.
    * `.h5`, `.hdf5` (h5py, extra `hdf5`): the dataset at path `key` (e.g. "group/frames");
      may be omitted when the file holds exactly one dataset.
    * `.zarr` (zarr, extra `zarr`): a store directory holding one array (`key` None) or a
      group (`key` names an array in it; may be omitted when it holds exactly one).
    * `.nc` (xarray with netCDF4 or h5netcdf, extra `netcdf`): the data variable `key`; may
      be omitted when the file holds exactly one. The variable's dimensions are taken in their
      stored order (no transposition); fill values are read as NaN and so rejected.

    Args:
        path: the file or Zarr directory (str or path-like).
        key: array / dataset / variable name, see above.

    Returns:
        float32 array `(T, H, W, C)` or `(N, T, H, W, C)`. A rank-3 array `(T, H, W)` gets a
        channel axis, `(T, H, W, 1)`. A float32 `.npy` comes back as a read-only memory map.

    Raises:
        FileNotFoundError: `path` does not exist.
        PermissionError: `path` is not readable.
        ValueError: unknown suffix (the message lists the supported ones); an unreadable
            file; a missing or ambiguous key (the message lists the available ones); wrong
            rank; non-numeric dtype; an empty array; NaN or Inf values (counted). Every
            message names the file.
        ImportError: the optional library for the format is missing (the message names the
            pip extra).

    Example:

    >>> np.save("frames.npy", np.zeros((30, 64, 64), np.uint8))  # doctest: +SKIP
    >>> load_array("frames.npy").shape  # doctest: +SKIP
    (30, 64, 64, 1)
    """
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"path must be a str or path-like; received path={path!r}.")
    if key is not None and not isinstance(key, str):
        raise ValueError(f"key must be a str or None; received key={key!r}.")
    file = pathlib.Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"Array file '{file}' not found.")
    check_input_path(file, "path", directory_ok=True)  # PermissionError if unreadable
    suffix = file.suffix.lower()
    if suffix not in _READERS:
        supported = ", ".join(
            f"{s} ({lib})" if extra is None else f"{s} ({lib}, extra '{extra}')"
            for s, (lib, extra) in ARRAY_SUFFIXES.items()
        )
        raise ValueError(f"{file}: unknown suffix {file.suffix!r}; supported: {supported}.")
    raw = _READERS[suffix](file, key)
    hint = " netCDF fill values (_FillValue) are read as NaN." if suffix == ".nc" else ""
    return as_frames(raw, describe_source(file, key), hint)
