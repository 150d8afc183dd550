"""Real data: every model trained on six radar events, scored on the other two.

Training events: the four 5-minute training events of the default split (FMI 2016-09-28,
MeteoSwiss 2015-05-15 and 2016-07-11, RMI 2021-07-04) plus BoM 2018-06-16 (6-minute steps)
and OPERA 2018-08-24 (15-minute steps): six events, 50 windows of 6 frames in and 12 out at
64x64 (4 km pixels), stride 3. Evaluation events: FMI 2017-05-09 and MeteoSwiss 2017-01-31,
5-minute steps, 16 windows, so lead times are 5 to 60 minutes.

Each preset is built for 6 -> 12 frames and trained for `--steps` optimizer steps at batch 16
(one-cycle schedule over the budget, its own learning rate and loss; recurrent baselines'
scheduled sampling rescaled to the budget), on shuffled windows in model scale. Then every
model, persistence (the last input frame repeated), and pysteps' Lucas-Kanade extrapolation
and S-PROG (optional dependency: `pip install pysteps`; skipped with a note when missing)
forecast the same evaluation windows (clipped to model scale [0, 1], i.e. 0-100 mm/h, the
range of the data), scored with `kerastp.evaluation.NowcastingEvaluator`
(pysteps conventions): MSE in (mm/h)^2 and CSI / POD / FAR at 0.5, 1, 5 mm/h per lead time.

pysteps recipe (its documented defaults): rain rates in dB (10 log10 R, threshold 0.1 mm/h,
zero value -15 dB), motion by dense Lucas-Kanade on the last three inputs, semi-Lagrangian
extrapolation of the last rain-rate field; S-PROG on the dB fields (6 cascade levels, AR(2),
precipitation threshold -10 dB), back to mm/h with values below 0.1 mm/h set to 0.

Outputs: `nowcasting.json`, `nowcasting.md`, `nowcasting_mse.png`, `nowcasting_csi_1mm.png`.

    python benchmarks/nowcasting.py --steps 300
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

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import (  # noqa: E402
    RESULTS,
    budget_overrides,
    lead_time_plot,
    machine,
    machine_line,
    presets_for,
    write_results,
)

from kerastp import registry  # noqa: E402
from kerastp.data import radar  # noqa: E402
from kerastp.evaluation import NowcastingEvaluator  # noqa: E402

TRAIN_EVENTS = radar.DEFAULT_SPLIT["train"] + radar.EXTRA_EVENTS
EVAL_EVENTS = radar.VALIDATION_EVENTS
BATCH = 16
LEAD_MINUTES = 5
DB_THRESHOLD = 0.1  # mm/h
DB_ZERO = -15.0


def load_windows(path=None, resolution=64):
    """(train_past, train_future), (eval_past, eval_future), eval info."""
    train = radar.radar_arrays(
        events=TRAIN_EVENTS,
        path=path,
        resolution=resolution,
        allow_mixed_time_steps=True,
    )
    past, future, info = radar.radar_arrays(
        events=EVAL_EVENTS, path=path, resolution=resolution, return_info=True
    )
    return train, (past, future), info


def train_model(preset, steps, train, seed):
    keras.utils.set_random_seed(seed)
    past, future = train
    overrides = registry.frame_overrides(preset, past.shape[1], future.shape[1])
    overrides.update(budget_overrides(preset, steps))
    model = registry.build_model(preset, **overrides)
    learning_rate = registry.get_preset(preset)["training"]["max_learning_rate"]
    model.compile(learning_rate=learning_rate, total_steps=steps if steps >= 2 else None)
    data = (
        tf.data.Dataset.from_tensor_slices((past, future))
        .repeat()
        .shuffle(len(past), seed=seed)
        .batch(BATCH, drop_remainder=True)
    )
    start = time.perf_counter()
    history = model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    seconds = time.perf_counter() - start
    return model, {
        "preset": preset,
        "overrides": overrides,
        "params": registry.count_trainable_params(model),
        "steps": steps,
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
    }


def markdown(payload):
    lines = [
        f"Radar nowcasting: trained on six events ({', '.join(payload['train_events'])}; "
        f"{payload['train_windows']} windows), scored on {payload['eval_windows']} windows of "
        f"{', '.join(payload['eval_events'])}; 6 x 5 min in, 12 x 5 min out, 64x64 at 4 km. "
        f"{payload['steps']} steps at batch {BATCH} per model; {machine_line(payload['machine'])}.",
        "MSE in (mm/h)² per pixel over the 60-min horizon and at +5 / +30 / +60 min; CSI at "
        "1 mm/h (pysteps conventions); FSS at 1 mm/h over 8 px.",
        "",
        "| forecaster | MSE | MSE +5 | MSE +30 | MSE +60 | CSI 1 mm/h | CSI +5 | CSI +30 "
        "| CSI +60 | CSI 5 mm/h | FSS | train (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        mse = r["mse_mm_h_per_lead_time"]
        csi = r["csi_per_lead_time"]["1.0"]
        train = f"{r['train_seconds']:.0f}" if r.get("train_seconds") is not None else "–"
        lines.append(
            f"| {r['name']} | {r['mse_mm_h']:.3f} | {mse[0]:.3f} | {mse[5]:.3f} | {mse[-1]:.3f} "
            f"| {r['csi']['1.0']:.3f} | {csi[0]:.3f} | {csi[5]:.3f} | {csi[-1]:.3f} "
            f"| {r['csi']['5.0']:.3f} | {r['fss']:.3f} | {train} |"
        )
    if payload.get("notes"):
        lines += [""] + [f"- {note}" for note in payload["notes"]]
    return "\n".join(lines) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"], help="names, tiny or paper")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--radar-path", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pysteps", action="store_true", help="skip the pysteps baselines")
    parser.add_argument("--out-dir", default=str(RESULTS))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    presets = presets_for(args.presets)
    train, (past, future), info = load_windows(args.radar_path)
    lead_times = future.shape[1]
    payload = {
        "benchmark": "nowcasting",
        "machine": machine(),
        "train_events": list(TRAIN_EVENTS),
        "eval_events": list(EVAL_EVENTS),
        "train_windows": int(len(train[0])),
        "eval_windows": int(len(past)),
        "lead_minutes": LEAD_MINUTES,
        "steps": args.steps,
        "batch_size": BATCH,
        "seed": args.seed,
        "notes": [],
        "results": [],
    }
    rows = [
        {
            "name": "persistence",
            **score(future, np.repeat(past[:, -1:], lead_times, axis=1)),
        }
    ]
    if args.no_pysteps:
        payload["notes"].append("pysteps baselines skipped (--no-pysteps).")
    else:
        try:
            forecasts, seconds = pysteps_forecasts(past, lead_times)
        except ImportError:
            payload["notes"].append(
                "pysteps is not installed (pip install pysteps): its baselines are missing."
            )
        else:
            for name, forecast in forecasts.items():
                rows.append(
                    {"name": name, "forecast_seconds": seconds / 2, **score(future, forecast)}
                )
    payload["results"] = list(rows)
    out_dir = Path(args.out_dir)
    for preset in presets:
        print(f"[{preset}] training {args.steps} steps on radar ...", flush=True)
        model, row = train_model(preset, args.steps, train, args.seed)
        forecast = model.predict(past, batch_size=BATCH, verbose=0)
        row = {"name": preset, **row, **score(future, forecast)}
        payload["results"].append(row)
        print(
            f"[{preset}] MSE {row['mse_mm_h']:.3f} (mm/h)^2, CSI@1 {row['csi']['1.0']:.3f} "
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
    table = markdown(payload)
    write_results(out_dir, "nowcasting", payload, table)
    print(table)
    return payload


if __name__ == "__main__":
    main()
