"""TensorFlow Datasets builders for kerastp's Moving MNIST test sets and the radar events.

Two `tfds.core.GeneratorBasedBuilder` classes, registered with TFDS when this module is
imported (importing `kerastp` or `kerastp.data` does not import it, nor TFDS):

- `KerastpMovingMnist` ("kerastp_moving_mnist"), split "test":
  - config "procedural": kerastp's fixed, seeded test set (`standard_test_set`, 10,000
    sequences) drawn with the built-in procedural digits; needs no file at all.
  - config "mnist": the same protocol on the real MNIST test digits, found offline in this
    order: the config's `mnist_path`; `manual_dir` when it holds `mnist.npz` or the idx
    files; the environment variable `KERASTP_MNIST`; `$KERAS_HOME/datasets/mnist.npz`
    (`~/.keras/datasets/mnist.npz`). The builder never downloads MNIST.
  - config "official": the official `mnist_test_seq.npy` (Srivastava et al. 2015), read from
    `manual_dir`; without it TFDS raises its manual-download error with the instructions.
  Features: "image_sequence" `Video((20, 64, 64, 1), uint8)` (the key and layout of TFDS' own
  `moving_mnist`) and "index" (int32, the sequence's position in the set). Examples are stored
  and read in order (`disable_shuffling=True`): example i is `standard_test_set(...)[i]`.
- `KerastpRadar` ("kerastp_radar"), configs "res64" and "res128": one example per sliding
  window of the nowcasting protocol (6 frames in, 12 out, stride 3, never across events),
  splits "train", "val" and "extra" of `radar.DEFAULT_SPLIT` (by whole events; "extra" holds
  the 6- and 15-minute events, so its windows span other lead times: see the
  "time_step_minutes" feature). The data ship with the project (`shared/data/radar`) and are
  read from `manual_dir`. Features: "past" float32 (6, H, W, 1), "future" float32
  (12, H, W, 1) in model scale, "event", "issue_time" (UTC of the last input frame,
  'YYYY-mm-ddTHH:MM'), "start" (first-frame index in the event) and "time_step_minutes".
  Windows are stored in the order of `radar_arrays(split)`; supervised keys (past, future).

Nothing here touches the network: the builders read local files or generate the data, and
`load_moving_mnist` / `load_radar` pass `try_download_gcs=False`. A prepared dataset is
cached under `data_dir/<name>/<config>/<version>`: a later load reuses it whatever the digit
file or manual_dir (delete that folder, or pass `download_mode="force_redownload"`, to rebuild).

Example:

>>> import tensorflow_datasets as tfds  # doctest: +SKIP
>>> import kerastp.data.tfds_builders  # registers the builders  # doctest: +SKIP
>>> ds = tfds.load("kerastp_moving_mnist/procedural", split="test")  # doctest: +SKIP
>>> ds = load_radar("val", manual_dir="../shared/data/radar")  # doctest: +SKIP
"""

import dataclasses

import numpy as np

try:
    # TFDS 4.9.10 uses `importlib_resources` on every Python but declares it for Python < 3.9
    # only (tensorflow/datasets#11212); the `tfds` extra installs both.
    import importlib_resources  # noqa: F401
    import tensorflow_datasets as tfds
except ImportError as error:  # pragma: no cover - exercised only without tfds
    raise ImportError(
        f"kerastp.data.tfds_builders needs TensorFlow Datasets ({error}). Install it with "
        '`pip install "kerastp[tfds]"` (tensorflow-datasets>=4.9 and importlib_resources).'
    ) from error

from kerastp.data import mnist_files as _mnist
from kerastp.data import moving_mnist as _mm
from kerastp.data import radar as _radar
from kerastp.data import standard_set as _standard
from kerastp.validation import check_int

__all__ = [
    "KerastpMovingMnist",
    "KerastpRadar",
    "MovingMnistConfig",
    "RadarConfig",
    "load_moving_mnist",
    "load_radar",
    "moving_mnist_builder",
    "radar_builder",
]

_MOVING_MNIST_SOURCES = ("procedural", "mnist", "official")
_FULL_SET = 10000
_FRAMES = 20
_SIZE = 64

