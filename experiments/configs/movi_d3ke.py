"""Per-frame D3KE on BML-MoVi with the paper's hyperparameters: ResNeXt-50 (32x4d), batch
64, AdamW (weight decay 1e-3), lr 5e-4 -> 3.33e-5 over 28 epochs then 3.33e-6 -> 1e-6
over 2, lambda = 1.0, 2.0, 0.1, 0.06 (joint, marker, body, angle).

The paper starts from ImageNet weights: ``--config.model.pretrained=PATH`` names torchvision's
``resnext50_32x4d`` state dict (``.pth``, which needs PyTorch, or a ``.npz`` of its keys); the
input is normalised as torchvision's (``model.input_normalisation``, see ``common.per_frame``).
"""

from experiments.configs import common


def get_config():
  config = common.per_frame("movi", "256px", common.RESNEXT50, batch_size=64, epochs=30)
  # The MoVi, AMASS and SMPL+H downloads, needed until the dataset is built in data_dir
  # (``python -m experiments.build_data movi --manual_dir DIR`` builds it on its own).
  config.dataset.manual_dir = ""
  config.optimizer = common.optimizer(5e-4, 3.33e-5, weight_decay=1e-3, final_epochs=2,
                                      final_learning_rate=3.33e-6, final_end_learning_rate=1e-6)
  return config
