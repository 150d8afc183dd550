"""Real data: kerastp's nowcasters against pysteps on six radar training events, scored on two.

Training events: the four 5-minute training events of the default split (FMI 2016-09-28,
MeteoSwiss 2015-05-15 and 2016-07-11, RMI 2021-07-04) plus BoM 2018-06-16 (6-minute steps)
and OPERA 2018-08-24 (15-minute steps): six events, windows of 6 frames in and 12 out at
64x64 (4 km pixels), every window at `--stride` (default 1), each drawn with a random
rotation by 90 degrees and flip (`--augment dihedral`, the same transform on inputs and
targets; `kerastp.data.augment`). Evaluation events: FMI 2017-05-09 and MeteoSwiss
2017-01-31, 5-minute steps, the protocol's 16 windows at stride 3, so lead times are 5 to
60 minutes. The evaluation events are never seen in training or in model selection.

Each model (`--presets`, each optionally `NAME:LOSS` with a loss of
`kerastp.options.LOSSES`, e.g. `motioncast_radar:intensity_csi`) is built for 6 -> 12
frames and trained for `--steps` optimizer steps at batch 16 (one-cycle schedule over the
budget at its preset's learning rate; recurrent baselines' scheduled sampling rescaled to
the budget) on the shuffled, augmented windows in model scale. Then every model, the
all-zero ("no rain") forecast, persistence (the last input frame repeated), and pysteps'
Lucas-Kanade extrapolation and S-PROG (optional dependency: `pip install pysteps`; skipped
with a note when missing), and an untrained MotionCast (its dense Lucas-Kanade prior's
semi-Lagrangian extrapolation, no weights involved) forecast the same evaluation windows
(clipped to model scale [0, 1], i.e. 0-100 mm/h, the range of the data), scored with
`kerastp.evaluation.NowcastingEvaluator` (pysteps conventions): MSE in (mm/h)^2, CSI / POD
/ FAR at 0.5, 1, 5 mm/h and FSS (1 mm/h, 8 px) per lead time and over the hour.

pysteps recipe (its documented defaults): rain rates in dB (10 log10 R, threshold 0.1 mm/h,
zero value -15 dB), motion by dense Lucas-Kanade on the last three inputs, semi-Lagrangian
extrapolation of the last rain-rate field; S-PROG on the dB fields (6 cascade levels, AR(2),
precipitation threshold -10 dB), back to mm/h with values below 0.1 mm/h set to 0.

Outputs: `nowcasting.json`, `nowcasting.md`, `nowcasting_mse.png`, `nowcasting_csi_1mm.png`,
`nowcasting_fss.png`, `nowcasting_window.png` (one evaluation window: inputs, truth and each
forecaster at +5, +30 and +60 min), and each trained model as `<out>/models/<row>.keras`.

    python benchmarks/nowcasting.py --presets motioncast_radar:intensity_csi stlight_tiny \
        --steps 3000
"""

import argparse
import contextlib
import io
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kerastp  # noqa: E402, F401, I001  (before Keras: kerastp's backend and oneDNN defaults)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    RESULTS,
    budget_overrides,
    lead_time_plot,
    machine,
    machine_line,
    presets_for,
    pyplot,
    write_results,
)

from kerastp import options, registry  # noqa: E402
from kerastp.data import radar  # noqa: E402
from kerastp.data.augment import WindowAugmentation  # noqa: E402
from kerastp.data.pydatasets import WindowsPyDataset  # noqa: E402
from kerastp.evaluation import NowcastingEvaluator  # noqa: E402
from kerastp.saving import save_keras  # noqa: E402

TRAIN_EVENTS = radar.DEFAULT_SPLIT["train"] + radar.EXTRA_EVENTS
EVAL_EVENTS = radar.VALIDATION_EVENTS
BATCH = 16
LEAD_MINUTES = 5
DB_THRESHOLD = 0.1  # mm/h
DB_ZERO = -15.0
#: Settings of MotionCast's Lucas-Kanade prior compared by `--prior-check`: grids (block
#: sizes, coarse to fine) and solves of the iterative refinement on each grid.
PRIOR_VARIANTS = (
    {"prior_downsample": 2, "prior_iterations": 1},
    {"prior_downsample": 2, "prior_iterations": 2},
    {"prior_downsample": 2, "prior_iterations": 3},
    {"prior_downsample": [2, 1], "prior_iterations": 1},
)