_MOVING_MNIST_CITATION = """\
@inproceedings{srivastava2015unsupervised,
  title={Unsupervised Learning of Video Representations using LSTMs},
  author={Srivastava, Nitish and Mansimov, Elman and Salakhutdinov, Ruslan},
  booktitle={International Conference on Machine Learning},
  pages={843--852},
  year={2015}
}"""

_RADAR_CITATION = """\
@article{pulkkinen2019pysteps,
  title={Pysteps: an open-source Python library for probabilistic precipitation nowcasting
         (v1.0)},
  author={Pulkkinen, Seppo and Nerini, Daniele and P{\\'e}rez Hortal, Andr{\\'e}s A. and
          Velasco-Forero, Carlos and Seed, Alan and Germann, Urs and Foresti, Loris},
  journal={Geoscientific Model Development},
  volume={12},
  number={10},
  pages={4185--4219},
  year={2019}
}"""


# --------------------------------------------------------------------------------------------
# Moving MNIST
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class MovingMnistConfig(tfds.core.BuilderConfig):
    """A `KerastpMovingMnist` configuration.

    Attributes:
        source: "procedural", "mnist" (kerastp's seeded test set with these digits) or
            "official" (`mnist_test_seq.npy` from `manual_dir`).
        num_sequences: sequences in the "test" split, 1 to 10,000: the first n of the set
            (the sets are prefix-stable: the first n do not depend on the total).
        seed: seed of the generated set (`standard_test_set(seed=...)`); unused by "official".
        mnist_path: MNIST location for source="mnist" (file or directory, see
            `kerastp.data.resolve_mnist_path`); None means manual_dir, `KERASTP_MNIST`, then
            the Keras cache. Not part of the data's identity: give a custom config another
            name when the digits differ.
    """

    source: str = "procedural"
    num_sequences: int = _FULL_SET
    seed: int = 0
    mnist_path: str | None = None

    def __post_init__(self):
        if self.source not in _MOVING_MNIST_SOURCES:
            raise ValueError(
                f"source must be one of {_MOVING_MNIST_SOURCES}; received source={self.source!r}."
            )
        check_int("num_sequences", self.num_sequences, minimum=1)
        if self.num_sequences > _FULL_SET:
            raise ValueError(
                f"num_sequences must be <= {_FULL_SET}; received "
                f"num_sequences={self.num_sequences}."
            )
        check_int("seed", self.seed, minimum=0)


