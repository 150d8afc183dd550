"""Real weather-radar nowcasting data: readers, sliding windows, event splits, `tf.data`.

The data are the eight precipitation events of `shared/data/radar` (pysteps example data from
MeteoSwiss, FMI, RMI, the Australian BoM and EUMETNET OPERA; see its README.md): per event and
resolution one `{64,128}/<event>.npz` holding `frames` (T, H, W) float32 in model scale,
`nodata_frac` (T, H, W) float16, `times` (T,) UTC `YYYYmmddHHMM` strings and `meta_json`.
They ship with the project's shared folder only: this module never downloads anything.

Model scale (exact, as written by the converter):

    x = log1p(R) / log1p(100)      R = rain rate in mm/h clipped to [0, 100], x in [0, 1]
    R = expm1(x * log1p(100))

Nowcasting protocol (README): 6 frames in, 12 frames out, windows with stride 3 inside one
event. Windows of an event overlap, so train / validation / test are split by whole events
(`DEFAULT_SPLIT`, `split_events`), never by window.

This module imports only NumPy; TensorFlow is imported inside `radar_dataset`.
"""

import dataclasses
import json
import pathlib
import types

import numpy as np

from kerastp import options
from kerastp.data.locations import resolve_location
from kerastp.rain_scale import _LOG1P_MAX, RAIN_RATE_MAX, to_model_scale, to_rain_rate  # noqa: F401
from kerastp.saving import load_npz
from kerastp.validation import check_input_path, check_int

__all__ = [
    "DEFAULT_SPLIT",
    "EXTRA_EVENTS",
    "RADAR_ENV_VAR",
    "RADAR_RESOLUTIONS",
    "RAIN_RATE_MAX",
    "THRESHOLDS_MM_H",
    "THRESHOLDS_MODEL_SCALE",
    "VALIDATION_EVENTS",
    "RadarEvent",
    "list_events",
    "load_event",
    "radar_arrays",
    "radar_dataset",
    "resolve_radar_dir",
    "sliding_windows",
    "split_events",
    "to_model_scale",
    "to_rain_rate",
    "window_starts",
]

RADAR_ENV_VAR = "KERASTP_RADAR"
RADAR_RESOLUTIONS = options.RADAR_RESOLUTIONS

#: Verification thresholds of the protocol (CSI / POD / FAR), in mm/h.
THRESHOLDS_MM_H = (0.5, 1.0, 5.0)

_REQUIRED_KEYS = ("frames", "nodata_frac", "times", "meta_json")

#: Validation events of the default split: both 5-minute, two different radar networks.
VALIDATION_EVENTS = ("fmi_20170509", "mch_20170131")
#: The "extra" group of the data's index.json: BoM (6-minute steps) and OPERA (15-minute
#: steps). They cannot share a dataset with the 5-minute events (their 18 frames span other
#: lead times), so the default split keeps them out of train and validation.
EXTRA_EVENTS = ("bom_20180616", "opera_20180824")

#: The default event split (see `split_events`): the four remaining 5-minute events train,
#: two 5-minute events from two networks validate, and the two events with other time steps
#: form a separate "extra" split. There is no default test event: with six 5-minute events,
#: validation doubles as the held-out evaluation set; pass `test=` to `split_events` to carve
#: one out. Equal to `split_events(list_events())` on the shipped data (tested).
DEFAULT_SPLIT = types.MappingProxyType(
    {
        "train": ("fmi_20160928", "mch_20150515", "mch_20160711", "rmi_20210704"),
        "val": VALIDATION_EVENTS,
        "test": (),
        "extra": EXTRA_EVENTS,
    }
)
_SPLIT_ALIASES = {"validation": "val"}


# --------------------------------------------------------------------------------------------
# Model scale
# --------------------------------------------------------------------------------------------


