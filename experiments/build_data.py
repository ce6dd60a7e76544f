"""Builds a dataset: ``python -m experiments.build_data synthetic [--config tiny]`` (rendered
offline) or ``python -m experiments.build_data movi --manual_dir DIR`` (BML-MoVi from the
user's downloads of MoVi, AMASS and SMPL+H, found by name anywhere under DIR).

Writes TFDS array_record files under ``--data_dir`` (default ``data/tfds``) and prints the
build time, the number of frames per split and the size on disk. An interrupted MoVi build
run again with the same command reuses the subjects it finished.
"""

import os
import shlex
import sys
import time

import numpy as np
import PIL.Image
import PIL.ImageDraw
import tensorflow_datasets as tfds

from d3ke_jax import cli
from d3ke_jax.data import movi_files, records
from d3ke_jax.data.registry import DATASETS, quiet_tfds
from d3ke_jax.errors import UserError, did_you_mean
from d3ke_jax.io.atomic import atomic_path

DEFAULT_CONFIG = {"synthetic": "tiny", "movi": "256px"}


def directory_size(path):
  return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path)
             for f in files)


def main(argv=None):
  parser = cli.ArgumentParser(prog="python -m experiments.build_data", description=__doc__)
  parser.add_argument("dataset", choices=sorted(DATASETS))
  parser.add_argument("--config", help="builder config (default: " + ", ".join(
      f"{k}: {v}" for k, v in DEFAULT_CONFIG.items()) + "); " + "; ".join(
          f"{k}: " + ", ".join(c.name for c in b.BUILDER_CONFIGS) for k, b in DATASETS.items()))
  parser.add_argument("--data_dir", default=os.path.join("data", "tfds"))
  parser.add_argument("--preview", help="also write a PNG grid of frames from the train split")
  movi = parser.add_argument_group("movi")
  movi.add_argument("--manual_dir", help="the MoVi, AMASS and SMPL+H downloads (required)")
  movi.add_argument("--workers", type=cli.number(int, 1, inclusive=True),
                    help="subjects built in parallel processes (default: half the usable CPU "
                    "cores)")
  movi.add_argument("--cameras", help="a JSON calibration overriding the PG1/PG2 defaults")
  movi.add_argument("--beam_options", help="build with Apache Beam, e.g. "
                    "'--runner=DirectRunner' or Dataflow/Flink/Spark runner options")
  args = parser.parse_args(argv)
  args.config = args.config or DEFAULT_CONFIG[args.dataset]
  names = [c.name for c in DATASETS[args.dataset].BUILDER_CONFIGS]
  if args.config not in names:
    raise UserError(f"--config {args.config}: no such {args.dataset} config"
                    f"{did_you_mean(args.config, names)}")
  cli.check_writable_directory(args.data_dir, "--data_dir")
  if args.preview:
    if os.path.isdir(args.preview):
      raise UserError(f"{args.preview}: a directory, not a PNG file name (--preview)")
    cli.check_writable_directory(os.path.dirname(args.preview) or os.curdir, "--preview")
  start = time.perf_counter()
  builder = prepare(args)
  seconds = time.perf_counter() - start
  splits = {name: info.num_examples for name, info in builder.info.splits.items()}
  print(f"{builder.info.full_name} in {builder.data_dir}: {splits}; "
        f"{directory_size(builder.data_dir) / 2**20:.1f} MiB; built in {seconds:.0f} s")
  if args.preview:
    write_preview(builder.as_data_source()["train"], args.preview)
    print(f"wrote {args.preview}")


def prepare(args):
  """Builds ``args.dataset`` (a no-op when already built); returns the builder."""
  kwargs, download = {}, {}
  movi_flags = ("manual_dir", "workers", "cameras", "beam_options")
  if args.dataset == "movi":
    if not args.manual_dir:
      raise UserError("--manual_dir: required for movi (the directory holding the MoVi, "
                      "AMASS and SMPL+H downloads)")
    movi_files.check_manual_dir(args.manual_dir)
    kwargs = dict(workers=args.workers, cameras_path=args.cameras,
                  report=lambda line: print(f"skipped: {line}", file=sys.stderr))
    download["manual_dir"] = args.manual_dir
    if args.beam_options:
      from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
      download["beam_options"] = PipelineOptions(shlex.split(args.beam_options))
  else:
    given = [f"--{f}" for f in movi_flags if getattr(args, f) is not None]
    if given:
      raise UserError(f"{given[0]}: applies to movi only ({args.dataset} is generated)")
  with quiet_tfds():
    builder = DATASETS[args.dataset](config=args.config, data_dir=args.data_dir,
                                     file_format="array_record", **kwargs)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(**download))
  return builder


def write_preview(source, path, rows=2, columns=6):
  """A grid of frames, the middle one of clips spread over the split, with the stored 2D
  markers drawn on them."""
  clips = records.labels(source, ("clip",))["clip"]
  _, starts, counts = np.unique(clips, return_index=True, return_counts=True)
  picks = np.linspace(0, len(starts) - 1, rows * columns).round().astype(int)
  tiles = []
  for k in picks:
    record = records.decode(source[int(starts[k] + counts[k] // 2)])
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
