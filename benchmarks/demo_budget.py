"""Does `kerastp demo --minutes M` end within M minutes? Planned against spent, per stage.

The demo sizes its training to a step rate it measures first (`kerastp.demo`), so it ends on
time when the machine stays as fast as it was measured. This script runs the real command,
each in its own process and scratch directory, under three conditions of a 2-core machine:

- `quiet`: nothing else running;
- `busy`: one busy-looping process (a core's worth of load) from before the demo starts, so
  the calibration sees the load and the plan accounts for it;
- `late`: the same load, started only once the demo has printed its plan (after the
  calibration), which the plan cannot see: the way a shared CI machine's other job breaks a
  plan (kerastp's slow test once measured 3.4 steps/s, then fitted 2.3x slower). A plan of
  several epochs then stops early at an epoch end (`kerastp.demo.DeadlineStop`); a
  one-epoch plan cannot.

For each run it reads `demo.json` (the demo's own record: measured rate, the time spent
before training, the reserve, the planned fit, each stage's seconds and `within_budget`) and
times the whole process (interpreter start and imports included; the budget counts from when
the CLI starts loading the demo). `fit / planned` compares the fit with its plan (the plan's
fit excludes the fit's trace, which the reserve holds, so a quiet machine reads a little
above 1).

    python benchmarks/demo_budget.py                               # 1 min x 3 conditions, ~5 min
    python benchmarks/demo_budget.py --minutes 3.5 --conditions quiet --append

Writes `demo_budget.json` and `demo_budget.md` into `--out-dir` (default
`benchmarks/results/cpu`). Run it on an otherwise idle machine.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import RESULTS, append_rows, machine, machines_legend, write_results  # noqa: E402

CONDITIONS = ("quiet", "busy", "late")
#: What the demo prints once it has measured the step rate and sized the training.
_PLAN_LINE = "Measured "
_SPIN = "while True:\n    pass\n"


def _load():
    """One busy-looping Python process (a core's worth of load)."""
    return subprocess.Popen([sys.executable, "-c", _SPIN])


def run_one(minutes, condition, scratch, preset="stlight_tiny", eval_sequences=500):
    """Runs `kerastp demo --minutes minutes` under `condition`; its row."""
    if condition not in CONDITIONS:
        raise ValueError(f"`condition` must be one of {CONDITIONS}, got {condition!r}")
    cwd = Path(scratch) / f"{condition}_{minutes:g}"
    cwd.mkdir(parents=True)
    command = [sys.executable, "-m", "kerastp", "demo", "--minutes", f"{minutes:g}",
               "--preset", preset, "--eval-sequences", str(eval_sequences),
               "--run-dir", "run", "--verbose", "2"]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    load = _load() if condition == "busy" else None
    load_started = None
    start = time.perf_counter()
    try:
        with subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as demo:
            lines = []
            for line in demo.stdout:
                lines.append(line)
                if condition == "late" and load is None and line.startswith(_PLAN_LINE):
                    load = _load()
                    load_started = time.perf_counter() - start
            code = demo.wait()
        process_s = time.perf_counter() - start
    finally:
        if load is not None:
            load.kill()
            load.wait()
    (cwd / "output.txt").write_text("".join(lines))
    if code != 0:
        raise RuntimeError(f"{' '.join(command[1:])} exited {code}:\n{''.join(lines[-20:])}")
    record = json.loads((cwd / "run" / "demo.json").read_text())
    budget, timings = record["budget"], record["timings"]
    return {
        "minutes": minutes,
        "condition": condition,
        "preset": preset,
        "eval_sequences": eval_sequences,
        "load_started_s": load_started,
        "steps_per_second": budget["measured"]["steps_per_second"],
        "first_step_s": budget["measured"]["first_step_seconds"],
        "epochs": record["epochs"],
        "steps_per_epoch": record["steps_per_epoch"],
        "epochs_trained": record["epochs_trained"],
        "schedule_complete": record["schedule_complete"],
        "epoch_ends": budget.get("epoch_ends"),
        "elapsed_before_training_s": budget["elapsed_before_training_s"],
        "reserve_s": budget["reserve_s"],
        "planned_fit_s": budget["planned_fit_s"],
        "fits": budget["fits"],
        "timings": timings,
        "fit_over_planned": timings["fit_s"] / budget["planned_fit_s"],
        "total_over_budget": timings["total_s"] / budget["budget_s"],
        "within_budget": budget["within_budget"],
        "process_s": process_s,
        "test_mse": record["metrics"]["mse"],
        "test_ssim": record["metrics"]["ssim"],
    }


def _trained(row):
    """Epochs trained: "10", or "**7** of 10" when the demo stopped early to end on time."""
    trained = row.get("epochs_trained", row["epochs"])
    return f"{trained}" if trained == row["epochs"] else f"**{trained}** of {row['epochs']}"


def markdown(payload):
    rows = payload["results"]
    legend, tag = machines_legend(rows, payload)
    lines = [
        f"`kerastp demo --minutes M` against its budget ({legend}). Conditions: `quiet` nothing "
        "else running; `busy` one busy-looping process from the start (the calibration sees "
        "it); `late` the same process started after the demo printed its plan (it does not). "
        "Seconds; `before` = everything before training (pretrained forecasts, baselines, "
        "calibration), `planned` = the fit the plan allowed (its trace is in the reserve); "
        "epochs in bold: the demo stopped early to end on time (`kerastp.demo.DeadlineStop`, "
        "a plan of several epochs only), its learning-rate schedule unfinished.",
        "",
        "| M min | condition | steps/s measured | epochs x steps | before s | reserve s | "
        "planned fit s | fit s | fit / planned | export s | total s | total / budget | "
        "within | process s | test MSE | SSIM |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        t = row["timings"]
        lines.append(
            f"| {row['minutes']:g}{tag(row)} | {row['condition']} | "
            f"{row['steps_per_second']:.2f} | {_trained(row)} x {row['steps_per_epoch']} | "
            f"{row['elapsed_before_training_s']:.1f} | {row['reserve_s']:.1f} | "
            f"{row['planned_fit_s']:.1f} | {t['fit_s']:.1f} | {row['fit_over_planned']:.2f} | "
            f"{t['export_s']:.1f} | {t['total_s']:.1f} | {row['total_over_budget']:.2f} | "
            f"{'yes' if row['within_budget'] else '**no**'} | {row['process_s']:.1f} | "
            f"{row['test_mse']:.1f} | {row['test_ssim']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0])
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--preset", default="stlight_tiny")
    parser.add_argument("--eval-sequences", type=int, default=500)
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows of an earlier demo_budget.json in --out-dir (those of another "
        "budget or condition)",
    )
    parser.add_argument("--out-dir", default=str(RESULTS / "cpu"))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    for minutes in args.minutes:
        if not 0 < minutes < 60:
            raise SystemExit(f"--minutes must be in (0, 60), got {minutes:g}")
    info = machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kerastp_demo_budget_") as scratch:
        for minutes in args.minutes:
            for condition in args.conditions:
                row = run_one(minutes, condition, scratch, args.preset, args.eval_sequences)
                rows.append(row)
                print(
                    f"{minutes:g} min {condition}: total {row['timings']['total_s']:.1f} s "
                    f"({row['total_over_budget']:.2f} of the budget), fit "
                    f"{row['fit_over_planned']:.2f}x planned",
                    flush=True,
                )
    kept, previous = [], None
    target = Path(args.out_dir) / "demo_budget.json"
    if args.append and target.is_file():
        previous = json.loads(target.read_text())
        done = {(r["minutes"], r["condition"], r["preset"]) for r in rows}
        kept = [
            r
            for r in previous["results"]
            if (r["minutes"], r["condition"], r["preset"]) not in done
        ]
    payload = {
        "benchmark": "demo_budget",
        "machine": info,
        "date": time.strftime("%Y-%m-%d"),
        "results": append_rows(previous, kept, rows, info),
    }
    table = markdown(payload)
    write_results(args.out_dir, "demo_budget", payload, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