class KerastpMovingMnist(tfds.core.GeneratorBasedBuilder):
    """Moving MNIST test sets: kerastp's fixed seeded set, or the official file.

    Configs "procedural" (default, no file needed), "mnist" (real MNIST test digits, offline)
    and "official" (`mnist_test_seq.npy` in `manual_dir`). One split, "test"; see the module
    docstring for the features and the MNIST lookup order.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: kerastp Moving MNIST protocol v1 (standard_test_set).",
    }
    BUILDER_CONFIGS = [
        MovingMnistConfig(
            name="procedural",
            source="procedural",
            description="kerastp's seeded test set (seed 0) on the built-in procedural digits.",
        ),
        MovingMnistConfig(
            name="mnist",
            source="mnist",
            description="kerastp's seeded test set (seed 0) on the real MNIST test digits.",
        ),
        MovingMnistConfig(
            name="official",
            source="official",
            description="The official mnist_test_seq.npy (Srivastava et al. 2015).",
        ),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "procedural"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Only the "official" and "mnist" configs read files; "procedural" needs none.
    - "official": put the official Moving MNIST test set, mnist_test_seq.npy (819 MB, uint8
      (20, 10000, 64, 64)), in the manual directory. Download it from
      {_standard.MNIST_TEST_SEQ_URL}.
    - "mnist": put MNIST's mnist.npz (keras layout) or t10k-images-idx3-ubyte[.gz] in the
      manual directory, or set KERASTP_MNIST, or place mnist.npz in ~/.keras/datasets.
    Pass the directory with
    download_config=tfds.download.DownloadConfig(manual_dir="/path/to/dir"), or the
    manual_dir argument of kerastp.data.tfds_builders.load_moving_mnist.
    """

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Moving MNIST test sequences: two digits bouncing in a 64x64 frame for 20 "
                "frames. kerastp's fixed seeded test set (standard_test_set) or the official "
                "mnist_test_seq.npy."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image_sequence": tfds.features.Video(shape=(_FRAMES, _SIZE, _SIZE, 1)),
                    "index": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            homepage="http://www.cs.toronto.edu/~nitish/unsupervised_video/",
            citation=_MOVING_MNIST_CITATION,
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        if config.source == "official":
            data = _standard.load_mnist_test_seq(dl_manager.manual_dir)
            return {"test": self._generate_examples(enumerate(data[: config.num_sequences]))}
        path = self._mnist_path(dl_manager) if config.source == "mnist" else None
        # Digits are loaded here so that a missing MNIST fails before anything is written.
        generator = _mm.MovingMNIST(_mm.source_digits(config.source, "test", path))
        return {"test": self._generate_examples(self._standard_sequences(generator))}

    def _mnist_path(self, dl_manager):
        """Resolves the MNIST digits offline: config, manual_dir, KERASTP_MNIST, Keras cache."""
        config = self.builder_config
        if config.mnist_path is not None:
            return _mnist.resolve_mnist_path(config.mnist_path, allow_download=False)
        try:
            manual = dl_manager.manual_dir  # AssertionError when absent or empty
        except (AssertionError, ValueError):
            manual = None
        if manual is not None:
            try:
                return _mnist.resolve_mnist_path(manual, allow_download=False)
            except FileNotFoundError:
                pass  # the manual directory may hold only mnist_test_seq.npy
        try:
            return _mnist.resolve_mnist_path(None, allow_download=False)
        except _mnist.MnistUnavailableError as error:
            raise _mnist.MnistUnavailableError(
                f"kerastp_moving_mnist/{config.name} reads the MNIST test digits offline and "
                f"found none (manual_dir: {manual or 'absent or empty'}). Put mnist.npz in "
                "manual_dir, or use the 'procedural' config.\n" + str(error)
            ) from error

    def _standard_sequences(self, generator):
        """Yields (index, sequence) of the seeded set, exactly as `standard_test_set` makes it."""
        config = self.builder_config
        for start, sequences in _standard.standard_chunks(
            generator, config.seed, config.num_sequences
        ):
            yield from enumerate(sequences, start)

    def _generate_examples(self, sequences):
        for index, sequence in sequences:
            yield index, {"image_sequence": sequence, "index": index}


# --------------------------------------------------------------------------------------------
# Radar
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class RadarConfig(tfds.core.BuilderConfig):
    """A `KerastpRadar` configuration.

    Attributes:
        resolution: 64 (4 km pixels) or 128 (2 km pixels).
        input_frames, output_frames, stride: the window protocol (README: 6, 12, 3).
    """

    resolution: int = 64
    input_frames: int = 6
    output_frames: int = 12
    stride: int = 3

    def __post_init__(self):
        _radar._check_resolution(self.resolution)
        for argument in ("input_frames", "output_frames", "stride"):
            check_int(argument, getattr(self, argument), minimum=1)


