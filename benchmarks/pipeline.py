"""Input pipeline throughput against what `stlight_tiny` consumes in training, per data source.

For each source the script times how fast its pipeline delivers training batches
(sequences/s, after one warm-up batch, iterating like `fit` does: a `tf.data` pipeline, or the
`WindowsPyDataset` that runs of radar and the user's arrays train from, read batch by batch
and pass after pass) and how fast `stlight_tiny`
trains on batches already in memory (optimizer steps on a cached batch, after the traced first
step), both at batch 16 with the source's frame protocol. The ratio is the headroom: above 1
the model, not the data, sets the pace.

    python benchmarks/pipeline.py [--seconds 20]

Writes `benchmarks/results/pipeline.json` and `.md`.
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kerastp  # noqa: E402, F401, I001  (before Keras: kerastp's backend and oneDNN defaults)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerastp import registry  # noqa: E402
from kerastp.data import moving_mnist, radar  # noqa: E402
from kerastp.data.sources.radar import RadarSource  # noqa: E402
from kerastp.saving import write_json  # noqa: E402

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
BATCH = 16


def sources():
    """name -> (dataset factory, model overrides, description)."""
    frames = {"input_frames": 10, "output_frames": 10, "image_size": 64}
    mnist = str(SHARED_MNIST / "mnist.npz") if (SHARED_MNIST / "mnist.npz").is_file() else None

    def moving(source, path=None):
        return lambda: moving_mnist.moving_mnist_dataset(
            source, "train", batch_size=BATCH, num_sequences=10_000, seed=0, path=path, **frames
        ).repeat()

    def windows(**settings):
        def make():
            model = registry.build_model("stlight_tiny", input_frames=6, output_frames=12)
            stream, _ = RadarSource(**settings).training_stream(model, BATCH, None)

            def batches():
                while True:
                    for index in range(len(stream)):
                        yield stream[index]
                    stream.on_epoch_end()

            return batches()

        return make

    table = {
        "moving_mnist_procedural": (moving("procedural"), {}, "Moving MNIST, procedural digits"),
        "radar_64_training": (
            windows(stride=1, augment="dihedral"),
            {"input_frames": 6, "output_frames": 12},
            "radar 64x64, the training runs' WindowsPyDataset (stride 1, dihedral)",
        ),
        "radar_64": (
            lambda: radar.radar_dataset("train", batch_size=BATCH, resolution=64).repeat(),
            {"input_frames": 6, "output_frames": 12},
            "radar events 64x64, 6 in / 12 out, cached windows (tf.data `radar_dataset`)",
        ),
    }
    if mnist:
        table["moving_mnist_mnist"] = (moving("mnist", mnist), {}, "Moving MNIST, MNIST digits")
    return table


def pipeline_rate(factory, seconds):
    iterator = iter(factory())
    next(iterator)  # warm-up: builds the pipeline, fills caches and prefetch buffers
    sequences, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        past, _ = next(iterator)
        sequences += int(past.shape[0])
    return sequences / (time.perf_counter() - start)


def training_rate(factory, overrides, seconds):
    keras.utils.set_random_seed(0)
    model = registry.build_model("stlight_tiny", **overrides)
    model.compile()
    batch = next(iter(factory()))
    data = tf.data.Dataset.from_tensors(batch).repeat()
    steps = 0

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, index, logs=None):
            nonlocal steps, start
            if index == 0:
                start = time.perf_counter()  # the first step traces the graph
                return
            steps += 1
            if time.perf_counter() - start > seconds:
                self.model.stop_training = True

    start = time.perf_counter()
    model.fit(data, steps_per_epoch=100_000, epochs=1, verbose=0, callbacks=[Clock()])
    return steps * BATCH / (time.perf_counter() - start)


def markdown(payload):
    lines = [
        f"Input pipeline vs `stlight_tiny` training at batch {BATCH} on {payload['machine']} "
        f"({payload['cores']} cores), {payload['seconds_per_measure']:.0f} s per measurement.",
        "",
        "| source | pipeline (sequences/s) | stlight_tiny training (sequences/s) | headroom |",
        "|---|---|---|---|",
    ]
    for r in payload["results"]:
        lines.append(
            f"| {r['description']} | {r['pipeline_sequences_per_second']:,.0f} | "
            f"{r['training_sequences_per_second']:,.0f} | {r['headroom']:.0f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sources", nargs="+", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pipeline"))
    args = parser.parse_args(argv)
    table = sources()
    names = args.sources or list(table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        parser.error(f"unknown sources {unknown}; valid: {sorted(table)}")
    results = []
    for name in names:
        factory, overrides, description = table[name]
        delivered = pipeline_rate(factory, args.seconds)
        consumed = training_rate(factory, overrides, args.seconds)
        results.append(
            {
                "source": name,
                "description": description,
                "pipeline_sequences_per_second": delivered,
                "training_sequences_per_second": consumed,
                "headroom": delivered / consumed,
            }
        )
        print(f"{name}: pipeline {delivered:,.0f}/s, training {consumed:,.0f}/s", flush=True)
    payload = {
        "machine": f"{platform.machine()}, {platform.python_version()}, TF {tf.__version__}",
        "cores": os.cpu_count(),
        "batch_size": BATCH,
        "seconds_per_measure": args.seconds,
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), payload)
    table_md = markdown(payload)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(table_md)
    os.replace(tmp, out.with_suffix(".md"))
    print(table_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
