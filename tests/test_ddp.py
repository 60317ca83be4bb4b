"""DDP under torchrun: 2 CPU processes (gloo) train exactly like one process with the same global
batch, keep their weights in sync, write files from rank 0 only, and score every val image once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from humanseg.builder import load_config
from humanseg.engine.evaluate import evaluate
from humanseg.engine.train import train

TESTS_DIR = Path(__file__).resolve().parent
TORCHRUN = Path(sys.executable).with_name("torchrun")

WORKER = """\
import json, os, sys
import torch
sys.path.insert(0, {tests_dir!r})
from test_ddp import TinySegNet
from humanseg.models import MODELS
MODELS["TinySegNet"] = TinySegNet
from humanseg.builder import load_config
from humanseg.engine.train import train

config, save_dir, out_dir = sys.argv[1:4]
result = train(load_config(config), save_dir, seed=0, save_interval=3, log_iters=1,
               do_eval=True, progress=False)
rank = os.environ["RANK"]
torch.save(result.model.state_dict(), os.path.join(out_dir, f"rank{{rank}}.pt"))
with open(os.path.join(out_dir, f"rank{{rank}}.json"), "w") as handle:
    json.dump({{"losses": result.losses, "evaluations": result.evaluations}}, handle)
"""


class TinySegNet(torch.nn.Module):
    """A small convolutional segmenter without batch norm (so DDP equals one big batch exactly)."""

    size_divisor = 1

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, num_classes, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


@pytest.mark.skipif(not TORCHRUN.is_file(), reason=f"torchrun not found beside {sys.executable}")
@pytest.mark.usefixtures("one_thread")
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_blob_dataset, blob_config
) -> None:
    from humanseg.models import MODELS

    root = make_blob_dataset(tmp_path / "blobs", train=8, val=5)
    config = tmp_path / "tiny.yml"
    config.write_text(blob_config(root, iters=3, batch_size=2, learning_rate=0.05,
                                  model="{type: TinySegNet, num_classes: 2}", loss="ce"))
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(tests_dir=str(TESTS_DIR)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(worker), str(config),
         str(tmp_path / "ddp"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)  # in sync, bit for bit
    saved = torch.load(tmp_path / "ddp" / "iter_3" / "model.pt", weights_only=True)
    assert all(torch.equal(rank0[name], saved[name]) for name in rank0)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["best_model", "iter_3"]

    # One process, batch 2 x 2 processes = 4: the same samples, so the same weights.
    # (One thread, as each torchrun worker has, so that float results are comparable.)
    monkeypatch.setitem(MODELS, "TinySegNet", TinySegNet)
    single = train(load_config(config), tmp_path / "single", batch_size=4, seed=0,
                   save_interval=3, log_iters=1, progress=False)
    single_state = single.model.state_dict()
    for name, value in rank0.items():
        torch.testing.assert_close(value, single_state[name], rtol=1e-5, atol=1e-6)
    logged = json.loads((tmp_path / "rank0.json").read_text())
    ddp_losses = [entry["loss"] for entry in logged["losses"]]
    assert ddp_losses == pytest.approx([entry["loss"] for entry in single.losses], rel=1e-5)

    # The metrics gathered across ranks equal one process scoring all 5 val images.
    model = TinySegNet(2)
    model.load_state_dict(rank0)
    cfg = load_config(config)
    from humanseg.data import build_dataset

    expected = evaluate(model, build_dataset(cfg["val_dataset"]), num_classes=2)
    (evaluation,) = logged["evaluations"]
    assert evaluation["miou"] == pytest.approx(expected["miou"], abs=1e-12)
    assert evaluation["connectivity"] == pytest.approx(expected["connectivity"], abs=1e-12)
