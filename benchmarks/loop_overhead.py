"""What the training loop of `kerastp train` / `kerastp demo` costs on top of plain `model.fit`.

In ONE process, for each preset at its training batch size (16 for the tiny presets, the
demo's), the script alternates two ways of training the same model on the same data:

- `plain`: `registry.build_model` + the compile `train` does + `model.fit` on the very
  `tf.data` stream `train` uses (`source.training_stream`), no callbacks, no validation;
- `train`: `kerastp.training.train` with everything on: validation after each epoch
  (`--val-sequences`, the demo's 256), `best.keras` / `last.keras` checkpoints, the
  `state.npz` backup, history.csv and the epoch timer.

Each run trains `--epochs` epochs of `--steps` steps; the first epoch (tracing, compiling)
is not timed. A timing callback with epoch hooks only (it keeps Keras' asynchronous batch
callbacks as they are) records each later epoch's wall time, from one epoch end to the next,
the time spent in validation (`on_test_begin` .. `on_test_end`) and, with `getrusage`, the
minor page faults and user / system CPU time of the process. `--repeats` rounds run the
variants in alternating order; the table gives medians. The ratio is plain steps/s over
`train` steps/s, with validation and without its time ("loop only").

Then, for page faults and system time of whole processes, `/usr/bin/time -v` (or
`getrusage` of the children where it is missing) measures a `kerastp train` command and a
plain-fit script (this file with `--child-plain-fit`) of the same preset, steps and epochs.

    python benchmarks/loop_overhead.py --repeats 3              # stlight_tiny, ~7 min on 2 cores
    python benchmarks/loop_overhead.py --presets stlight_tiny convlstm_tiny
    python benchmarks/loop_overhead.py --before old/loop_overhead.json   # show both

What it found (kerastp issue 15): the Moving MNIST stream was a `Dataset.from_generator`,
and building one makes TensorFlow pin glibc's mmap threshold at 128 KiB for the whole
process (`ApplyPython311MemoryPatch`, a Python 3.11 workaround, seen with gdb on `mallopt`).
From then on every buffer above 128 KiB of every training step (tensors, oneDNN scratch
memory) was mapped afresh and unmapped when freed: about 3,300 minor page faults and 16 ms of
system time per stlight_tiny step here, in plain `fit` and in `train` alike (and far more
system time on machines where faults are dear). The stream now calls Python once per chunk
through `tf.numpy_function`, with the same data bit for bit.

Writes `loop_overhead.json` and `loop_overhead.md` into `--out-dir` (default
`benchmarks/results/cpu`).
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import kerastp  # noqa: E402, F401, I001  (before Keras: kerastp's backend and oneDNN defaults)
import keras  # noqa: E402
from _common import RESULTS, machine, machine_line, write_results  # noqa: E402

from kerastp import registry, training  # noqa: E402
from kerastp.data.sources import get_source  # noqa: E402

VARIANTS = ("plain", "train")


def _usage():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_utime, usage.ru_stime


class EpochClock(keras.callbacks.Callback):
    """Per epoch: wall time since the previous epoch end, validation time, faults, CPU time.

    Epoch hooks only: a batch hook would switch Keras' batch callbacks to synchronous.
    """

    def on_train_begin(self, logs=None):
        self.epochs = []
        self._mark = (time.perf_counter(), *_usage())
        self._validation = 0.0

    def on_test_begin(self, logs=None):
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self._validation += time.perf_counter() - self._test_start
        self._test_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = (time.perf_counter(), *_usage())
        seconds, faults, user, system = (b - a for a, b in zip(self._mark, now, strict=True))
        callbacks = None
        if self._validation:
            # kerastp's epoch-end callbacks run between validation and this (last) callback.
            callbacks = now[0] - self._test_end
        self.epochs.append(
            {
                "epoch": epoch,
                "seconds": seconds,
                "validation_seconds": self._validation,
                "epoch_end_callbacks_seconds": callbacks,
                "minor_faults": faults,
                "user_seconds": user,
                "system_seconds": system,
            }
        )
        self._mark = now
        self._validation = 0.0


def _summarise(clock, steps):
    """Totals over the timed epochs (all but the first)."""
    timed = clock.epochs[1:]
    n = steps * len(timed)
    seconds = sum(e["seconds"] for e in timed)
    validation = sum(e["validation_seconds"] for e in timed)
    return {
        "timed_steps": n,
        "steps_per_second": n / seconds,
        "step_ms": 1000 * seconds / n,
        "loop_steps_per_second": n / (seconds - validation),
        "validation_seconds_per_epoch": validation / len(timed),
        "epoch_end_callbacks_seconds_per_epoch": (
            None
            if timed[0]["epoch_end_callbacks_seconds"] is None
            else sum(e["epoch_end_callbacks_seconds"] for e in timed) / len(timed)
        ),
        "minor_faults_per_step": sum(e["minor_faults"] for e in timed) / n,
        "user_ms_per_step": 1000 * sum(e["user_seconds"] for e in timed) / n,
        "system_ms_per_step": 1000 * sum(e["system_seconds"] for e in timed) / n,
        "epochs": clock.epochs,
    }


def plain_fit(preset, batch_size, steps, epochs, seed=0, callbacks=()):
    """`model.fit` of a freshly built preset on `train`'s data stream; no validation."""
    keras.utils.set_random_seed(seed)
    source = get_source("procedural", seed=seed)
    model = registry.build_model(preset)
    config = registry.get_preset(preset)["training"]
    model.compile(learning_rate=config["max_learning_rate"], total_steps=epochs * steps)
    data, _ = source.training_stream(model, batch_size, steps, 0, epochs)
    model.fit(
        data,
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=list(callbacks),
        shuffle=False,
        verbose=0,
    )
    return model


