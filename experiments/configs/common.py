"""Defaults shared by the configs: the paper's loss weights, AdamW, and both stages."""

import ml_collections


def optimizer(learning_rate, end_learning_rate, weight_decay=1e-3, final_epochs=0,
              final_learning_rate=0.0, final_end_learning_rate=0.0):
  """AdamW, linear decay; ``final_epochs`` > 0 adds a second decay from a lower rate."""
  return ml_collections.ConfigDict(dict(
      learning_rate=learning_rate, end_learning_rate=end_learning_rate,
      weight_decay=weight_decay, final_epochs=final_epochs,
      final_learning_rate=final_learning_rate, final_end_learning_rate=final_end_learning_rate))


def paper_loss():
  return ml_collections.ConfigDict(
      {"lambda_joint": 1.0, "lambda_marker": 2.0, "lambda_body": 0.1, "lambda_angle": 0.06})


def _run(stage, batch_size, epochs):
  config = ml_collections.ConfigDict()
  config.stage = stage
  config.loss = paper_loss()
  config.batch_size = batch_size
  config.epochs = epochs
  config.seed = 0
  config.log_every_steps = 50
  config.checkpoint_every_steps = 500
  config.max_steps = -1  # stop early (tests, smoke runs); -1 runs every epoch
  return config


def per_frame(dataset, dataset_config, image_model, batch_size, epochs):
  """Stage 1: the per-frame network (``image_model``: ResNeXt sizes and head) on images."""
  config = _run("per_frame", batch_size, epochs)
  config.dataset = ml_collections.ConfigDict(
      {"name": dataset, "config": dataset_config, "data_dir": "data/tfds"})
  # The skeletal model (.osim) of the head, the skeletal layer, the loss and evaluation;
  # "" is the packaged d3ke_full_body.osim. Its coordinates, bodies, joints and markers
  # must be those of the dataset's labels (checked at start-up). Stage 2 uses stage 1's.
  config.model_path = ""
  config.model = ml_collections.ConfigDict(dict(image_model, share_mirrored=True))
  # Images are normalised as torchvision's ImageNet models expect ("imagenet"; "centred",
  # [-0.5, 0.5], is what runs from before this key were trained with). ``pretrained``: a
  # torchvision ``resnext50_32x4d`` state dict (.pth, or .npz of the same keys) whose weights
  # start the backbone (read when a run starts, not on resuming); "" starts from scratch.
  config.model.input_normalisation = "imagenet"
  config.model.pretrained = ""
  # A box head: where the person is in the crop, learnt beside the kinematics from features
  # it does not train (the paper's objective is unchanged); it lets experiments.infer
  # steer the crops onto the person.
  config.model.box_head = True
  # An uncertainty head: the Laplace scale of each output's error, trained likewise on
  # features it does not train; calibrated on the validation split (calibration.json) it
  # gives experiments.evaluate's coverage and experiments.infer's standard deviations.
  config.model.uncertainty_head = True
  config.augmentation = True
  # Training frames are read, decoded and augmented by ``input_workers`` threads (0: one per
  # usable CPU core), or as many processes where ``input_processes``: they share no GIL with
  # the trainer, for many-core hosts where threads stop scaling; they start once per epoch,
  # in a few seconds. The batches are the same either way; both may change on resuming.
  config.input_workers = 0
  config.input_processes = False
  return config


RESNEXT50 = {"stage_sizes": (3, 4, 6, 3), "groups": 32, "width_per_group": 4,
             "head_hidden": 0, "dtype": "float32"}

SEQUENCE_OPTIONS = {  # the sequence networks' sizes (see d3ke_jax.nets.sequence)
    "lstm": {"hidden": 128, "layers": 3, "dropout": 0.1},
    "tcn": {"channels": 256, "dilations": (1, 3, 9, 27, 81), "dropout": 0.25, "causal": False},
    "transformer": {"hidden": 256, "heads": 8, "feed_forward": 512, "layers": 4,
                    "dropout": 0.1},
}


def sequence(network):
  """Stage 2 as in the paper: batch 128, 243-frame windows, 50 epochs, lr 1e-3 -> 5e-6.
  The data and the layout come from the stage-1 run in ``per_frame_workdir``."""
  config = _run("sequence", 128, 50)
  config.per_frame_workdir = ""  # required: the stage-1 run's workdir
  config.window = 243
  config.window_stride = 1
  config.model = ml_collections.ConfigDict(
      {"network": network, "options": dict(SEQUENCE_OPTIONS[network])})
  # Stage 1's uncertainty (where its run has the head) as input channels, and an uncertainty
  # head of its own on the sequence network's features, trained on features it does not
  # train and calibrated on the validation split (calibration.json), as stage 1's.
  config.model.uncertainty_head = True
  config.optimizer = optimizer(1e-3, 5e-6)
  return config
