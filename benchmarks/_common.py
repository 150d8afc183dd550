"""What the benchmark scripts share: the machine description, budgets, result writing, plots.

Every result file records the machine it was measured on (`machine()`), so a table read
later, or next to one from another machine, says where its numbers come from.
"""

import hashlib
import os
import platform
import subprocess
from pathlib import Path

from kerastp.saving import write_json

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: The budgets of `benchmarks/run.py --budget`. `smoke` exercises every code path in a few
#: minutes (CI); `cpu` is what a 2-core CPU measures in about an hour; `gpu` is the full run.
BUDGETS = {
    "smoke": {
        "fidelity_presets": "tiny",
        "throughput_presets": ["stlight_tiny", "convlstm_tiny"],
        "throughput_steps": 2,
        "throughput_max_seconds": 1,
        "throughput_eager_max_gmacs": None,
        "throughput_xla_max_gmacs": None,
        "quality_presets": "tiny",
        "quality_steps": 3,
        "quality_eval_sequences": 16,
        "radar_presets": "tiny",
        "radar_steps": 2,
    },
    "cpu": {
        "fidelity_presets": "all",
        "throughput_presets": "all",
        "throughput_steps": 8,
        "throughput_max_seconds": 30,
        "throughput_eager_max_gmacs": 1.0,
        "throughput_xla_max_gmacs": 1.0,
        "quality_presets": "tiny",
        "quality_steps": 600,
        "quality_eval_sequences": 1000,
        "radar_presets": "tiny",
        "radar_steps": 300,
    },
    "gpu": {
        "fidelity_presets": "all",
        "throughput_presets": "all",
        "throughput_steps": 30,
        "throughput_max_seconds": 60,
        "throughput_eager_max_gmacs": None,
        "throughput_xla_max_gmacs": None,
        "quality_presets": "paper",
        "quality_steps": 20000,
        "quality_eval_sequences": 10000,
        "radar_presets": "tiny",
        "radar_steps": 3000,
    },
}


def presets_for(selection):
    """Preset names for a selection: "tiny", "paper" (one per model), "all", or preset names.

    `selection` is a string or a list (what `--presets` parses to); a one-item list holding a
    keyword expands it. Unknown names raise the registry's error listing the valid ones.
    """
    from kerastp import registry

    if isinstance(selection, list | tuple):
        if len(selection) == 1 and selection[0] in ("tiny", "paper", "all"):
            return presets_for(selection[0])
        for name in selection:
            registry.get_preset(name)
        return list(selection)
    if selection == "tiny":
        return registry.list_presets(tiny=True)
    if selection == "all":
        return registry.list_presets()
    if selection == "paper":
        # One trainable-size paper preset per model; STLight's smallest paper size.
        names = []
        for model in registry.MODELS:
            paper = registry.list_presets(tiny=False, model=model)
            if paper:
                names.append(paper[0])
        return names
    raise ValueError(f"preset selection must be tiny, paper, all or a list, got {selection!r}")


#: OpenSTL stops scheduled sampling at 50k of its 125k Moving MNIST steps.
SAMPLING_FRACTION = 0.4


def budget_overrides(preset, steps):
    """Model overrides that fit a preset's step-dependent schedules into `steps`.

    The recurrent baselines' scheduled sampling ends at 40% of the run, as in OpenSTL.
    """
    from kerastp import registry

    config = registry.get_preset(preset)["config"]
    if "sampling_stop_iter" not in config or config.get("scheduled_sampling") is False:
        return {}
    stop = max(1, round(SAMPLING_FRACTION * steps))
    return {"sampling_stop_iter": stop, "sampling_changing_rate": 1.0 / stop}


