"""Body models: SMPL+H skinning and the virtual markers the ground truth is fitted to."""

from d3ke_jax.body.smplh import (SmplhModel, find_smplh, height, load_smplh, mass_and_height,
                                 mesh_volume, rest_pose, smplh_forward,
                                 smplh_points)
