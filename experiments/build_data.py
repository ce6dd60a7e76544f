"""Builds a dataset offline: ``python -m experiments.build_data synthetic [--config tiny]``.

Writes TFDS array_record files under ``--data_dir`` (default ``data/tfds``) and prints the
build time, the number of frames per split and the size on disk.
"""

import os
import time

import numpy as np
import PIL.Image
import PIL.ImageDraw

from d3ke_jax import cli
from d3ke_jax.data import pipeline
from d3ke_jax.data.d3ke_synthetic import D3keSynthetic
from d3ke_jax.errors import UserError, did_you_mean
from d3ke_jax.io.atomic import atomic_path

DATASETS = {"synthetic": D3keSynthetic}


def directory_size(path):
  return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path)
             for f in files)


def main(argv=None):
  parser = cli.ArgumentParser(prog="python -m experiments.build_data", description=__doc__)
  parser.add_argument("dataset", choices=sorted(DATASETS))
  parser.add_argument("--config", default="tiny",
                      help="builder config: " + ", ".join(
                          c.name for c in D3keSynthetic.BUILDER_CONFIGS))
  parser.add_argument("--data_dir", default=os.path.join("data", "tfds"))
  parser.add_argument("--preview", help="also write a PNG grid of frames from the train split")
  args = parser.parse_args(argv)
  names = [c.name for c in DATASETS[args.dataset].BUILDER_CONFIGS]
  if args.config not in names:
    raise UserError(f"--config {args.config}: no such {args.dataset} config"
                    f"{did_you_mean(args.config, names)}")
  cli.check_writable_directory(args.data_dir, "--data_dir")
  if args.preview:
    if os.path.isdir(args.preview):
      raise UserError(f"{args.preview}: a directory, not a PNG file name (--preview)")
    cli.check_writable_directory(os.path.dirname(args.preview) or os.curdir, "--preview")
  builder = DATASETS[args.dataset](config=args.config, data_dir=args.data_dir,
                                   file_format="array_record")
  start = time.perf_counter()
  builder.download_and_prepare()
  seconds = time.perf_counter() - start
  splits = {name: info.num_examples for name, info in builder.info.splits.items()}
  print(f"{builder.info.full_name} in {builder.data_dir}: {splits}; "
        f"{directory_size(builder.data_dir) / 2**20:.1f} MiB; built in {seconds:.0f} s")
  if args.preview:
    write_preview(builder.as_data_source()["train"], args.preview)
    print(f"wrote {args.preview}")


def write_preview(source, path, rows=2, columns=6):
  """A grid of frames, one per clip, with the stored 2D markers drawn on them."""
  frames_per_clip = int(np.sum(pipeline.labels(source, ("clip",))["clip"] == 0))
  tiles = []
  for k in range(rows * columns):
    record = pipeline.decode(source[(k * 7 % (len(source) // frames_per_clip)) * frames_per_clip
                                    + frames_per_clip // 2])
    image = PIL.Image.fromarray(record["image"]).resize((128, 128))
    draw = PIL.ImageDraw.Draw(image)
    zoom = 128 / record["image"].shape[0]
    for u, v in record["markers_2d"] * zoom:
      draw.point((float(u), float(v)), fill=(255, 255, 0))
    tiles.append(np.asarray(image))
  grid = np.concatenate([np.concatenate(tiles[r * columns:(r + 1) * columns], 1)
                         for r in range(rows)], 0)
  with atomic_path(path) as tmp:
    PIL.Image.fromarray(grid).save(tmp, format="PNG")


if __name__ == "__main__":
  cli.run(main)
