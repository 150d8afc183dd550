"""kerastp turns on TensorFlow's oneDNN CPU kernels unless the user chose (kerastp/__init__.py).

TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI / BF16, AVX-VNNI or AMX; on
other CPUs its Eigen kernels trained kerastp's models 1.3x to 2.3x slower per step
(benchmarks/results/cpu/onednn.md). Each case is a fresh process: TensorFlow reads the variable
once, when first imported.
"""

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, kerastp, keras, numpy as np
from tensorflow.python.util import _pywrap_util_port
from kerastp.layers import depthwise
try:  # a dilated DepthwiseConv2dNative: TensorFlow's CPU kernel of it exists in oneDNN only
    depthwise._native_op(np.zeros((1, 8, 8, 2), "float32"), np.zeros((3, 3, 2, 1), "float32"),
                         (2, 2), "same")
    dilated = True
except Exception as error:
    dilated = "does not support dilations" in str(error) and "unsupported"
print(json.dumps({"onednn": _pywrap_util_port.IsMklEnabled(), "dilated": dilated}))
"""


@pytest.mark.parametrize("setting, onednn", [(None, True), ("0", False)])
def test_kerastp_turns_on_onednn_unless_the_user_chose(setting, onednn):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["onednn"] is onednn, result
    # What the choice does: Eigen's kernel refuses a dilated native depth-wise convolution.
    assert result["dilated"] == (True if onednn else "unsupported"), result