class KerastpRadar(tfds.core.GeneratorBasedBuilder):
    """Radar nowcasting windows of the shipped precipitation events (manual_dir).

    Configs "res64" (default) and "res128"; splits "train", "val" and "extra" of
    `kerastp.data.DEFAULT_SPLIT`; one example per window. See the module docstring.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 6-in/12-out windows, stride 3, DEFAULT_SPLIT."}
    BUILDER_CONFIGS = [
        RadarConfig(name=f"res{r}", resolution=r, description=f"{r}x{r} frames.")
        for r in _radar.RADAR_RESOLUTIONS
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "res64"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    The radar events ship with the kerastp project, in ../shared/data/radar (the directory
    holding the 64/ and 128/ folders of <event>.npz files and README.md); they are not
    downloaded. Pass that directory as the manual directory:
    download_config=tfds.download.DownloadConfig(manual_dir="../shared/data/radar"), or the
    manual_dir argument of kerastp.data.tfds_builders.load_radar (which also finds it through
    KERASTP_RADAR or ../shared/data/radar when manual_dir is None).
    """

    def _info(self):
        config = self.builder_config
        frame = (config.resolution, config.resolution, 1)
        zlib = tfds.features.Encoding.ZLIB
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Precipitation radar nowcasting windows (pysteps example data: MeteoSwiss, "
                "FMI, RMI, BoM, EUMETNET OPERA) in model scale x = log1p(R) / log1p(100), R in "
                "mm/h clipped to [0, 100]; split by whole events. Research and benchmark use "
                "only; RMI data must not be used commercially."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "past": tfds.features.Tensor(
                        shape=(config.input_frames, *frame), dtype=np.float32, encoding=zlib
                    ),
                    "future": tfds.features.Tensor(
                        shape=(config.output_frames, *frame), dtype=np.float32, encoding=zlib
                    ),
                    "event": tfds.features.Text(),
                    "issue_time": tfds.features.Text(),
                    "start": tfds.features.Scalar(dtype=np.int32),
                    "time_step_minutes": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            supervised_keys=("past", "future"),
            homepage="https://pysteps.github.io/",
            citation=_RADAR_CITATION,
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        root = _radar.resolve_radar_dir(dl_manager.manual_dir)  # tfds' error when absent
        return {
            split: self._generate_examples(root, events)
            for split, events in _radar.DEFAULT_SPLIT.items()
            if events
        }

    def _generate_examples(self, root, events):
        config = self.builder_config
        frames = config.input_frames + config.output_frames
        index = 0
        for name in events:
            event = _radar.load_event(name, root, config.resolution)
            starts = _radar.window_starts(
                event.num_frames, config.input_frames, config.output_frames, config.stride
            )
            for start in starts.tolist():
                window = event.frames[start : start + frames]
                issue = event.times[start + config.input_frames - 1]
                yield (
                    index,
                    {
                        "past": window[: config.input_frames],
                        "future": window[config.input_frames :],
                        "event": name,
                        "issue_time": str(issue),
                        "start": start,
                        "time_step_minutes": event.time_step_minutes,
                    },
                )
                index += 1


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def _download_config(manual_dir, download_mode=None):
    kwargs = {"try_download_gcs": False}
    if manual_dir is not None:
        kwargs["manual_dir"] = str(manual_dir)
    if download_mode is not None:
        kwargs["download_mode"] = tfds.download.GenerateMode(download_mode)  # accepts strings
    return tfds.download.DownloadConfig(**kwargs)


def moving_mnist_builder(source="procedural", num_sequences=_FULL_SET, seed=0, data_dir=None):
    """Returns the `KerastpMovingMnist` builder for a source, size and seed.

    The full set with seed 0 uses the registered config named after the source; other sizes
    or seeds use a custom config named `{source}_n{num_sequences}_seed{seed}` (for "official",
    `official_n{num_sequences}`), prepared in its own folder.

    Args:
        source: "procedural", "mnist" or "official".
        num_sequences: 1 to 10,000 (the first n sequences).
        seed: seed of the generated set; ignored by "official".
        data_dir: TFDS data directory; None means TFDS' default (`~/tensorflow_datasets`).

    Returns:
        A `KerastpMovingMnist` instance (not yet prepared).
    """
    if source == "official":
        seed = 0
    name = f"{source}_n{num_sequences}" + ("" if source == "official" else f"_seed{seed}")
    config = MovingMnistConfig(  # validates the arguments
        name=name,
        source=source,
        num_sequences=num_sequences,
        seed=seed,
        description=f"The first {num_sequences} sequences of the {source} set (seed {seed}).",
    )
    if num_sequences == _FULL_SET and seed == 0:
        return KerastpMovingMnist(config=source, data_dir=data_dir)
    return KerastpMovingMnist(config=config, data_dir=data_dir)


def load_moving_mnist(
    split="test",
    source="procedural",
    data_dir=None,
    manual_dir=None,
    num_sequences=_FULL_SET,
    seed=0,
    as_pairs=False,
    input_frames=10,
    output_frames=10,
    download_mode=None,
):
    """Prepares (once, offline) and loads a Moving MNIST test set through TFDS.

    Args:
        split: "test" (the builder's only split; TFDS slicing such as "test[:100]" works).
        source: "procedural" (no file), "mnist" (real MNIST test digits: manual_dir,
            `KERASTP_MNIST` or `~/.keras/datasets/mnist.npz`) or "official"
            (`mnist_test_seq.npy` in manual_dir).
        data_dir: TFDS data directory; None means `~/tensorflow_datasets`.
        manual_dir: directory holding `mnist_test_seq.npy` ("official") or MNIST ("mnist").
        num_sequences: 1 to 10,000; smaller sets are the first n sequences.
        seed: seed of the generated set; ignored by "official".
        as_pairs: return (past, future) float32 pairs in [0, 1] instead of feature dicts.
        input_frames, output_frames: the split of the 20 frames when `as_pairs` is True.
        download_mode: optional `tfds.download.GenerateMode` (or its string) for
            `download_and_prepare`, e.g. "force_redownload" to rebuild.

    Returns:
        `tf.data.Dataset` of unbatched examples in set order: dicts with "image_sequence"
        uint8 (20, 64, 64, 1) and "index" int32, or (past, future) when `as_pairs` is True.

    Raises:
        AssertionError: (from TFDS) "official" without `mnist_test_seq.npy` in manual_dir; the
            message holds the manual-download instructions.
        kerastp.data.MnistUnavailableError: "mnist" and no MNIST file found.

    Example:

    >>> ds = load_moving_mnist(num_sequences=8, data_dir="/tmp/tfds")  # doctest: +SKIP
    >>> next(iter(ds))["image_sequence"].shape  # doctest: +SKIP
    TensorShape([20, 64, 64, 1])
    """
    if as_pairs:
        check_int("input_frames", input_frames, minimum=1)
        check_int("output_frames", output_frames, minimum=1)
        if input_frames + output_frames > _FRAMES:
            raise ValueError(
                f"input_frames + output_frames must be <= {_FRAMES}; received "
                f"input_frames={input_frames}, output_frames={output_frames}."
            )
    builder = moving_mnist_builder(source, num_sequences, seed, data_dir)
    builder.download_and_prepare(download_config=_download_config(manual_dir, download_mode))
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    if not as_pairs:
        return dataset

    import tensorflow as tf

    def to_pair(example):
        video = tf.cast(example["image_sequence"], tf.float32) / 255.0
        return video[:input_frames], video[input_frames : input_frames + output_frames]

    return dataset.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)