#: `--schedule-check`: training events held out of an inner split (the other training
#: events train), and the training schedules compared there: (loss, steps, peak rate).
INNER_HELD_OUT = ("fmi_20160928", "mch_20160711")
SCHEDULE_VARIANTS = (
    ("intensity_csi", 18, 1e-3),
    ("intensity_csi", 48, 1e-3),
    ("auto", 12, 1e-3),
    ("auto", 18, 1e-3),
    ("auto", 30, 1e-3),
    ("auto", 48, 1e-3),
    ("auto", 18, 3e-4),
    ("auto", 30, 3e-4),
)


def prior_name(variant):
    """A `PRIOR_VARIANTS` entry as a table row's name."""
    scales = variant["prior_downsample"]
    scales = [scales] if isinstance(scales, int) else list(scales)
    grids = " then ".join("full" if s == 1 else f"{s}x{s}" for s in scales)
    grids = f"{grids} grid{'s' if len(scales) > 1 else ''}"
    each = " each" if len(scales) > 1 else ""
    return f"kerastp Lucas-Kanade, {grids}, {variant['prior_iterations']} solve(s){each}"


def load_windows(path=None, resolution=64, stride=1):
    """(train_past, train_future) at `stride`, (eval_past, eval_future) at stride 3, eval info."""
    train = radar.radar_arrays(
        events=TRAIN_EVENTS,
        path=path,
        resolution=resolution,
        stride=stride,
        allow_mixed_time_steps=True,
    )
    past, future, info = radar.radar_arrays(
        events=EVAL_EVENTS, path=path, resolution=resolution, return_info=True
    )
    return train, (past, future), info


def expand_entries(selection):
    """`--presets` entries with the keywords tiny / paper / all expanded."""
    if len(selection) == 1 and selection[0] in ("tiny", "paper", "all"):
        return presets_for(selection[0])
    return list(selection)


def parse_entry(entry):
    """`NAME[:LOSS]` -> (preset, loss, row name)."""
    preset, _, loss = entry.partition(":")
    registry.get_preset(preset)
    loss = loss or "auto"
    options.check_choice("loss", loss, options.LOSSES)
    return preset, loss, preset if loss == "auto" else f"{preset} ({loss})"


def train_model(preset, steps, train, seed, loss="auto", augment="dihedral", learning_rate=None):
    """Trains `preset` for about `steps` steps (whole passes over the shuffled windows)."""
    keras.utils.set_random_seed(seed)
    past, future = train
    overrides = registry.frame_overrides(preset, past.shape[1], future.shape[1])
    overrides.update(budget_overrides(preset, steps))
    model = registry.build_model(preset, **overrides)
    if learning_rate is None:
        learning_rate = registry.get_preset(preset)["training"]["max_learning_rate"]
    stream = WindowsPyDataset(
        past, future, BATCH, seed=seed, augmentation=WindowAugmentation.from_name(augment)
    )
    per_pass = stream.steps
    passes = max(1, round(steps / per_pass))
    total = passes * per_pass
    model.compile(loss=loss, learning_rate=learning_rate, total_steps=total if total >= 2 else None)
    start = time.perf_counter()
    history = model.fit(stream, epochs=passes, verbose=0)
    seconds = time.perf_counter() - start
    return model, {
        "preset": preset,
        "loss": loss,
        "augment": augment,
        "overrides": overrides,
        "params": registry.count_trainable_params(model),
        "steps": total,
        "passes": passes,
        "learning_rate": learning_rate,
        "train_seconds": seconds,
        "final_loss": float(history.history["loss"][-1]),
    }


def _db(rate):
    rate = np.asarray(rate, dtype=np.float64)
    out = np.full(rate.shape, DB_ZERO)
    wet = rate >= DB_THRESHOLD
    out[wet] = 10.0 * np.log10(rate[wet])
    return out


def _from_db(db):
    rate = 10.0 ** (np.asarray(db, dtype=np.float64) / 10.0)
    rate[~np.isfinite(rate)] = 0.0
    rate[rate < DB_THRESHOLD] = 0.0
    return rate


