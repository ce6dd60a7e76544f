"""The skeletal model: OpenSim models as arrays, and forward kinematics as a pure function."""

from d3ke_jax.skeleton.kinematics import FKOutput, forward_kinematics
from d3ke_jax.skeleton.model import SkeletalModel
from d3ke_jax.skeleton.osim import OsimError, load_osim