def train_fit(preset, batch_size, steps, epochs, val_sequences, run_dir, seed=0, callbacks=()):
    """`kerastp.training.train` with validation, checkpoints, backups and history."""
    shutil.rmtree(run_dir, ignore_errors=True)
    return training.train(
        preset=preset,
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=batch_size,
        val_sequences=val_sequences,
        eval_sequences=0,
        seed=seed,
        verbose=0,
        run_dir=str(run_dir),
        callbacks=list(callbacks),
    )


def measure(preset, variant, args, scratch):
    clock = EpochClock()
    batch_size = args.batch_size or registry.get_preset(preset)["training"]["batch_size"]
    if variant == "plain":
        plain_fit(preset, batch_size, args.steps, args.epochs, callbacks=[clock])
    else:
        run_dir = Path(scratch) / f"{preset}_run"
        train_fit(
            preset, batch_size, args.steps, args.epochs, args.val_sequences, run_dir,
            callbacks=[clock],
        )  # fmt: skip
    keras.backend.clear_session()
    return {"preset": preset, "variant": variant, "batch_size": batch_size,
            **_summarise(clock, args.steps)}  # fmt: skip


_TIME_FIELDS = {
    "User time (seconds)": "user_seconds",
    "System time (seconds)": "system_seconds",
    "Elapsed (wall clock) time (h:mm:ss or m:ss)": "wall_seconds",
    "Maximum resident set size (kbytes)": "max_rss_kbytes",
    "Minor (reclaiming a frame) page faults": "minor_faults",
    "Major (requiring I/O) page faults": "major_faults",
    "Voluntary context switches": "voluntary_context_switches",
    "Involuntary context switches": "involuntary_context_switches",
}


def _parse_time_v(text):
    row = {}
    for line in text.splitlines():
        key, _, value = line.strip().rpartition(": ")
        if key in _TIME_FIELDS:
            if key.startswith("Elapsed"):
                seconds = 0.0
                for part in value.split(":"):
                    seconds = 60 * seconds + float(part)
                row[_TIME_FIELDS[key]] = seconds
            else:
                row[_TIME_FIELDS[key]] = float(value) if "." in value else int(value)
    return row