def radar_builder(resolution=64, data_dir=None):
    """Returns the `KerastpRadar` builder of one resolution (64 or 128), not yet prepared."""
    resolution = _radar._check_resolution(resolution)
    return KerastpRadar(config=f"res{resolution}", data_dir=data_dir)


def load_radar(
    split="train",
    resolution=64,
    manual_dir=None,
    data_dir=None,
    as_supervised=False,
    download_mode=None,
):
    """Prepares (once, offline) and loads radar nowcasting windows through TFDS.

    Args:
        split: "train", "val" ("validation" is accepted) or "extra" (TFDS slicing works).
        resolution: 64 or 128.
        manual_dir: the radar data directory (holding 64/ and 128/); None means
            `kerastp.data.resolve_radar_dir()` (`KERASTP_RADAR`, then ../shared/data/radar),
            and TFDS' default manual directory when that finds nothing.
        data_dir: TFDS data directory; None means `~/tensorflow_datasets`.
        as_supervised: return (past, future) pairs instead of feature dicts.
        download_mode: optional `tfds.download.GenerateMode` (or its string).

    Returns:
        `tf.data.Dataset` of unbatched windows in the order of `radar_arrays(split)`: dicts
        (see the module docstring) or (past, future) float32 (6, H, W, 1), (12, H, W, 1).

    Raises:
        AssertionError: (from TFDS) no radar data in the manual directory; the message holds
            the manual-download instructions.

    Example:

    >>> ds = load_radar("val", data_dir="/tmp/tfds", as_supervised=True)  # doctest: +SKIP
    >>> [tuple(s.shape) for s in ds.element_spec]  # doctest: +SKIP
    [(6, 64, 64, 1), (12, 64, 64, 1)]
    """
    builder = radar_builder(resolution, data_dir)
    if manual_dir is None:
        try:
            manual_dir = _radar.resolve_radar_dir()
        except FileNotFoundError:
            manual_dir = None  # fine once prepared; otherwise TFDS explains what to do
    builder.download_and_prepare(download_config=_download_config(manual_dir, download_mode))
    split = "val" if split == "validation" else split
    return builder.as_dataset(split=split, shuffle_files=False, as_supervised=as_supervised)
