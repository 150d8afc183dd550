"""Fidelity: parameters and FLOPs of every preset next to the paper / OpenSTL figures.

Parameters are trainable weights (PyTorch's `numel` over parameters). FLOPs follow the papers'
convention: multiply-accumulates of one forecast (batch 1), counted the way fvcore counts the
PyTorch twin (`fvcore_macs`; `macs` counts every layer). ConvLSTM's OpenSTL count includes
3,407,872 parameters its forward never uses, which kerastp does not create; the table shows
both.

    python benchmarks/fidelity.py                 # every preset
    python benchmarks/fidelity.py --presets tiny  # the tiny presets only

Writes `fidelity.json` and `fidelity.md` into `--out-dir` (default benchmarks/results).
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, machine_line, presets_for, write_results  # noqa: E402

from kerastp import registry  # noqa: E402


def _ratio(ours, paper):
    return None if not paper else ours / paper


def measure(presets):
    rows = []
    for name in presets:
        summary = registry.preset_summary(name)
        counted = summary["params"] + summary["paper_unused_params"]
        rows.append(
            {
                **summary,
                "description": registry.get_preset(name)["description"],
                "params_vs_paper": _ratio(counted, summary["paper_params"]),
                "flops_vs_paper": _ratio(
                    summary["fvcore_macs"] + summary["paper_zero_state_macs"],
                    summary["paper_flops"],
                ),
            }
        )
    return rows


def _millions(value):
    if value is None:
        return "–"
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}K"


def _giga(value):
    if value is None:
        return "–"
    return f"{value / 1e9:.2f}G" if value >= 1e9 else f"{value / 1e6:.1f}M"


def _pct(ratio):
    return "–" if ratio is None else f"{100 * (ratio - 1):+.1f}%"


def markdown(payload):
    lines = [
        f"Fidelity of every preset ({machine_line(payload['machine'])}). Params: trainable; "
        "FLOPs: MACs of one forecast at batch 1, fvcore convention (the papers' and OpenSTL's "
        '"FLOPs"); Δ: kerastp vs paper (ConvLSTM counted with OpenSTL\'s unused weights; '
        "ConvLSTM and PredRNN with the convolutions of the zero first state, which OpenSTL runs "
        "and kerastp skips).",
        "",
        "| preset | kerastp params | paper params | Δ params | kerastp FLOPs | all-layer MACs "
        "| paper FLOPs | Δ FLOPs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        params = _millions(r["params"])
        if r["paper_unused_params"]:
            params += f" (+{r['paper_unused_params'] / 1e6:.2f}M unused in OpenSTL)"
        flops = _giga(r["fvcore_macs"])
        if r["paper_zero_state_macs"]:
            flops += f" (+{_giga(r['paper_zero_state_macs'])} on zero states in OpenSTL)"
        lines.append(
            f"| {r['preset']} | {params} | {_millions(r['paper_params'])} | "
            f"{_pct(r['params_vs_paper'])} | {flops} | {_giga(r['macs'])} | "
            f"{_giga(r['paper_flops'])} | {_pct(r['flops_vs_paper'])} |"
        )
    return "\n".join(lines) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["all"], help="names, tiny, paper or all")
    parser.add_argument("--out-dir", default=str(RESULTS))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    presets = presets_for(args.presets)
    start = time.perf_counter()
    payload = {
        "benchmark": "fidelity",
        "machine": machine(),
        "results": measure(presets),
    }
    payload["seconds"] = time.perf_counter() - start
    table = markdown(payload)
    write_results(args.out_dir, "fidelity", payload, table)
    print(table)
    return payload


if __name__ == "__main__":
    main()