#: `THRESHOLDS_MM_H` in model scale: about (0.0879, 0.1502, 0.3882).
THRESHOLDS_MODEL_SCALE = tuple(float(v) for v in to_model_scale(np.array(THRESHOLDS_MM_H)))


# --------------------------------------------------------------------------------------------
# Locating and reading events
# --------------------------------------------------------------------------------------------


def _is_radar_dir(path):
    return path.is_dir() and any((path / str(r)).is_dir() for r in RADAR_RESOLUTIONS)


def _radar_dir_or_none(path):
    return path if _is_radar_dir(path) else None


def resolve_radar_dir(path=None):
    """Finds the radar data directory (the one holding the `64/` and `128/` folders).

    Resolution order (`kerastp.data.locations.find_location`):
    1. `path`, when given.
    2. The environment variable `KERASTP_RADAR`.
    3. `../shared/data/radar` relative to the current working directory.
    4. `../shared/data/radar` relative to the repository holding this package (the project
       layout: the `shared` folder beside the `kerastp` checkout).

    An explicit `path` or `KERASTP_RADAR` that points at nothing usable raises immediately; it
    never falls through to the later options. Nothing is ever downloaded: the data ship with
    the project's shared folder only.

    Args:
        path: optional directory (str or path-like).

    Returns:
        `pathlib.Path` of the directory.

    Raises:
        FileNotFoundError: nothing found; the message names every place looked at.

    Example:

    >>> resolve_radar_dir("../shared/data/radar")  # doctest: +SKIP
    PosixPath('../shared/data/radar')
    """
    repo_root = pathlib.Path(__file__).resolve().parents[2]
    return resolve_location(
        path,
        argument="path",
        env_var=RADAR_ENV_VAR,
        candidates=[
            pathlib.Path.cwd() / ".." / "shared" / "data" / "radar",
            repo_root.parent / "shared" / "data" / "radar",
        ],
        recognise=_radar_dir_or_none,
        expected="a radar data directory (one holding a '64' or '128' folder of <event>.npz files)",
        what="Radar data",
        advice=(
            "The data ship with the project's shared folder (shared/data/radar, holding 64/ and "
            f"128/ folders of <event>.npz files) and are never downloaded; pass path=... or set "
            f"{RADAR_ENV_VAR}."
        ),
    )


def _check_resolution(resolution):
    if isinstance(resolution, bool) or resolution not in RADAR_RESOLUTIONS:
        raise ValueError(
            f"resolution must be one of {RADAR_RESOLUTIONS} (64 or 128 pixels a side); "
            f"received resolution={resolution!r}."
        )
    return int(resolution)


def list_events(path=None, resolution=64):
    """Names of the events available at one resolution, sorted.

    Args:
        path: radar data directory; see `resolve_radar_dir`.
        resolution: 64 (4 km pixels) or 128 (2 km pixels).

    Returns:
        Sorted list of event names (`<source>_<YYYYmmdd>`).

    Example:

    >>> list_events()  # doctest: +SKIP
    ['bom_20180616', 'fmi_20160928', ..., 'rmi_20210704']
    """
    resolution = _check_resolution(resolution)
    folder = resolve_radar_dir(path) / str(resolution)
    if not folder.is_dir():
        raise FileNotFoundError(f"'{folder}' does not exist: no events at {resolution} pixels.")
    return sorted(p.stem for p in folder.glob("*.npz") if p.is_file())


@dataclasses.dataclass(frozen=True, eq=False)
class RadarEvent:
    """One precipitation event at one resolution.

    Attributes:
        name: event name, `<source>_<YYYYmmdd>`.
        frames: float32 (T, H, W, 1) in model scale, [0, 1].
        times: `datetime64[m]` (T,) UTC valid times, strictly increasing with a constant step.
        time_step_minutes: the step between frames (5, 6 or 15 for the shipped events).
        nodata_frac: float32 (T, H, W, 1), the fraction of each pixel's native radar pixels
            that had no data (set to 0 mm/h by the converter).
        metadata: the event's metadata (the `meta_json` of its file).
    """

    name: str
    frames: np.ndarray
    times: np.ndarray
    time_step_minutes: int
    nodata_frac: np.ndarray
    metadata: dict

    @property
    def num_frames(self):
        return int(self.frames.shape[0])

    def __repr__(self):
        return (
            f"RadarEvent(name={self.name!r}, frames={self.frames.shape}, "
            f"times={self.times[0]}..{self.times[-1]}, "
            f"time_step_minutes={self.time_step_minutes})"
        )