def cpu_name():
    """The CPU's model name (/proc/cpuinfo), else what `platform` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_commit_holding(path, sha256):
    """The newest git commit whose version of `path` has this SHA-256, else None.

    A continued model's card names the file it started from; that file is replaced when the
    continuation ships, and this commit is where the earlier one can still be read
    (`git show COMMIT:PATH`). None outside a git checkout or when no commit holds it.
    """
    path = Path(path).resolve()

    def git(*args, cwd=None):
        return subprocess.run(["git", *args], cwd=cwd or top, capture_output=True,
                              check=True).stdout

    try:
        top = Path(git("rev-parse", "--show-toplevel", cwd=path.parent).decode().strip())
        relative = path.relative_to(top).as_posix()
        commits = git("log", "--format=%H", "--", relative).decode().split()
        for commit in commits:
            if hashlib.sha256(git("show", f"{commit}:{relative}")).hexdigest() == sha256:
                return commit
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None
    return None


def machine():
    """CPU model, cores, GPUs, Python, platform and package versions of this machine."""
    import keras
    import tensorflow as tf

    cpu = cpu_name()
    from importlib.metadata import PackageNotFoundError, version

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    for name in ("ai-edge-litert", "onnxruntime", "tf2onnx", "pysteps", "numpy"):
        try:
            versions[name.replace("-", "_")] = version(name)
        except PackageNotFoundError:
            versions[name.replace("-", "_")] = None
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(details.get("device_name", device.name))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpus": gpus,
        "gpu": bool(gpus),
        "python": platform.python_version(),
        "system": platform.platform(),
        "versions": versions,
    }


def machine_line(info):
    """One line naming the machine, for the head of a markdown table."""
    where = f"{info['cpu']}, {info['cores']} cores"
    if info["gpus"]:
        where = f"{', '.join(info['gpus'])} + {where}"
    versions = info["versions"]
    return f"{where}; TensorFlow {versions['tensorflow']}, Keras {versions['keras']}"


#: The package versions a row's `measured_on` keeps, with their names in a table's legend.
_VERSIONS = {
    "tensorflow": "TensorFlow",
    "keras": "Keras",
    "ai_edge_litert": "LiteRT",
    "onnxruntime": "ONNX Runtime",
}


def measured_on(info, date=None):
    """Where and when a row was measured: `info` is `machine()`'s record, `date` an ISO day
    (today when None). Rows kept by `--append` carry theirs, so a table mixing runs names
    each row's machine (`machines_legend`)."""
    import time

    versions = info.get("versions", {})
    return {
        "cpu": info["cpu"],
        "cores": info["cores"],
        "gpus": list(info.get("gpus", [])),
        "date": date or time.strftime("%Y-%m-%d"),
        "versions": {k: versions.get(k) for k in _VERSIONS},
    }


def _payload_measured_on(payload):
    """`measured_on` of an earlier payload's machine, for its rows that carry none."""
    return measured_on(payload["machine"], payload.get("date") or "date not recorded")


def append_rows(previous, kept, rows, info):
    """`kept` rows of an earlier payload `previous` followed by this run's `rows`, each row
    with its `measured_on`. A kept row recorded before rows carried one takes the earlier
    payload's machine (and its `date`, if it recorded one)."""
    if kept:
        earlier = _payload_measured_on(previous)
        kept = [{"measured_on": earlier, **row} for row in kept]
    now = measured_on(info)
    return list(kept) + [{**row, "measured_on": now} for row in rows]


def _where(entry):
    where = f"{entry['cpu']}, {entry['cores']} cores"
    if entry["gpus"]:
        where = f"{', '.join(entry['gpus'])} + {where}"
    versions = ", ".join(
        f"{label} {entry['versions'][key]}"
        for key, label in _VERSIONS.items()
        if entry["versions"].get(key)
    )
    return f"{where}, {entry['date']}" + (f" ({versions})" if versions else "")


def machines_legend(rows, payload=None):
    """(legend, tag) for a table's rows by their `measured_on` (rows without one: that of
    `payload`'s machine and date): one machine gives its line and empty tags; several give
    "rows measured on [A] machine, date; [B] ..." and `tag(row)` = " [A]" etc."""
    import json

    fallback = None if payload is None else _payload_measured_on(payload)

    def where(row):
        return row.get("measured_on") or fallback

    def key(row):
        return json.dumps(where(row), sort_keys=True)

    entries = {}
    for row in rows:
        entries.setdefault(key(row), where(row))
    keys = list(entries)
    if len(keys) == 1:
        return _where(entries[keys[0]]), lambda row: ""
    letters = {k: chr(ord("A") + i) for i, k in enumerate(keys)}

    def tag(row):
        return f" [{letters[key(row)]}]"

    legend = "; ".join(f"[{letters[k]}] {_where(entries[k])}" for k in keys)
    return f"rows measured on {legend}", tag


def write_results(out_dir, name, payload, markdown):
    """Writes `<out_dir>/<name>.json` and `<name>.md` (each atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / f"{name}.json", payload)
    target = out_dir / f"{name}.md"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(markdown)
    os.replace(tmp, target)
    return out_dir / f"{name}.json", target


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or a clear error naming the extra."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "The benchmark plots need matplotlib: pip install 'kerastp[bench]'"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path):
    """Saves a matplotlib figure as PNG atomically and closes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    pyplot().close(figure)
    return path


def lead_time_plot(curves, path, title, ylabel, xlabel="lead time (frames)", lead_minutes=None):
    """Line plot of score vs lead time; `curves` maps a label to a per-lead-time list."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for label, values in curves.items():
        steps = list(range(1, len(values) + 1))
        x = [s * lead_minutes for s in steps] if lead_minutes else steps
        style = "--" if label in ("persistence", "pysteps LK", "pysteps S-PROG") else "-"
        axis.plot(x, values, style, marker="o", markersize=3, label=label)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)