def run_measured(command, cwd):
    """Runs `command` under `/usr/bin/time -v` (or getrusage of children); its figures."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if Path("/usr/bin/time").is_file():
        report = Path(cwd) / "time.txt"
        subprocess.run(
            ["/usr/bin/time", "-v", "-o", str(report), *command],
            cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        row = _parse_time_v(report.read_text())
        row["tool"] = "/usr/bin/time -v"
        return row
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "user_seconds": after.ru_utime - before.ru_utime,
        "system_seconds": after.ru_stime - before.ru_stime,
        "wall_seconds": time.perf_counter() - start,
        "max_rss_kbytes": after.ru_maxrss,
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "major_faults": after.ru_majflt - before.ru_majflt,
        "tool": "getrusage(RUSAGE_CHILDREN)",
    }


def processes(preset, args, scratch):
    """`kerastp train` against the plain-fit script, each in its own process."""
    steps, epochs = args.process_steps, args.process_epochs
    train_command = [sys.executable, "-m", "kerastp", "train", "--preset", preset,
               "--epochs", str(epochs), "--steps-per-epoch", str(steps),
               "--eval-sequences", "0", "--verbose", "0", "--run-dir", "run"]  # fmt: skip
    plain = [sys.executable, str(Path(__file__).resolve()), "--child-plain-fit", preset,
             "--epochs", str(epochs), "--steps", str(steps)]  # fmt: skip
    rows = {}
    for name, command in (("plain_fit_script", plain), ("kerastp_train", train_command)):
        cwd = Path(scratch) / f"process_{name}"
        cwd.mkdir(parents=True, exist_ok=True)
        row = run_measured(command, cwd)
        row["command"] = " ".join(Path(c).name if i < 2 else c for i, c in enumerate(command))
        row["optimizer_steps"] = steps * epochs
        row["minor_faults_per_step"] = row["minor_faults"] / (steps * epochs)
        rows[name] = row
        print(
            f"  {name}: wall {row['wall_seconds']:.1f} s, system {row['system_seconds']:.1f} s, "
            f"{row['minor_faults']:,} minor faults",
            flush=True,
        )
    return rows


def _git_revision():
    """The checkout's commit, with "+changes" when the tree differs from it (or None)."""
    root = HERE.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
    except OSError:
        return None
    return f"{commit}+changes" if commit and dirty else commit or None