def _parse_times(raw, file):
    """'YYYYmmddHHMM' strings -> datetime64[m]; ValueError naming the file if malformed."""
    raw = np.asarray(raw)
    if raw.dtype.kind == "S":
        raw = np.char.decode(raw, "ascii")
    if raw.dtype.kind != "U" or raw.ndim != 1:
        raise ValueError(
            f"{file}: key 'times' must be a 1-D array of 'YYYYmmddHHMM' strings; received "
            f"dtype {raw.dtype}, shape {raw.shape}."
        )
    iso = []
    for value in raw.tolist():
        if len(value) != 12 or not value.isdigit():
            raise ValueError(f"{file}: key 'times' holds {value!r}, not 'YYYYmmddHHMM'.")
        iso.append(f"{value[:4]}-{value[4:6]}-{value[6:8]}T{value[8:10]}:{value[10:12]}")
    try:
        return np.array(iso, dtype="datetime64[m]")
    except ValueError as error:
        raise ValueError(f"{file}: key 'times' holds an invalid date ({error}).") from error


def load_event(name, path=None, resolution=64):
    """Loads one event as a `RadarEvent`, checking the file thoroughly.

    Args:
        name: event name, e.g. "mch_20150515" (see `list_events`).
        path: radar data directory; see `resolve_radar_dir`.
        resolution: 64 (4 km pixels) or 128 (2 km pixels).

    Returns:
        `RadarEvent` with frames float32 (T, H, W, 1) in model scale.

    Raises:
        FileNotFoundError: no data directory, or no file for this event and resolution.
        PermissionError: the event's file is not readable.
        ValueError: bad resolution; a corrupt file or missing key; frames that are NaN, Inf or
            outside [0, 1]; mismatched shapes; times that are malformed or not strictly
            increasing with a constant step. Every message names the file.

    Example:

    >>> event = load_event("mch_20150515")  # doctest: +SKIP
    >>> event.frames.shape, event.time_step_minutes  # doctest: +SKIP
    ((40, 64, 64, 1), 5)
    """
    resolution = _check_resolution(resolution)
    if not isinstance(name, str) or not name or pathlib.Path(name).name != name:
        raise ValueError(f"name must be an event name such as 'mch_20150515'; received {name!r}.")
    folder = resolve_radar_dir(path) / str(resolution)
    file = folder / f"{name}.npz"
    if not file.is_file():
        available = sorted(p.stem for p in folder.glob("*.npz")) if folder.is_dir() else []
        raise FileNotFoundError(
            f"Radar event file '{file}' not found; events available at {resolution} pixels: "
            f"{available}."
        )
    check_input_path(file, "name")  # PermissionError if unreadable
    arrays = load_npz(file, _REQUIRED_KEYS, what="an .npz archive of a radar event")

    frames = arrays["frames"]
    if frames.dtype.kind != "f" or frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(
            f"{file}: key 'frames' must be floating (T, H, W) with T > 0; received dtype "
            f"{frames.dtype}, shape {frames.shape}."
        )
    frames = frames.astype(np.float32)
    non_finite = int(np.count_nonzero(~np.isfinite(frames)))
    if non_finite:
        raise ValueError(f"{file}: key 'frames' holds {non_finite} NaN or Inf values.")
    outside = int(np.count_nonzero((frames < 0.0) | (frames > 1.0)))
    if outside:
        raise ValueError(
            f"{file}: key 'frames' holds {outside} values outside the model scale [0, 1] "
            f"(min {frames.min():g}, max {frames.max():g})."
        )

    nodata = arrays["nodata_frac"]
    if nodata.shape != frames.shape:
        raise ValueError(
            f"{file}: key 'nodata_frac' has shape {nodata.shape}; expected {frames.shape} "
            "like 'frames'."
        )

    times = _parse_times(arrays["times"], file)
    if times.shape != frames.shape[:1]:
        raise ValueError(
            f"{file}: key 'times' has {times.shape[0]} entries for {frames.shape[0]} frames."
        )
    if len(times) < 2:
        raise ValueError(f"{file}: one frame only; the time step is undefined.")
    steps = np.diff(times).astype(np.int64)
    if steps[0] <= 0 or np.any(steps != steps[0]):
        raise ValueError(
            f"{file}: times are not strictly increasing with a constant step; steps in "
            f"minutes: {sorted(set(steps.tolist()))}."
        )

    try:
        metadata = json.loads(str(arrays["meta_json"]))
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{file}: key 'meta_json' is not valid JSON ({error}).") from error
    if not isinstance(metadata, dict):
        raise ValueError(f"{file}: key 'meta_json' must hold a JSON object.")

    return RadarEvent(
        name=name,
        frames=frames[..., None],
        times=times,
        time_step_minutes=int(steps[0]),
        nodata_frac=nodata.astype(np.float32)[..., None],
        metadata=metadata,
    )


