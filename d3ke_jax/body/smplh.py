"""SMPL+H as a pure function: AMASS's "extended SMPL+H" ``model.npz`` and linear blend skinning.

``smplh_forward`` follows ``smplx.lbs.lbs``: shape blend of the template, joints regressed
from the shaped template, pose blend from (R - I) of joints 1.., rigid transforms composed
down the tree, skinning, then ``trans``. DMPLs are not modelled (the original zeroes them).
Units are metres; the model's canonical frame is y up, facing +z, the subject's left at +x.
"""

import functools
import glob
import os
from typing import Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax.errors import UserError
from d3ke_jax.io.npz import numbers, read_npz
from d3ke_jax.skeleton.kinematics import by_platform, compose_tree, level_schedule
from d3ke_jax.skeleton.rotations import rotvec_to_matrix

NUM_BETAS = 16
NUM_JOINTS = 52  # 22 body joints and 15 per hand
NUM_VERTICES = 6890
NUM_POSES = 3 * NUM_JOINTS
NUM_POSE_BLENDS = 9 * (NUM_JOINTS - 1)  # (R - I) of every joint but the root
KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
GENDERS = ("female", "male", "neutral")
# The original's subject mass: 78.11652702058652 kg for 0.07745817923272397 m^3 of zero-pose
# mesh (SMPLHModel.py:L149-159), about 1008.5 kg/m^3.
DENSITY = 78.11652702058652 / 0.07745817923272397


@flax.struct.dataclass
class SmplhModel:
  """One SMPL+H body model (one gender); leaves are NumPy arrays, cast to float32 when used."""
  v_template: np.ndarray  # (V, 3) rest vertices
  shapedirs: np.ndarray  # (V, 3, 16) shape blend shapes, one per beta
  posedirs: np.ndarray  # (V, 3, (J - 1) * 9) pose blend shapes over (R - I) of joints 1..
  J_regressor: np.ndarray  # (J, V) joints from vertices
  weights: np.ndarray  # (V, J) skinning weights
  faces: np.ndarray  # (F, 3) vertex indices
  parents: Tuple[int, ...] = flax.struct.field(pytree_node=False)  # root: -1
  gender: str = flax.struct.field(pytree_node=False)
  source: str = flax.struct.field(pytree_node=False)

  @property
  def num_vertices(self):
    return self.v_template.shape[0]

  @property
  def num_joints(self):
    return len(self.parents)


def load_smplh(path, gender=None):
  """Reads an extended SMPL+H ``model.npz`` (keys v_template, shapedirs, posedirs, J_regressor,
  weights, kintree_table, f); extra keys are ignored, shapedirs keep their first 16 columns.

  ``gender`` defaults to the name of the file's folder (``smplh/<gender>/model.npz``).
  Raises ``UserError`` naming the file and the key for a missing or damaged file, a missing
  key, a wrong shape or values that are not finite numbers. Nothing is unpickled: a
  regressor stored as a pickled sparse matrix is refused (``io.npz``).
  """
  path = os.fspath(path)
  arrays = read_npz(path, "SMPL+H model file", KEYS)
  table = numbers(path, "kintree_table", arrays["kintree_table"], integer=True)
  _check(path, "kintree_table", table.shape == (2, NUM_JOINTS), table,
         f"(2, {NUM_JOINTS}): SMPL+H's joints")
  parents = (-1,) + tuple(int(p) for p in table[0, 1:])
  if any(not 0 <= p < j for j, p in enumerate(parents[1:], 1)):
    raise UserError(f"{path}: kintree_table: a parent index comes after its child or is out of "
                    "range")
  expected = {"v_template": (NUM_VERTICES, 3), "posedirs": (NUM_VERTICES, 3, NUM_POSE_BLENDS),
              "J_regressor": (NUM_JOINTS, NUM_VERTICES), "weights": (NUM_VERTICES, NUM_JOINTS)}
  for key, shape in expected.items():
    numbers(path, key, arrays[key])
    _check(path, key, arrays[key].shape == shape, arrays[key], str(shape))
  shapedirs = numbers(path, "shapedirs", arrays["shapedirs"])
  _check(path, "shapedirs", shapedirs.ndim == 3 and shapedirs.shape[:2] == (NUM_VERTICES, 3)
         and shapedirs.shape[2] >= NUM_BETAS, shapedirs, f"({NUM_VERTICES}, 3, >= {NUM_BETAS})")
  faces = numbers(path, "f", arrays["f"], integer=True)
  _check(path, "f", faces.ndim == 2 and faces.shape[1] == 3 and faces.size > 0
         and faces.min() >= 0 and faces.max() < NUM_VERTICES, faces,
         f"(F, 3) indices below {NUM_VERTICES}")
  if gender is None:
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    gender = folder if folder in GENDERS else "neutral"
  f32 = lambda key: np.asarray(arrays[key], np.float32)
  return SmplhModel(v_template=f32("v_template"), shapedirs=f32("shapedirs")[:, :, :NUM_BETAS],
                    posedirs=f32("posedirs"), J_regressor=f32("J_regressor"),
                    weights=f32("weights"), faces=np.asarray(faces, np.int32), parents=parents,
                    gender=gender, source=path)


