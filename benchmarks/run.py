"""Reproduces every benchmark table at one budget: fidelity, throughput, quality, radar.

    python benchmarks/run.py --budget smoke --out-dir /tmp/bench   # minutes; what CI runs
    python benchmarks/run.py --budget cpu                          # about an hour on 2 cores
    python benchmarks/run.py --budget gpu                          # on a GPU machine

`--budget` picks the presets, steps and evaluation sizes of each part (`_common.BUDGETS`);
`--parts` runs a subset. Each part writes its JSON, markdown table and plots into `--out-dir`
(default `benchmarks/results/<budget>`), then `summary.md` gathers the tables. Each part runs
in its own process, so one part's memory and graphs do not weigh on the next, and a failing
part is reported without losing the others (the exit status is then 1).
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import BUDGETS, RESULTS  # noqa: E402

#: Run order: throughput first, while the machine is otherwise quiet.
PARTS = ("fidelity", "throughput", "quality", "nowcasting")


def _presets(selection):
    return selection if isinstance(selection, list) else [selection]


def _limit(flag, value):
    return [] if value is None else [flag, str(value)]


def commands(budget, out_dir):
    """The command line of each part at `budget`."""
    b = BUDGETS[budget]
    out = ["--out-dir", str(out_dir)]
    return {
        "fidelity": ["fidelity.py", "--presets", *_presets(b["fidelity_presets"]), *out],
        "throughput": [
            "throughput.py",
            "--presets",
            *_presets(b["throughput_presets"]),
            "--steps",
            str(b["throughput_steps"]),
            "--max-seconds",
            str(b["throughput_max_seconds"]),
            *_limit("--eager-max-gmacs", b["throughput_eager_max_gmacs"]),
            *_limit("--xla-max-gmacs", b["throughput_xla_max_gmacs"]),
            *out,
        ],
        "quality": [
            "quality.py",
            "--presets",
            *_presets(b["quality_presets"]),
            "--steps",
            str(b["quality_steps"]),
            "--eval-sequences",
            str(b["quality_eval_sequences"]),
            *out,
        ],
        "nowcasting": [
            "nowcasting.py",
            "--presets",
            *_presets(b["radar_presets"]),
            "--steps",
            str(b["radar_steps"]),
            *out,
        ],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=list(BUDGETS), required=True)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out-dir", default=None, help="default benchmarks/results/<budget>")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir or RESULTS / args.budget)
    out_dir.mkdir(parents=True, exist_ok=True)
    status = {}
    for part, command in commands(args.budget, out_dir).items():
        if part not in args.parts:
            continue
        print(f"== {part}: {' '.join(command)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / command[0]), *command[1:]])
        status[part] = (code, time.perf_counter() - start)
        print(f"== {part}: exit {code} after {status[part][1]:.0f} s", flush=True)
    sections = [f"# Benchmarks, budget `{args.budget}`", ""]
    for part in PARTS:
        table = out_dir / f"{part}.md"
        if table.is_file():
            sections += [f"## {part}", "", table.read_text()]
    summary = out_dir / "summary.md"
    tmp = summary.with_name(".summary.md.tmp")
    tmp.write_text("\n".join(sections))
    os.replace(tmp, summary)
    failed = [part for part, (code, _) in status.items() if code != 0]
    for part, (code, seconds) in status.items():
        print(f"{part}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