# --------------------------------------------------------------------------------------------
# Sliding windows
# --------------------------------------------------------------------------------------------


def window_starts(num_frames, input_frames=6, output_frames=12, stride=3):
    """First-frame indices of the sliding windows of one sequence.

    Windows start at 0, stride, 2 * stride, ... while start + input_frames + output_frames
    <= num_frames: there are `(num_frames - input_frames - output_frames) // stride + 1`.

    Args:
        num_frames: frames in the sequence (>= 1).
        input_frames: frames a window feeds the model (>= 1).
        output_frames: frames a window asks it to forecast (>= 1).
        stride: frames between window starts (>= 1).

    Returns:
        int64 array of start indices.

    Raises:
        ValueError: a non-positive or non-int argument, or fewer frames than one window needs.

    Example:

    >>> window_starts(40).tolist()
    [0, 3, 6, 9, 12, 15, 18, 21]
    """
    num_frames = check_int("num_frames", num_frames, minimum=1)
    input_frames = check_int("input_frames", input_frames, minimum=1)
    output_frames = check_int("output_frames", output_frames, minimum=1)
    stride = check_int("stride", stride, minimum=1)
    length = input_frames + output_frames
    if num_frames < length:
        raise ValueError(
            f"one window of input_frames + output_frames = {input_frames} + {output_frames} "
            f"needs {length} frames; received {num_frames} frames."
        )
    return np.arange(0, num_frames - length + 1, stride, dtype=np.int64)


def sliding_windows(frames, input_frames=6, output_frames=12, stride=3):
    """Cuts one sequence into overlapping (past, future) windows (see `window_starts`).

    Args:
        frames: array (T, H, W, C).
        input_frames: frames in each `past` (>= 1).
        output_frames: frames in each `future`, the ones right after `past` (>= 1).
        stride: frames between window starts (>= 1).

    Returns:
        (past, future): arrays (N, input_frames, H, W, C) and (N, output_frames, H, W, C) of
        the dtype of `frames` (copies, not views).

    Raises:
        ValueError: `frames` not of rank 4, too few frames for one window, or a non-positive
            or non-int argument.

    Example:

    >>> past, future = sliding_windows(np.zeros((40, 64, 64, 1), np.float32))
    >>> past.shape, future.shape
    ((8, 6, 64, 64, 1), (8, 12, 64, 64, 1))
    """
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(
            f"frames must have rank 4, (T, H, W, C); received shape {frames.shape} "
            f"(rank {frames.ndim})."
        )
    starts = window_starts(frames.shape[0], input_frames, output_frames, stride)
    index = starts[:, None] + np.arange(input_frames + output_frames)
    windows = frames[index]
    return windows[:, :input_frames], windows[:, input_frames:]


