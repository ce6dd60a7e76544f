"""The datasets training and ``experiments.build_data`` know, by config name."""

from d3ke_jax.data.d3ke_synthetic import D3keSynthetic
from d3ke_jax.data.movi import Movi

DATASETS = {"synthetic": D3keSynthetic, "movi": Movi}
