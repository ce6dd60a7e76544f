"""The multi-step baseline beside ``synthetic_tiny``: the same small ResNeXt, 64-px data and
optimisation, regressing markers (see ``cms``)."""

from experiments.configs import cms, synthetic_tiny


def get_config():
  return cms.markers_only(synthetic_tiny.get_config())