# --------------------------------------------------------------------------------------------
# Event splits
# --------------------------------------------------------------------------------------------


def _name_tuple(argument, values):
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ValueError(
            f"{argument} must be a list or tuple of event names; received {argument}={values!r}."
        )
    values = tuple(values)
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"{argument} lists {duplicates} more than once.")
    return values


def split_events(names=None, val=VALIDATION_EVENTS, test=(), extra=None, path=None, resolution=64):
    """Splits events into train / val / test / extra by whole events (deterministic).

    Windows of one event overlap, so an event belongs to exactly one split. `val`, `test` and
    `extra` are taken as given; train is every other name, sorted.

    Default (`DEFAULT_SPLIT` on the shipped data): val = fmi_20170509 and mch_20170131, two
    5-minute events from two radar networks (one convective spring case, one winter case);
    extra = the events of another time step (BoM 6 min, OPERA 15 min, `EXTRA_EVENTS`); train =
    the four other 5-minute events (MeteoSwiss x2, FMI, RMI); no test event.

    Args:
        names: all event names; defaults to `list_events(path, resolution)`.
        val: validation events.
        test: test events.
        extra: events kept out of train (and of val / test); None means the members of
            `EXTRA_EVENTS` that are in `names`.
        path, resolution: where to list events when `names` is None.

    Returns:
        dict with keys "train", "val", "test", "extra", each a tuple of names.

    Raises:
        ValueError: a name in val / test / extra that is not in `names`, an event in two
            splits, duplicate names, or a string where a list was expected.

    Example:

    >>> split_events(["a", "b", "c", "d"], val=["b"], test=["d"])
    {'train': ('a', 'c'), 'val': ('b',), 'test': ('d',), 'extra': ()}
    """
    if names is None:
        names = list_events(path, resolution)
    names = _name_tuple("names", names)
    if extra is None:
        extra = tuple(e for e in EXTRA_EVENTS if e in names)
    groups = {"val": _name_tuple("val", val), "test": _name_tuple("test", test)}
    groups["extra"] = _name_tuple("extra", extra)
    known = set(names)
    for group, members in groups.items():
        unknown = [m for m in members if m not in known]
        if unknown:
            raise ValueError(f"{group} lists unknown events {unknown}; known events: {names}.")
    owner = {}
    for group, members in groups.items():
        for member in members:
            if member in owner:
                raise ValueError(
                    f"event {member!r} is in both {owner[member]} and {group}; splits must be "
                    "disjoint (whole events, never shared)."
                )
            owner[member] = group
    train = tuple(sorted(n for n in names if n not in owner))
    return {"train": train, **groups}


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def _split_event_names(split, events, splits):
    if events is not None:
        events = _name_tuple("events", events)
        if not events:
            raise ValueError("events must name at least one event; received events=().")
        return events
    splits = DEFAULT_SPLIT if splits is None else splits
    key = _SPLIT_ALIASES.get(split, split)
    if key not in splits:
        raise ValueError(f"split must be one of {list(splits)}; received split={split!r}.")
    names = _name_tuple(f"splits[{key!r}]", splits[key])
    if not names:
        raise ValueError(
            f"split {key!r} has no events; pass e.g. splits=split_events(test=[...]) or "
            "events=[...]."
        )
    return names


