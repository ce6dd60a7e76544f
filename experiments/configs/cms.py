"""The multi-step baseline (CMS, the paper's Table 1) beside ``synthetic``: the same
ResNeXt-50 (32x4d), data and optimisation, regressing root-relative 3D markers (marker loss
only); ``experiments.evaluate`` then scales each clip from its predicted markers and runs
IK, and reports the same table as for D3KE (see ``d3ke_jax.train.cms``)."""

from experiments.configs import synthetic


def get_config():
  return markers_only(synthetic.get_config())


def markers_only(config):
  """A per-frame D3KE config turned into its multi-step baseline."""
  config.stage = "cms"
  config.loss = {"lambda_marker": 1.0}
  del config.model["box_head"]  # D3KE's: inference steers crops with it
  del config.model["uncertainty_head"]  # D3KE's kinematics' error scales
  return config
