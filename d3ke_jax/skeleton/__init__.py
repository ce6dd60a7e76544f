"""The skeletal model: OpenSim models as arrays, and forward kinematics as a pure function."""

from d3ke_jax.skeleton.kinematics import FKOutput, forward_kinematics
from d3ke_jax.skeleton.model import SkeletalModel, root_relative
from d3ke_jax.skeleton.osim import OsimError, default_model_path, load_osim
from d3ke_jax.skeleton.subset import (PredictionLayout, expand_coordinates, expand_scales,
                                      make_layout)