def _check(path, key, ok, array, expected):
  if not ok:
    raise UserError(f"{path}: {key!r} has shape {array.shape}, expected {expected}")


def find_smplh(root, gender):
  """The ``smplh/<gender>/model.npz`` under ``root`` (any depth; the first in sorted order)."""
  if gender not in GENDERS:
    raise UserError(f"unknown SMPL+H gender {gender!r} (choose from {', '.join(GENDERS)})")
  root = os.fspath(root)
  found = sorted(p for p in glob.glob(os.path.join(glob.escape(root), "**", gender, "model.npz"),
                                      recursive=True)
                 if os.path.basename(os.path.dirname(os.path.dirname(p))).lower() == "smplh")
  if not found:
    raise UserError(f"{root}: no SMPL+H model smplh/{gender}/model.npz found under it "
                    "(AMASS's extended SMPL+H models)")
  return found[0]


@jax.jit
def smplh_forward(model: SmplhModel, betas, poses, trans):
  """Posed mesh and joints: betas (16,), poses (T, 156) axis-angle, trans (T, 3) metres.

  Returns (vertices (T, V, 3), joints (T, J, 3)) in the frame of ``trans`` (float32).
  """
  shaped, rest_joints = rest_pose(model, betas)
  points = _posed(model.parents, shaped, model.posedirs, model.weights, rest_joints, poses, trans,
                  np.arange(model.num_joints))
  return points[:, :model.num_vertices], points[:, model.num_vertices:]


