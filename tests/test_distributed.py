"""tf.distribute training: MirroredStrategy in process, MultiWorkerMirroredStrategy over two
worker processes on loopback, both against single-process training at the same global batch."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# convlstm_tiny without scheduled sampling: no BatchNorm (whose batch statistics would be
# per replica) and no random draws (which would differ per replica), so a replica split of the
# global batch must give the single-process gradients up to summation order.
RUN = {
    "preset": "convlstm_tiny",
    "overrides": {"scheduled_sampling": False},
    "epochs": 2,
    "steps_per_epoch": 2,
    "batch_size": 8,
    "val_sequences": 8,
    "eval_sequences": 0,
    "learning_rate": 1e-3,
    "seed": 3,
    "verbose": 0,
}
#: Max abs weight difference accepted after 4 Adam steps (measured: 1.5e-8 for two workers; the
#: mirrored run on one CPU replica is within it too). The replicas' gradients are summed
#: by an all-reduce in another order than one device's batch reduction (float32 rounding,
#: ~1e-7 relative), and Adam's normalised update can amplify that on near-zero gradients.
DISTRIBUTED_ATOL = 1e-6


def _weights(path):
    from kerastp.saving import load_model

    return [np.asarray(w) for w in load_model(path).get_weights()]


def _max_difference(a, b):
    assert len(a) == len(b)
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device_training(tmp_path):
    from kerastp.training import train

    plain = train(**RUN, run_dir=str(tmp_path / "plain"))
    mirrored = train(**RUN, strategy="mirrored", run_dir=str(tmp_path / "mirrored"))
    assert json.loads((tmp_path / "mirrored" / "config.json").read_text())["strategy"] == (
        "mirrored"
    )
    difference = _max_difference(
        _weights(tmp_path / "plain" / "model.keras"),
        _weights(tmp_path / "mirrored" / "model.keras"),
    )
    assert difference <= DISTRIBUTED_ATOL, difference
    np.testing.assert_allclose(
        plain["history"]["loss"], mirrored["history"]["loss"], rtol=1e-5
    )


def test_unknown_strategy_is_refused():
    from kerastp.training import TrainConfig

    with pytest.raises(ValueError, match="strategy"):
        TrainConfig(strategy="horovod").resolved()


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


WORKER = textwrap.dedent(
    """
    import json, os, sys
    index, ports, run_dir, run = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3], sys.argv[4]
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index},
    })
    from kerastp.training import train
    train(**json.loads(run), strategy="multi_worker", run_dir=run_dir)
    print("worker", index, "done")
    """
)


@pytest.mark.slow
def test_multi_worker_two_processes_match_single_process_training(tmp_path):
    """Two workers on loopback, each with half of every global batch of 8."""
    from kerastp.training import train

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ports = ",".join(map(str, _free_ports(2)))
    run_dir = tmp_path / "cluster"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(i), ports, str(run_dir), json.dumps(RUN)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for worker in workers:
            out, _ = worker.communicate(timeout=600)
            outputs.append(out)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for i, (worker, out) in enumerate(zip(workers, outputs, strict=True)):
        assert worker.returncode == 0, f"worker {i}:\n{out[-3000:]}"
    # The chief (worker 0) wrote the run directory; worker 1 its own under workers/.
    assert (run_dir / "model.keras").is_file()
    assert (run_dir / "workers" / "worker-1" / "model.keras").is_file()
    assert not (run_dir / "workers" / "worker-0").exists()

    train(**RUN, run_dir=str(tmp_path / "single"))
    single = _weights(tmp_path / "single" / "model.keras")
    chief = _weights(run_dir / "model.keras")
    other = _weights(run_dir / "workers" / "worker-1" / "model.keras")
    assert _max_difference(chief, other) == 0.0  # replicas hold one set of weights
    difference = _max_difference(single, chief)
    print(f"multi-worker vs single-process max abs weight difference: {difference:.3g}")
    assert difference <= DISTRIBUTED_ATOL, difference
    # And training moved the weights: the comparison is not between two initialisations.
    import keras

    from kerastp import registry

    keras.utils.set_random_seed(RUN["seed"])
    initial = registry.build_model(RUN["preset"], **RUN["overrides"])
    assert _max_difference([np.asarray(w) for w in initial.get_weights()], single) > 1e-4