def _median(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarise(payload):
    summary = {}
    for preset in payload["presets"]:
        rows = [r for r in payload["results"] if r["preset"] == preset]
        medians = {}
        for variant in VARIANTS:
            mine = [r for r in rows if r["variant"] == variant]
            medians[variant] = {
                key: _median(mine, key)
                for key in (
                    "steps_per_second",
                    "loop_steps_per_second",
                    "step_ms",
                    "validation_seconds_per_epoch",
                    "epoch_end_callbacks_seconds_per_epoch",
                    "minor_faults_per_step",
                    "user_ms_per_step",
                    "system_ms_per_step",
                )
            }
        plain = medians["plain"]["steps_per_second"]
        summary[preset] = {
            "medians": medians,
            # How much longer a step takes in kerastp's loop than in plain fit.
            "cost_ratio": plain / medians["train"]["steps_per_second"],
            "cost_ratio_without_validation": plain / medians["train"]["loop_steps_per_second"],
        }
    return summary


def _fmt(value, spec):
    return "–" if value is None else format(value, spec)


def markdown(payload):
    lines = [
        f"Training-loop overhead ({machine_line(payload['machine'])}): "
        f"{payload['epochs']} epochs x {payload['steps']} steps per run, first epoch not timed, "
        f"{payload['repeats']} alternating rounds in one process, medians. `plain` = "
        "`model.fit` on the same `tf.data` stream, no callbacks or validation; `train` = "
        "`kerastp.training.train` with validation "
        f"({payload['val_sequences']} sequences), best/last checkpoints, backup, history.",
        "",
        "| preset | variant | steps/s | ms/step | steps/s without validation | "
        "validation s/epoch | epoch-end callbacks s/epoch | minor faults/step | "
        "user ms/step | system ms/step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    before = (payload.get("before") or {}).get("summary") or {}
    for preset, entry in payload["summary"].items():
        rows = [(variant, m) for variant, m in entry["medians"].items()]
        if preset in before:
            rows += [(f"{v} (before)", m) for v, m in before[preset]["medians"].items()]
        for variant, m in rows:
            lines.append(
                f"| {preset} | {variant} | {_fmt(m['steps_per_second'], '.2f')} | "
                f"{_fmt(m['step_ms'], '.0f')} | {_fmt(m['loop_steps_per_second'], '.2f')} | "
                f"{_fmt(m['validation_seconds_per_epoch'], '.2f')} | "
                f"{_fmt(m['epoch_end_callbacks_seconds_per_epoch'], '.2f')} | "
                f"{_fmt(m['minor_faults_per_step'], ',.0f')} | "
                f"{_fmt(m['user_ms_per_step'], '.0f')} | {_fmt(m['system_ms_per_step'], '.1f')} |"
            )
    lines.append("")
    for preset, entry in payload["summary"].items():
        lines.append(
            f"- {preset}: a `train` step costs **{entry['cost_ratio']:.3f}x** a plain `fit` step "
            f"({entry['cost_ratio_without_validation']:.3f}x without the validation time); "
            f"target <= {payload['target_ratio']}."
        )
        if preset in before:
            lines.append(
                f"- {preset} before ({payload['before'].get('git') or 'an earlier checkout'}): "
                f"{before[preset]['cost_ratio']:.3f}x "
                f"({before[preset]['cost_ratio_without_validation']:.3f}x without validation)."
            )
    if payload.get("processes"):
        lines += [
            "",
            "Whole processes (`/usr/bin/time -v`), "
            f"{payload['process_epochs']} epochs x {payload['process_steps']} steps, "
            "import, tracing and saving included:",
            "",
            "| preset | process | wall s | user s | system s | minor faults | "
            "faults/step | max RSS MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        before_processes = (payload.get("before") or {}).get("processes") or {}
        for preset, rows in payload["processes"].items():
            listed = [(row, "") for row in rows.values()]
            listed += [(row, " (before)") for row in before_processes.get(preset, {}).values()]
            for row, label in listed:
                lines.append(
                    f"| {preset} | `{row['command']}`{label} | {row['wall_seconds']:.1f} | "
                    f"{row['user_seconds']:.1f} | {row['system_seconds']:.1f} | "
                    f"{row['minor_faults']:,} | {row['minor_faults_per_step']:,.0f} | "
                    f"{row['max_rss_kbytes'] / 1024:.0f} |"
                )
    return "\n".join(lines) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["stlight_tiny"])
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--steps", type=int, default=100, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is not timed")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds")
    parser.add_argument("--val-sequences", type=int, default=256)
    parser.add_argument("--process-steps", type=int, default=100)
    parser.add_argument("--process-epochs", type=int, default=3)
    parser.add_argument(
        "--no-processes", action="store_true", help="skip the /usr/bin/time process runs"
    )
    parser.add_argument("--target-ratio", type=float, default=1.15)
    parser.add_argument(
        "--before",
        default=None,
        metavar="JSON",
        help="a loop_overhead.json measured before a change: its figures join the tables",
    )
    parser.add_argument("--out-dir", default=str(RESULTS / "cpu"))
    parser.add_argument("--child-plain-fit", metavar="PRESET", help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.child_plain_fit:
        preset = args.child_plain_fit
        batch = args.batch_size or registry.get_preset(preset)["training"]["batch_size"]
        plain_fit(preset, batch, args.steps, args.epochs)
        return 0
    for name in args.presets:
        registry.get_preset(name)
    for name in ("steps", "repeats", "val_sequences", "process_steps", "process_epochs"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.epochs < 2:
        raise SystemExit("--epochs must be >= 2 (the first epoch is not timed)")
    payload = {
        "benchmark": "loop_overhead",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "presets": args.presets,
        "steps": args.steps,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "val_sequences": args.val_sequences,
        "target_ratio": args.target_ratio,
        "process_steps": args.process_steps,
        "process_epochs": args.process_epochs,
        "git": _git_revision(),
        "results": [],
        "processes": {},
    }
    with tempfile.TemporaryDirectory(prefix="kerastp_loop_") as scratch:
        for preset in args.presets:
            for round_ in range(args.repeats):
                order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    row = measure(preset, variant, args, scratch)
                    row["round"] = round_
                    payload["results"].append(row)
                    print(
                        f"{preset} {variant} round {round_}: {row['steps_per_second']:.2f} "
                        f"steps/s, {row['minor_faults_per_step']:,.0f} faults/step",
                        flush=True,
                    )
            if not args.no_processes:
                payload["processes"][preset] = processes(preset, args, scratch)
    payload["summary"] = summarise(payload)
    if args.before:
        before = json.loads(Path(args.before).read_text())
        payload["before"] = {
            key: before.get(key)
            for key in ("date", "git", "summary", "processes", "steps", "epochs", "repeats")
        }
    table = markdown(payload)
    write_results(args.out_dir, "loop_overhead", payload, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