def smplh_points(model: SmplhModel, betas, poses, trans, vertex_ids=(), joint_ids=(),
                 chunk=256):
  """Only the posed vertices ``vertex_ids`` then joints ``joint_ids``: (T, K, 3) float32.

  Frames go through one compiled function in chunks of ``chunk`` (the last one padded), so
  long motions neither hold every vertex nor compile per length; only the selected vertices
  are skinned.
  """
  poses = jnp.asarray(poses, jnp.float32)
  trans = jnp.asarray(trans, jnp.float32)
  if poses.ndim != 2 or poses.shape[1] != 3 * model.num_joints or trans.shape != (
      poses.shape[0], 3):
    raise ValueError(f"smplh_points: poses (T, {3 * model.num_joints}) and trans (T, 3) "
                     f"expected, got {poses.shape} and {trans.shape}")
  vertex_ids = np.asarray(vertex_ids, np.int32).reshape(-1)
  joint_ids = np.asarray(joint_ids, np.int32).reshape(-1)
  rest = _selected_rest(model, jnp.asarray(betas, jnp.float32), vertex_ids)
  frames = poses.shape[0]
  padded = -(-max(frames, 1) // chunk) * chunk
  poses = jnp.pad(poses, ((0, padded - frames), (0, 0)))
  trans = jnp.pad(trans, ((0, padded - frames), (0, 0)))
  out = [_points_chunk(model.parents, rest, poses[s:s + chunk], trans[s:s + chunk], joint_ids)
         for s in range(0, padded, chunk)]
  return jnp.concatenate(out)[:frames]


@jax.jit
def _selected_rest(model, betas, vertex_ids):
  """Shaped rest vertices ``vertex_ids`` with their pose blend shapes and weights, and the
  rest joints."""
  shaped, rest_joints = rest_pose(model, betas)
  return (shaped[vertex_ids], jnp.asarray(model.posedirs)[vertex_ids],
          jnp.asarray(model.weights)[vertex_ids], rest_joints)


@functools.partial(jax.jit, static_argnums=0)
def _points_chunk(parents, rest, poses, trans, joint_ids):
  shaped, posedirs, weights, rest_joints = rest
  return _posed(parents, shaped, posedirs, weights, rest_joints, poses, trans, joint_ids)


def rest_pose(model: SmplhModel, betas):
  """The zero pose: the shaped template (V, 3) and the joints regressed from it (J, 3)."""
  betas = jnp.asarray(betas, jnp.float32)
  shaped = jnp.asarray(model.v_template) + jnp.einsum("vkb,b->vk", jnp.asarray(model.shapedirs),
                                                      betas)
  return shaped, jnp.asarray(model.J_regressor) @ shaped


def _posed(parents, shaped, posedirs, weights, rest_joints, poses, trans, joint_ids):
  """(T, K + len(joint_ids), 3): the K skinned vertices (rows of shaped, posedirs, weights),
  then the posed joints ``joint_ids``, plus ``trans``."""
  frames, num_joints = poses.shape[0], len(parents)
  rot = rotvec_to_matrix(jnp.asarray(poses, jnp.float32).reshape(frames, num_joints, 3))
  feature = (rot[:, 1:] - jnp.eye(3, dtype=rot.dtype)).reshape(frames, -1)
  num_points = shaped.shape[0]
  posedirs = jnp.asarray(posedirs)
  pose_offsets = feature @ posedirs.reshape(num_points * 3, posedirs.shape[-1]).T
  vertices = shaped + pose_offsets.reshape(frames, num_points, 3)
  world_rot, world_pos = _world_transforms(parents, rot, rest_joints)
  # Skinning transform of joint j: x -> R_j (x - J_j) + p_j, J_j its rest position.
  offset = world_pos - jnp.einsum("tjab,jb->tja", world_rot, rest_joints)
  weights = jnp.asarray(weights)
  blend_rot = jnp.einsum("kj,tjab->tkab", weights, world_rot)
  blend_offset = jnp.einsum("kj,tja->tka", weights, offset)
  skinned = jnp.einsum("tkab,tkb->tka", blend_rot, vertices) + blend_offset
  points = jnp.concatenate([skinned, world_pos[:, joint_ids]], axis=1)
  return points + jnp.asarray(trans, jnp.float32)[:, None]


def _world_transforms(parents, rot, rest_joints):
  """World rotations (T, J, 3, 3) and positions (T, J, 3) of the joints, composed root to leaf
  as the skeletal model's bodies are (``kinematics.compose_tree``)."""
  frames, num_joints = rot.shape[:2]
  parent_pos = jnp.concatenate([jnp.zeros((1, 3), rest_joints.dtype),
                                rest_joints[np.array(parents[1:])]])
  local_pos = (rest_joints - parent_pos).astype(rot.dtype)  # (J, 3), the same in every frame
  # As components, batch last: 9 rotation then 3 position entries, each (J, T).
  local = jnp.concatenate([rot.reshape(frames, num_joints, 9).T,
                           jnp.broadcast_to(local_pos.T[:, :, None], (3, num_joints, frames))])
  schedule = level_schedule(_levels(parents), parents, tuple(range(num_joints)))
  compose = lambda local, cpu: compose_tree(local, schedule, cpu=cpu)
  world = jnp.stack(by_platform(compose, None, tuple(local))).T  # (T, J, 12)
  return world[..., :9].reshape(frames, num_joints, 3, 3), world[..., 9:]


@functools.lru_cache(maxsize=8)
def _levels(parents):
  """Joints grouped by depth in the tree (``level_schedule``'s input)."""
  depth = []
  for parent in parents:
    depth.append(0 if parent < 0 else depth[parent] + 1)
  return tuple(tuple(j for j, d in enumerate(depth) if d == level)
               for level in range(max(depth) + 1))


def mesh_volume(vertices, faces):
  """Enclosed volume (m^3) of a closed, outward-oriented triangle mesh: vertices (..., V, 3)."""
  corners = jnp.asarray(vertices)[..., jnp.asarray(faces), :]  # (..., F, 3, 3)
  triple = jnp.sum(corners[..., 0, :] * jnp.cross(corners[..., 1, :], corners[..., 2, :]), -1)
  return jnp.sum(triple, axis=-1) / 6


def height(vertices):
  """Extent along y (m) of vertices (..., V, 3): the stature of a y-up zero-pose mesh."""
  y = jnp.asarray(vertices)[..., 1]
  return jnp.max(y, axis=-1) - jnp.min(y, axis=-1)


def mass_and_height(model: SmplhModel, betas):
  """The original's subject mass (kg: ``DENSITY`` times the mesh volume) and height (m) of the
  zero-pose mesh with ``betas``."""
  shaped, _ = rest_pose(model, betas)
  return DENSITY * mesh_volume(shaped, model.faces), height(shaped)
