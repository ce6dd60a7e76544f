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


@pytest.mark.parametrize("network", ["per_frame", "tcn"])
def test_four_devices_match_one_device(pmap_check, network):
  difference, loss_one, loss_four = pmap_check[network]
  # Same math up to the order of float32 reductions across devices.
  assert difference < 1e-5, pmap_check[network]
  assert abs(loss_one - loss_four) < 1e-4 * max(1.0, abs(loss_one)), pmap_check[network]