def _load_windows_source(
    split, path, resolution, input_frames, output_frames, stride, events, splits, allow_mixed
):
    """Loads a split's events and checks them against the window protocol."""
    resolution = _check_resolution(resolution)
    for argument, value in (
        ("input_frames", input_frames),
        ("output_frames", output_frames),
        ("stride", stride),
    ):
        check_int(argument, value, minimum=1)
    names = _split_event_names(split, events, splits)
    loaded = [load_event(name, path, resolution) for name in names]
    steps = {event.name: event.time_step_minutes for event in loaded}
    if len(set(steps.values())) > 1 and not allow_mixed:
        listing = ", ".join(f"{name} ({step} min)" for name, step in steps.items())
        raise ValueError(
            f"events with different time steps in one dataset: {listing}. Their windows would "
            "span different lead times; choose events with one time step or pass "
            "allow_mixed_time_steps=True."
        )
    needed = input_frames + output_frames
    for event in loaded:
        if event.num_frames < needed:
            raise ValueError(
                f"event {event.name!r} has {event.num_frames} frames, fewer than the "
                f"input_frames + output_frames = {needed} of one window."
            )
    return loaded


def radar_arrays(
    split="val",
    path=None,
    resolution=64,
    input_frames=6,
    output_frames=12,
    stride=3,
    events=None,
    splits=None,
    allow_mixed_time_steps=False,
    return_info=False,
):
    """All windows of a split as NumPy arrays, in order (events in split order), for evaluation.

    Args:
        split: a key of `splits` ("train", "val", "test", "extra"; "validation" means "val").
        path: radar data directory; see `resolve_radar_dir`.
        resolution: 64 or 128.
        input_frames, output_frames, stride: the window protocol (README: 6, 12, 3).
        events: event names to use instead of the split's.
        splits: mapping split -> event names (e.g. from `split_events`); `DEFAULT_SPLIT` if
            None.
        allow_mixed_time_steps: allow events with different time steps together.
        return_info: also return a dict of per-window "event" (names), "start" (first-frame
            index in the event) and "issue_time" (`datetime64[m]` of the last input frame).

    Returns:
        (past, future) float32 (N, input_frames, H, W, 1) and (N, output_frames, H, W, 1) in
        model scale, plus the info dict when `return_info` is True.

    Example:

    >>> past, future = radar_arrays("val")  # doctest: +SKIP
    >>> past.shape, future.shape  # doctest: +SKIP
    ((16, 6, 64, 64, 1), (16, 12, 64, 64, 1))
    """
    loaded = _load_windows_source(
        split,
        path,
        resolution,
        input_frames,
        output_frames,
        stride,
        events,
        splits,
        allow_mixed_time_steps,
    )
    pasts, futures, names, starts, issued = [], [], [], [], []
    for event in loaded:
        past, future = sliding_windows(event.frames, input_frames, output_frames, stride)
        pasts.append(past)
        futures.append(future)
        begin = window_starts(event.num_frames, input_frames, output_frames, stride)
        names.extend([event.name] * len(begin))
        starts.append(begin)
        issued.append(event.times[begin + input_frames - 1])
    past, future = np.concatenate(pasts), np.concatenate(futures)
    if not return_info:
        return past, future
    info = {
        "event": np.array(names),
        "start": np.concatenate(starts),
        "issue_time": np.concatenate(issued),
    }
    return past, future, info


