"""Builds a dataset offline: ``python -m experiments.build_data synthetic [--config tiny]``.

Writes TFDS array_record files under ``--data_dir`` (default ``data/tfds``) and prints the
build time, the number of frames per split and the size on disk.
"""

import argparse
import os
import time

from d3ke_jax.data.d3ke_synthetic import D3keSynthetic

DATASETS = {"synthetic": D3keSynthetic}


def directory_size(path):
  return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path)
             for f in files)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m experiments.build_data", description=__doc__)
  parser.add_argument("dataset", choices=sorted(DATASETS))
  parser.add_argument("--config", default="tiny",
                      help="builder config: " + ", ".join(c.name for c in D3keSynthetic.BUILDER_CONFIGS))
  parser.add_argument("--data_dir", default=os.path.join("data", "tfds"))
  args = parser.parse_args(argv)
  names = [c.name for c in DATASETS[args.dataset].BUILDER_CONFIGS]
  if args.config not in names:
    parser.error(f"unknown config {args.config!r} for {args.dataset}; choose from {names}")
  builder = DATASETS[args.dataset](config=args.config, data_dir=args.data_dir,
                                   file_format="array_record")
  start = time.perf_counter()
  builder.download_and_prepare()
  seconds = time.perf_counter() - start
  splits = {name: info.num_examples for name, info in builder.info.splits.items()}
  print(f"{builder.info.full_name} in {builder.data_dir}: {splits}; "
        f"{directory_size(builder.data_dir) / 2**20:.1f} MiB; built in {seconds:.0f} s")
  return builder


if __name__ == "__main__":
  main()