def pysteps_forecasts(past, lead_times):
    """LK extrapolation and S-PROG forecasts (model scale) of every window, plus seconds."""
    from pysteps import motion, nowcasts

    lucas_kanade = motion.get_method("LK")
    extrapolate = nowcasts.get_method("extrapolation")
    sprog = nowcasts.get_method("sprog")
    outputs = {"pysteps LK": [], "pysteps S-PROG": []}
    start = time.perf_counter()
    for window in past[..., 0]:
        rate = radar.to_rain_rate(window).astype(np.float64)
        db = _db(rate)
        # pysteps prints its cascade tables; keep the benchmark's log readable.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            velocity = lucas_kanade(db[-3:], verbose=False)
            lk = extrapolate(rate[-1], velocity, lead_times)
            sp = sprog(
                db[-3:],
                velocity,
                lead_times,
                n_cascade_levels=6,
                precip_thr=10.0 * np.log10(DB_THRESHOLD),
                ar_order=2,
                measure_time=False,
            )
        lk = np.where(np.isfinite(lk), lk, 0.0)
        outputs["pysteps LK"].append(radar.to_model_scale(np.maximum(lk, 0.0)))
        outputs["pysteps S-PROG"].append(radar.to_model_scale(_from_db(sp)))
    seconds = time.perf_counter() - start
    return {k: np.stack(v)[..., None].astype(np.float32) for k, v in outputs.items()}, seconds


def score(future, forecast):
    """Scores of a model-scale forecast, clipped to the data's range [0, 1] (0-100 mm/h)."""
    evaluator = NowcastingEvaluator(inverse=radar.to_rain_rate)
    evaluator.update(future, np.clip(forecast, 0.0, 1.0))
    result = evaluator.result()
    return {
        "mse": result["mse"]["total"],
        "mse_mm_h": result["mse_rain_rate"]["total"],
        "mse_mm_h_per_lead_time": result["mse_rain_rate"]["per_lead_time"],
        "mse_per_lead_time": result["mse"]["per_lead_time"],
        "csi": {k: v["total"] for k, v in result["csi"].items()},
        "csi_per_lead_time": {k: v["per_lead_time"] for k, v in result["csi"].items()},
        "pod": {k: v["total"] for k, v in result["pod"].items()},
        "far": {k: v["total"] for k, v in result["far"].items()},
        "fss": result["fss"]["total"],
        "fss_per_lead_time": result["fss"]["per_lead_time"],
    }


