"""benchmarks/loop_overhead.py: a smoke run, so the script cannot rot (slow)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "loop_overhead.py"


@pytest.mark.slow
def test_loop_overhead_smoke(tmp_path):
    argv = [
        sys.executable, str(SCRIPT), "--steps", "3", "--epochs", "2", "--repeats", "1",
        "--val-sequences", "4", "--process-steps", "2", "--process-epochs", "2",
        "--out-dir", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads((tmp_path / "loop_overhead.json").read_text())
    summary = payload["summary"]["stlight_tiny"]
    assert summary["cost_ratio"] > 0
    medians = summary["medians"]
    assert medians["plain"]["steps_per_second"] > 0 and medians["train"]["steps_per_second"] > 0
    # Validation time is measured inside `train`'s epochs, never in plain fit's.
    assert medians["train"]["validation_seconds_per_epoch"] > 0
    assert medians["plain"]["validation_seconds_per_epoch"] == 0
    processes = payload["processes"]["stlight_tiny"]
    assert set(processes) == {"plain_fit_script", "kerastp_train"}
    for row in processes.values():
        assert row["minor_faults"] > 0 and row["wall_seconds"] > 0
    assert "a `train` step costs" in (tmp_path / "loop_overhead.md").read_text()
