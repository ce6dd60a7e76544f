"""The pmapped train step: 4 forced CPU devices give the parameters of 1 device."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_four_devices_match_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, os.path.join(HERE, "pmap_check.py")], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  line = [l for l in result.stdout.splitlines() if l.startswith("max_param_difference")][-1]
  values = line.split()
  difference, loss_one, loss_four = float(values[1]), float(values[3]), float(values[5])
  # Same math up to the order of float32 reductions across devices.
  assert difference < 1e-5, line
  assert abs(loss_one - loss_four) < 1e-4 * max(1.0, abs(loss_one)), line
