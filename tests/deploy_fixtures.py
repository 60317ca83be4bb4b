"""Test helpers for the deployment tests: a randomly initialised model saved with its config."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from humanseg.models import build_model

LITE_SPEC = {"type": "PPHumanSegLite", "num_classes": 2}
HRNET_SMALL_SPEC = {
    "type": "FCN",
    "backbone": {"type": "HRNet_W18_Small_V1"},
    "num_classes": 2,
    "backbone_indices": [-1],
}


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """He-normal weights, BatchNorm statistics taken from one random batch: varied, unsaturated."""
    torch.manual_seed(seed)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    for module in batch_norms:
        module.weight.data.uniform_(0.5, 1.5)
        module.bias.data.uniform_(-0.5, 0.5)
        module.momentum = 1.0  # the next forward pass sets the running statistics outright
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 64, 64))
    for module in batch_norms:
        module.momentum = 0.1
    return model.eval()


def write_model(
    folder: Path, spec: dict | None = None, input_size: tuple[int, int] = (64, 96)
) -> tuple[Path, Path]:
    """Save a random model (`model.pt`) and a config resizing inputs to `input_size` (H, W)."""
    spec = spec or LITE_SPEC
    height, width = input_size
    config = {
        "model": spec,
        "val_dataset": {
            "type": "FolderDataset",
            "dataset_root": str(folder),
            "num_classes": 2,
            "mode": "val",
            "transforms": [
                {"type": "Resize", "target_size": [width, height]},
                {"type": "Normalize"},
            ],
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    config_path, model_path = folder / "model.yml", folder / "model.pt"
    config_path.write_text(yaml.safe_dump(config))
    torch.save(randomise(build_model(spec)).state_dict(), model_path)
    return config_path, model_path