def radar_dataset(
    split="train",
    path=None,
    resolution=64,
    input_frames=6,
    output_frames=12,
    stride=3,
    batch_size=16,
    shuffle=None,
    seed=0,
    events=None,
    splits=None,
    cache=True,
    drop_remainder=False,
    allow_mixed_time_steps=False,
):
    """A `tf.data.Dataset` of (past, future) windows of a split's radar events.

    Every event's frames are held once in memory and windows are sliced from them (the
    stride-3 windows of 18 frames overlap six-fold). With `cache=True` the sliced windows are
    cached after the first pass. Windows never cross events: the split is by whole events.

    Args:
        split: a key of `splits` ("train", "val", "test", "extra"; "validation" means "val").
        path: radar data directory; see `resolve_radar_dir`.
        resolution: 64 (4 km pixels) or 128 (2 km pixels).
        input_frames, output_frames, stride: the window protocol (README: 6, 12, 3).
        batch_size: windows per batch (>= 1).
        shuffle: shuffle the windows (all of them, reshuffled every pass); defaults to True for
            split="train" and False otherwise.
        seed: non-negative int seed of the shuffle.
        events: event names to use instead of the split's (the split then only sets the
            shuffle default).
        splits: mapping split -> event names (e.g. from `split_events`); `DEFAULT_SPLIT` if
            None.
        cache: cache the windows in memory after the first pass.
        drop_remainder: drop the last, smaller batch.
        allow_mixed_time_steps: allow events with different time steps in one dataset
            (refused by default: their windows span different lead times).

    Returns:
        `tf.data.Dataset` of (past, future): float32 (B, input_frames, H, W, 1) and
        (B, output_frames, H, W, 1) in model scale, with a known cardinality, prefetched.

    Raises:
        ValueError: unknown split or bad argument; events with different time steps; an event
            too short for one window; see also `load_event`.
        FileNotFoundError: see `resolve_radar_dir` and `load_event`.

    Example:

    >>> ds = radar_dataset("train", batch_size=8)  # doctest: +SKIP
    >>> [tuple(s.shape) for s in ds.element_spec]  # doctest: +SKIP
    [(None, 6, 64, 64, 1), (None, 12, 64, 64, 1)]
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    loaded = _load_windows_source(
        split,
        path,
        resolution,
        input_frames,
        output_frames,
        stride,
        events,
        splits,
        allow_mixed_time_steps,
    )
    if shuffle is None:
        shuffle = _SPLIT_ALIASES.get(split, split) == "train"

    starts, offset = [], 0
    for event in loaded:
        starts.append(offset + window_starts(event.num_frames, input_frames, output_frames, stride))
        offset += event.num_frames
    starts = np.concatenate(starts)
    frames = np.concatenate([event.frames for event in loaded])
    return windows_dataset(
        frames, starts, input_frames, output_frames, batch_size,
        shuffle=shuffle, seed=seed, cache=cache, drop_remainder=drop_remainder,
    )  # fmt: skip


def windows_dataset(
    frames,
    starts,
    input_frames,
    output_frames,
    batch_size,
    *,
    shuffle=False,
    seed=0,
    cache=True,
    drop_remainder=False,
):
    """A batched `tf.data.Dataset` of (past, future) windows sliced from in-memory frames.

    Windows start at `starts` in `frames` (T, H, W, C) and hold `input_frames` then
    `output_frames` frames; slicing runs in parallel maps, `cache=True` caches the sliced
    windows, `shuffle` reshuffles them every pass (seeded), and the cardinality is asserted.
    Shared by the radar and user-array pipelines.
    """
    num_windows = len(starts)
    if drop_remainder and num_windows < batch_size:
        raise ValueError(
            f"the split has {num_windows} windows, fewer than batch_size={batch_size} with "
            "drop_remainder=True, which would leave the dataset empty."
        )

    from kerastp.backend import require_tensorflow

    tf = require_tensorflow()
    frames_t = tf.constant(frames, dtype=tf.float32)
    size = [input_frames + output_frames, *frames.shape[1:]]

    def window(start):
        video = tf.slice(frames_t, tf.stack([start, 0, 0, 0]), size)
        return video[:input_frames], video[input_frames:]

    dataset = tf.data.Dataset.from_tensor_slices(starts.astype(np.int32))
    if cache:
        dataset = dataset.map(window, num_parallel_calls=tf.data.AUTOTUNE).cache()
        if shuffle:
            dataset = dataset.shuffle(num_windows, seed=seed, reshuffle_each_iteration=True)
    else:
        if shuffle:
            dataset = dataset.shuffle(num_windows, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.map(window, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    num_batches = num_windows // batch_size if drop_remainder else -(-num_windows // batch_size)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    return dataset.prefetch(tf.data.AUTOTUNE)
