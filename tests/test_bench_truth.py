"""``bench truth``'s subject: an SMPL+H body skinned into virtual markers (the bench itself
solves hundreds of frames twice and runs OpenSim: run it by hand)."""

import numpy as np

from d3ke_jax.body import fake_smplh
from d3ke_jax.body import virtual_markers as vm
from experiments import bench_truth


def test_subject_is_skinned_from_smplh_in_a_z_up_world():
  skeleton, coords, static, static_names, motion, names = bench_truth.synthetic_subject(
      12, np.random.default_rng(0))
  assert coords.shape == (12, skeleton.num_coordinates)
  assert static.shape == (len(vm.STATIC_MARKER_NAMES), 3)
  assert static_names == vm.STATIC_MARKER_NAMES
  assert motion.shape == (12, len(vm.MARKER_NAMES), 3) and names == vm.MARKER_NAMES
  shown = fake_smplh.smplh_coordinates()
  hidden = [c for c in range(skeleton.num_coordinates) if c not in shown]
  for name in ("pro_sup_r", "subtalar_angle_l", "L5_S1_FE", "scapula_upward_rotation_r"):
    assert skeleton.coordinate_index(name) in hidden
  np.testing.assert_allclose(coords[:, hidden],
                             np.broadcast_to(np.array(skeleton.coordinate_defaults)[hidden],
                                             (12, len(hidden))), atol=1e-6)
  # z up: the head well above the heels in every frame; the static trial is y up.
  at = lambda name: motion[:, names.index(name)]
  assert np.all(at("HEAD")[:, 2] - at("LHEE")[:, 2] > 1.0)
  assert static[names.index("HEAD"), 1] - static[names.index("LHEE"), 1] > 1.0
