"""The train step on 4 forced CPU devices gives the parameters of 1 device, with the same
global batches, augmentation on the device and dropout on: the per-frame network (ResNeXt
BatchNorm, box head) and stage 2's networks (the TCN's own BatchNorm, attention dropout,
stage 1's uncertainty as input and their own uncertainty head)."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def device_check():
  """{network: (max parameter difference, loss on 1 device, loss on 4 devices)}: two
  processes at once (compilation takes one core each)."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  script = os.path.join(HERE, "device_check.py")
  runs = [subprocess.Popen([sys.executable, script, *names], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
          for names in (["per_frame"], ["lstm", "tcn", "transformer"])]
  results = {}
  for run in runs:
    out, err = run.communicate(timeout=900)
    assert run.returncode == 0, err[-3000:]
    lines = [l.split() for l in out.splitlines() if " max_param_difference " in l]
    results.update({v[0]: (float(v[2]), float(v[4]), float(v[6]), float(v[8]))
                    for v in lines})
  return results


# Same math up to the order of float32 reductions across devices. Measured largest parameter
# differences after 3 SGD steps: 8.4e-7 (per-frame), 1.0e-9 (LSTM), 4.2e-9 (TCN), 2.4e-9
# (transformer); losses equal to the 6 decimals printed. Dropout drawing its masks per device
# (as before one key per example) gave the sequence networks different masks on 4 devices.
# The sequence networks' uncertainty heads (checked apart) differ by 1.5e-8 (LSTM), 1.4e-6
# (TCN) and 6.0e-8 (transformer): their gradient, |e| / b^2 on unbounded features, magnifies
# the float noise.
@pytest.mark.parametrize("network, tolerance", [("per_frame", 4e-6), ("lstm", 1e-8),
                                                ("tcn", 5e-8), ("transformer", 5e-8)])
def test_four_devices_match_one_device(device_check, network, tolerance):
  difference, loss_one, loss_four, head = device_check[network]
  assert difference < tolerance, device_check[network]
  assert head < 1e-5, device_check[network]
  assert abs(loss_one - loss_four) <= 2e-6 * max(1.0, abs(loss_one)), device_check[network]
