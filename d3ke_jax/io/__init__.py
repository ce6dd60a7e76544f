"""OpenSim file formats: .trc marker trajectories, .mot/.sto coordinate tables."""

from d3ke_jax.io.mot import MotError, MotionTable, read_mot, write_mot
from d3ke_jax.io.trc import MarkerTrajectories, TrcError, read_trc, write_trc
