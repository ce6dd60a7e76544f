"""``bench truth``'s subject: an SMPL+H body skinned into virtual markers (the bench itself
solves hundreds of frames twice and runs OpenSim: run it by hand)."""

import numpy as np
import pytest

from d3ke_jax.body import fake_smplh
from d3ke_jax.body import virtual_markers as vm
from d3ke_jax.data import movi_truth
from d3ke_jax.skeleton import default_model_path, load_osim
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


@pytest.mark.slow
def test_every_frame_of_a_skinned_chunk_converges():
  """One whole IK chunk (256 frames) of the subject through scaling, placement and IK: the
  model cannot follow skinned markers (7.4 mm RMS left), and every frame still converges
  (before the iterations took points along the undamped step: 70 frames not converged,
  the fitting and smoothing passes at their caps)."""
  _, _, static, static_names, motion, names = bench_truth.synthetic_subject(
      256, np.random.default_rng(0))
  truth = movi_truth.subject_truth(load_osim(default_model_path()), static, [motion], names,
                                   bench_truth.RATE, static_names=static_names)
  solved = truth.motions[0]
  assert 0.006 < np.median(np.sqrt(np.nanmean(solved.marker_errors**2, axis=1))) < 0.009
  assert np.all(solved.converged), np.nonzero(~solved.converged)[0]
