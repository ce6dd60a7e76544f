"""The pmapped train step: 4 forced CPU devices give the parameters of 1 device, for the
per-frame network (ResNeXt BatchNorm) and for stage 2's TCN (its own BatchNorm)."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def pmap_check():
  """{network: (max parameter difference, loss on 1 device, loss on 4 devices)}."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, os.path.join(HERE, "pmap_check.py")], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [l.split() for l in result.stdout.splitlines() if " max_param_difference " in l]
  return {v[0]: (float(v[2]), float(v[4]), float(v[6])) for v in lines}


# Same math up to the order of float32 reductions across devices. Measured largest parameter
# differences: 1.5e-7 (per-frame), 8.4e-9 (TCN); losses equal to the 6 decimals printed.
# Slow (about 3 minutes on 2 cores): ``pytest -m slow``.
@pytest.mark.slow
@pytest.mark.parametrize("network, tolerance", [("per_frame", 1e-6), ("tcn", 4e-8)])
def test_four_devices_match_one_device(pmap_check, network, tolerance):
  difference, loss_one, loss_four = pmap_check[network]
  assert difference < tolerance, pmap_check[network]
  assert abs(loss_one - loss_four) <= 2e-6 * max(1.0, abs(loss_one)), pmap_check[network]