def markdown(payload):
    lines = [
        f"Radar nowcasting: trained on six events ({', '.join(payload['train_events'])}; "
        f"{payload['train_windows']} windows at stride {payload['stride']}, augmentation "
        f"{payload['augment']!r}), scored on {payload['eval_windows']} windows of "
        f"{', '.join(payload['eval_events'])}; 6 x 5 min in, 12 x 5 min out, 64x64 at 4 km. "
        f"About {payload['steps']} steps at batch {BATCH} per model; "
        f"{machine_line(payload['machine'])}.",
        "MSE in (mm/h)² per pixel over the 60-min horizon and at +5 / +30 / +60 min; CSI at "
        "1 and 5 mm/h (pysteps conventions); FSS at 1 mm/h over 8 px. Best of each column "
        "in bold (lowest MSE, highest CSI / FSS).",
        "",
        "| forecaster | MSE | MSE +5 | MSE +30 | MSE +60 | CSI 1 | CSI1 +5 | CSI1 +30 "
        "| CSI1 +60 | CSI 5 | CSI5 +30 | FSS | FSS +30 | FSS +60 | train (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cells(r):
        mse = r["mse_mm_h_per_lead_time"]
        csi1 = r["csi_per_lead_time"]["1.0"]
        csi5 = r["csi_per_lead_time"]["5.0"]
        fss = r["fss_per_lead_time"]
        return [
            r["mse_mm_h"], mse[0], mse[5], mse[-1],
            r["csi"]["1.0"], csi1[0], csi1[5], csi1[-1],
            r["csi"]["5.0"], csi5[5],
            r["fss"], fss[5], fss[-1],
        ]  # fmt: skip

    rows = [cells(r) for r in payload["results"]]
    lower_is_better = [True] * 4 + [False] * 9
    best = []
    for column, low in enumerate(lower_is_better):
        values = [row[column] for row in rows if np.isfinite(row[column])]
        best.append((min if low else max)(values) if values else None)
    for r, row in zip(payload["results"], rows, strict=True):
        shown = [f"**{v:.3f}**" if v == best[i] else f"{v:.3f}" for i, v in enumerate(row)]
        train = f"{r['train_seconds']:.0f}" if r.get("train_seconds") is not None else "–"
        lines.append(f"| {r['name']} | {' | '.join(shown)} | {train} |")
    if payload.get("notes"):
        lines += [""] + [f"- {note}" for note in payload["notes"]]
    return "\n".join(lines) + "\n"


def window_picture(past, future, forecasts, path, index):
    """One evaluation window: the inputs, then truth and each forecast at +5, +30, +60 min."""
    plt = pyplot()
    leads = (0, 5, 11)
    rows = [("truth", future[index])] + [(name, f[index]) for name, f in forecasts.items()]
    columns = max(len(past[index]), len(leads))
    figure, axes = plt.subplots(
        len(rows) + 1, columns, figsize=(1.6 * columns, 1.6 * (len(rows) + 1)), squeeze=False
    )
    style = {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}
    for axis in axes.ravel():
        axis.axis("off")
    for t, frame in enumerate(past[index]):
        axes[0, t].imshow(frame[..., 0], **style)
        axes[0, t].set_title(f"input {5 * (t - len(past[index]) + 1)} min", fontsize=7)
    for r, (name, frames) in enumerate(rows, start=1):
        for c, lead in enumerate(leads):
            axes[r, c].imshow(np.clip(frames[lead, ..., 0], 0.0, 1.0), **style)
            axes[r, c].set_title(f"{name}, +{5 * (lead + 1)} min", fontsize=7)
    figure.suptitle("Radar nowcast (model scale log1p(R)/log1p(100); 1 = 100 mm/h)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets",
        nargs="+",
        default=["motioncast_radar:intensity_csi", "motioncast_radar", "ustep_tiny"],
        help="NAME[:LOSS] entries, or tiny / paper",
    )
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--stride", type=int, default=1, help="training window stride")
    parser.add_argument("--augment", choices=options.AUGMENTATIONS, default="dihedral")
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="peak rate; default: each preset's"
    )
    parser.add_argument("--window", type=int, default=None, help="evaluation window pictured")
    parser.add_argument(
        "--prior-check",
        action="store_true",
        help="only score persistence, pysteps LK and the untrained MotionCast (its Lucas-Kanade "
        "prior) on the training windows: how the prior's settings were chosen",
    )
    parser.add_argument(
        "--schedule-check",
        action="store_true",
        help="only train motioncast_radar on an inner split of the training events with each "
        "training schedule compared (SCHEDULE_VARIANTS), scored on the held-out training events: "
        "how the shipped radar model's schedule was chosen; --presets, --steps, --learning-rate, "
        "--stride and --no-pysteps do not apply",
    )
    parser.add_argument("--radar-path", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pysteps", action="store_true", help="skip the pysteps baselines")
    parser.add_argument("--out-dir", default=str(RESULTS))
    return parser


def prior_check(args):
    """Persistence, pysteps LK and MotionCast's Lucas-Kanade prior on the *training* windows
    (stride 3): the figures `kerastp.layers.optical_flow.lucas_kanade`'s defaults were chosen
    by, without looking at the validation events."""
    past, future = radar.radar_arrays("train", path=args.radar_path)
    lead_times = future.shape[1]
    rows = [{"name": "persistence",
             **score(future, np.repeat(past[:, -1:], lead_times, axis=1))}]  # fmt: skip
    try:
        pysteps_output, _ = pysteps_forecasts(past, lead_times)
        rows.append({"name": "pysteps LK", **score(future, pysteps_output["pysteps LK"])})
    except ImportError:
        pass
    # The preset's prior, with MotionCast's defaults for what the preset leaves out.
    chosen = {"prior_downsample": 2, "prior_iterations": 1}
    chosen.update({k: v for k, v in registry.get_preset("motioncast_radar")["config"].items()
                   if k in chosen})  # fmt: skip
    for variant in PRIOR_VARIANTS:
        prior = registry.build_model("motioncast_radar", **variant)
        mark = ", the preset's" if variant == chosen else ""
        forecast = prior.predict(past, batch_size=BATCH, verbose=0)
        rows.append({"name": prior_name(variant) + mark, **score(future, forecast)})
    payload = {"benchmark": "nowcasting_prior", "machine": machine(),
               "windows": int(len(past)), "events": list(radar.DEFAULT_SPLIT["train"]),
               "results": rows}  # fmt: skip
    lines = [f"Training windows ({len(past)}, stride 3, {', '.join(payload['events'])}): "
             "MSE (mm/h)² over the hour and at +5 min, CSI at 1 and 5 mm/h, FSS (1 mm/h, "
             f"8 px); {machine_line(payload['machine'])}. The untrained MotionCast rows are "
             "its Lucas-Kanade prior's extrapolation on a 2x2 grid with 1, 2 or 3 solves of the "
             "iterative refinement (`prior_iterations`), or coarse to fine on the 2x2 grid "
             "then at full resolution (`prior_downsample`); the validation events play no "
             "part here.",
             "", "| forecaster | MSE | MSE +5 | CSI 1 | CSI 5 | FSS |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    lines += short_rows(rows)
    write_results(args.out_dir, "nowcasting_prior", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return payload


def short_rows(rows, seconds=False):
    """Markdown rows of the short tables: MSE over the hour and at +5 min, CSI at 1 and
    5 mm/h, FSS (and the training seconds, "–" for untrained rows)."""
    lines = []
    for r in rows:
        first = r["mse_mm_h_per_lead_time"][0]
        cells = (r["mse_mm_h"], first, r["csi"]["1.0"], r["csi"]["5.0"], r["fss"])
        line = f"| {r['name']} | " + " | ".join(f"{v:.3f}" for v in cells) + " |"
        if seconds:
            line += f" {r['train_seconds']:.0f} |" if "train_seconds" in r else " – |"
        lines.append(line)
    return lines


def schedule_check(args, argv=None):
    """How `radar`'s training schedule was chosen without the validation events: trains
    `motioncast_radar` on the training events minus `INNER_HELD_OUT` (every window,
    dihedral augmentation) with each of `SCHEDULE_VARIANTS`, and scores it on the held-out
    training events (stride 3) beside the untrained prior."""
    inner = [e for e in TRAIN_EVENTS if e not in INNER_HELD_OUT]
    train = radar.radar_arrays(events=inner, path=args.radar_path, stride=1,
                               allow_mixed_time_steps=True)  # fmt: skip
    past, future = radar.radar_arrays(events=INNER_HELD_OUT, path=args.radar_path)
    prior = registry.build_model("motioncast_radar")
    rows = [{"name": "kerastp Lucas-Kanade (untrained MotionCast)",
             **score(future, prior.predict(past, batch_size=BATCH, verbose=0))}]  # fmt: skip
    for loss, steps, rate in SCHEDULE_VARIANTS:
        keras.backend.clear_session()
        model, row = train_model("motioncast_radar", steps, train, args.seed, loss,
                                 args.augment, rate)  # fmt: skip
        name = f"{loss}, {row['steps']} steps, peak {rate:g}"
        rows.append({"name": name, **row, **score(future, model.predict(past, batch_size=BATCH,
                                                                         verbose=0))})  # fmt: skip
        print(f"[{name}] MSE {rows[-1]['mse_mm_h']:.3f}", flush=True)
    payload = {"benchmark": "nowcasting_schedule", "machine": machine(),
               "command": "python benchmarks/nowcasting.py " + " ".join(argv or sys.argv[1:]),
               "train_events": inner, "held_out_events": list(INNER_HELD_OUT),
               "train_windows": int(len(train[0])), "held_out_windows": int(len(past)),
               "seed": args.seed, "results": rows}  # fmt: skip
    lines = [f"Inner split of the training events: `motioncast_radar` trained on "
             f"{', '.join(inner)} ({len(train[0])} windows at stride 1, augmentation "
             f"'{args.augment}', batch {BATCH}, one-cycle Adam, seed {args.seed}) and scored "
             f"on {len(past)} windows (stride 3) of {', '.join(INNER_HELD_OUT)}; MSE (mm/h)² "
             "over the hour and at +5 min, CSI at 1 and 5 mm/h, FSS (1 mm/h, 8 px); "
             f"{machine_line(payload['machine'])}. Loss `auto` is MotionCast's default, the "
             "mean squared error. The validation events play no part here.",
             "", "| schedule | MSE | MSE +5 | CSI 1 | CSI 5 | FSS | train (s) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += short_rows(rows, seconds=True)
    write_results(args.out_dir, "nowcasting_schedule", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return payload


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.prior_check and args.schedule_check:
        raise SystemExit("--prior-check and --schedule-check are separate runs: pick one")
    if args.prior_check:
        return prior_check(args)
    if args.schedule_check:
        return schedule_check(args, argv)
    entries = [parse_entry(e) for e in expand_entries(args.presets)]
    train, (past, future), info = load_windows(args.radar_path, stride=args.stride)
    lead_times = future.shape[1]
    payload = {
        "benchmark": "nowcasting",
        "command": "python benchmarks/nowcasting.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine(),
        "train_events": list(TRAIN_EVENTS),
        "eval_events": list(EVAL_EVENTS),
        "train_windows": int(len(train[0])),
        "eval_windows": int(len(past)),
        "lead_minutes": LEAD_MINUTES,
        "steps": args.steps,
        "stride": args.stride,
        "augment": args.augment,
        "batch_size": BATCH,
        "seed": args.seed,
        "notes": [],
        "results": [],
    }
    forecasts = {}
    rows = [
        {"name": "no rain (all zero)", **score(future, np.zeros_like(future))},
        {
            "name": "persistence",
            **score(future, np.repeat(past[:, -1:], lead_times, axis=1)),
        },
    ]
    if args.no_pysteps:
        payload["notes"].append("pysteps baselines skipped (--no-pysteps).")
    else:
        try:
            pysteps_output, seconds = pysteps_forecasts(past, lead_times)
        except ImportError:
            payload["notes"].append(
                "pysteps is not installed (pip install pysteps): its baselines are missing."
            )
        else:
            for name, forecast in pysteps_output.items():
                forecasts[name] = forecast
                rows.append(
                    {"name": name, "forecast_seconds": seconds / 2, **score(future, forecast)}
                )
    # MotionCast before any training: its Lucas-Kanade prior's extrapolation, kerastp's own
    # classical reference (no weights involved: the correction and residual start at zero).
    prior = registry.build_model("motioncast_radar")
    rows.append({"name": "kerastp Lucas-Kanade (untrained MotionCast)",
                 **score(future, prior.predict(past, batch_size=BATCH, verbose=0))})  # fmt: skip
    keras.backend.clear_session()
    payload["results"] = list(rows)
    out_dir = Path(args.out_dir)
    models_dir = out_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    for preset, loss, name in entries:
        print(f"[{name}] training {args.steps} steps on radar ...", flush=True)
        model, row = train_model(
            preset, args.steps, train, args.seed, loss, args.augment, args.learning_rate
        )
        forecast = model.predict(past, batch_size=BATCH, verbose=0)
        forecasts[name] = forecast
        row = {"name": name, **row, **score(future, forecast)}
        payload["results"].append(row)
        file_name = name.replace(" (", "-").replace(")", "").replace(" ", "_")
        save_keras(model, models_dir / f"{file_name}.keras", include_optimizer=False)
        print(
            f"[{name}] MSE {row['mse_mm_h']:.3f} (mm/h)^2, CSI@1 {row['csi']['1.0']:.3f}, "
            f"CSI@5 {row['csi']['5.0']:.3f}, FSS {row['fss']:.3f} "
            f"({row['train_seconds']:.0f} s)",
            flush=True,
        )
        write_results(out_dir, "nowcasting", payload, markdown(payload))
        keras.backend.clear_session()
    mse = {r["name"]: r["mse_mm_h_per_lead_time"] for r in payload["results"]}
    csi = {r["name"]: r["csi_per_lead_time"]["1.0"] for r in payload["results"]}
    lead_time_plot(
        mse,
        out_dir / "nowcasting_mse.png",
        "Radar, held-out events: MSE vs lead time",
        "MSE (mm/h)²",
        xlabel="lead time (min)",
        lead_minutes=LEAD_MINUTES,
    )
    lead_time_plot(
        csi,
        out_dir / "nowcasting_csi_1mm.png",
        "Radar, held-out events: CSI at 1 mm/h vs lead time",
        "CSI",
        xlabel="lead time (min)",
        lead_minutes=LEAD_MINUTES,
    )
    fss = {r["name"]: r["fss_per_lead_time"] for r in payload["results"]}
    lead_time_plot(
        fss,
        out_dir / "nowcasting_fss.png",
        "Radar, held-out events: FSS (1 mm/h, 8 px) vs lead time",
        "FSS",
        xlabel="lead time (min)",
        lead_minutes=LEAD_MINUTES,
    )
    # The pictured window: the one with the most rain at +60 min, unless chosen.
    index = args.window
    if index is None:
        index = int(np.argmax(future[:, -1].mean(axis=(1, 2, 3))))
    window_picture(past, future, forecasts, out_dir / "nowcasting_window.png", index)
    payload["pictured_window"] = {
        "index": index,
        "event": str(info["event"][index]),
        "issue_time": str(info["issue_time"][index]),
    }
    table = markdown(payload)
    write_results(out_dir, "nowcasting", payload, table)
    print(table)
    return payload


if __name__ == "__main__":
    main()
