"""Training engine: schedule and optimizer semantics, checkpoints, data order, end to end."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from humanseg.engine import checkpoint
from humanseg.engine.sampling import SeededSamples, ShuffledBatches
from humanseg.errors import HumanSegError
from humanseg.optim import build_optimizer, build_scheduler, learning_rate_curve

pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------- learning-rate schedule


def poly_config(**extra: object) -> dict:
    """A config with PaddleSeg's PolynomialDecay (base 0.1, end 0, power 0.9) plus `extra`."""
    return {"lr_scheduler": {"type": "PolynomialDecay", "learning_rate": 0.1, "end_lr": 0.0,
                             "power": 0.9, **extra}}


def test_polynomial_decay_matches_paddleseg_formula() -> None:
    curve = learning_rate_curve(poly_config(), total_iters=10)
    # (base - end) * (1 - step / decay_steps) ** power + end, decay_steps = iters = 10
    assert curve.learning_rate(0) == pytest.approx(0.1)
    assert curve.learning_rate(5) == pytest.approx(0.1 * 0.5**0.9)  # 0.0535887
    assert curve.learning_rate(10) == pytest.approx(0.0)
    assert curve.learning_rate(12) == pytest.approx(0.0)  # held at end_lr past decay_steps
    # PaddleSeg's defaults: power 0.9, end_lr 0; cycle restarts at the next multiple of decay_steps
    default = learning_rate_curve(
        {"lr_scheduler": {"type": "PolynomialDecay", "learning_rate": 0.1}}, total_iters=10)
    assert default.learning_rate(5) == pytest.approx(0.1 * 0.5**0.9)
    cyclic = learning_rate_curve(poly_config(cycle=True, power=1.0), total_iters=10)
    assert cyclic.learning_rate(15) == pytest.approx(0.1 * (1 - 15 / 20))


def test_warmup_is_linear_then_poly_over_the_remaining_iterations() -> None:
    curve = learning_rate_curve(poly_config(warmup_iters=2, warmup_start_lr=0.0), total_iters=10)
    assert [curve.learning_rate(step) for step in (0, 1, 2)] == pytest.approx([0.0, 0.05, 0.1])
    # decay_steps = 10 - 2 = 8; step 6 is 4 steps into the decay
    assert curve.learning_rate(6) == pytest.approx(0.1 * (1 - 4 / 8) ** 0.9)


def test_cosine_and_legacy_forms() -> None:
    cosine = learning_rate_curve(
        {"lr_scheduler": {"type": "CosineAnnealingDecay", "learning_rate": 0.1, "eta_min": 0.02}},
        total_iters=10,
    )
    assert cosine.learning_rate(5) == pytest.approx(0.02 + 0.08 * 0.5)
    legacy = learning_rate_curve(
        {"learning_rate": {"value": 0.01, "decay": {"type": "poly", "power": 1.0}}}, total_iters=4
    )
    assert legacy.learning_rate(1) == pytest.approx(0.0075)
    overridden = learning_rate_curve(poly_config(), total_iters=10, override_lr=0.2)
    assert overridden.learning_rate(5) == pytest.approx(0.2 * 0.5**0.9)


def test_scheduler_follows_curve_and_can_start_at_a_resumed_iteration() -> None:
    curve = learning_rate_curve(poly_config(), total_iters=10)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer({"type": "sgd", "momentum": 0.9}, [parameter], curve.base_lr)
    scheduler = build_scheduler(optimizer, curve)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.7**0.9)
    # A scheduler built at iteration 3 (on an optimizer whose lr is something else, as a loaded
    # optimizer state's is) continues the same curve.
    fresh_optimizer = build_optimizer({"type": "sgd"}, [parameter], 0.5)
    fresh = build_scheduler(fresh_optimizer, curve, start_iteration=3)
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.7**0.9)
    fresh_optimizer.step()
    fresh.step()
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.6**0.9)
    # Built for a new total of 20 iterations at iteration 3: poly over 20, not over 10.
    longer = build_scheduler(fresh_optimizer, learning_rate_curve(poly_config(), 20), 3)
    assert longer.get_last_lr() == pytest.approx([0.1 * (1 - 3 / 20) ** 0.9])
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 3 / 20) ** 0.9)


def test_optimizer_types_and_errors() -> None:
    parameters = [torch.nn.Parameter(torch.zeros(2))]
    sgd = build_optimizer({"type": "sgd", "weight_decay": 4e-5}, parameters, 0.1)
    assert isinstance(sgd, torch.optim.SGD)  # PaddleSeg's sgd is Momentum, 0.9 by default
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["weight_decay"] == 4e-5
    assert build_optimizer({"type": "SGD"}, parameters, 0.1).defaults["momentum"] == 0.0
    adamw = build_optimizer({"type": "AdamW", "beta1": 0.8}, parameters, 1e-3)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.8, 0.999)
    with pytest.raises(HumanSegError, match=r"optimizer\.momentun: unknown key"):
        build_optimizer({"type": "sgd", "momentun": 0.9}, parameters, 0.1)
    with pytest.raises(HumanSegError, match="optimizer.type.*rmsprop"):
        build_optimizer({"type": "rmsprop"}, parameters, 0.1)
    with pytest.raises(HumanSegError, match="lr_scheduler.type.*StepDecay"):
        learning_rate_curve({"lr_scheduler": {"type": "StepDecay"}}, total_iters=5)


# ---------------------------------------------------------------- checkpoints


def toy_state(value: float) -> dict[str, torch.Tensor]:
    """A small state_dict whose weights are all `value`."""
    return {"weight": torch.full((2, 2), value), "bias": torch.zeros(2)}


def train_state(iteration: int) -> dict:
    """A minimal training state as the engine writes it."""
    return {"iteration": iteration, "seed": 1, "optimizer": {}, "scheduler": {},
            "rng": checkpoint.capture_rng_state()}


def test_checkpoints_are_complete_and_only_the_last_n_are_kept(tmp_path: Path) -> None:
    for iteration in (10, 20, 30):
        checkpoint.save_checkpoint(
            tmp_path, iteration, toy_state(iteration), train_state(iteration), keep=2)
    assert [it for it, _ in checkpoint.list_checkpoints(tmp_path)] == [20, 30]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_20", "iter_30"]  # no temp dirs
    weights = torch.load(tmp_path / "iter_30" / "model.pt", weights_only=True)
    assert torch.equal(weights["weight"], torch.full((2, 2), 30.0))
    assert checkpoint.load_train_state(tmp_path / "iter_30")["iteration"] == 30


def test_saving_an_existing_iteration_again_replaces_it_whole(tmp_path: Path) -> None:
    checkpoint.save_checkpoint(tmp_path, 10, toy_state(1.0), train_state(10), keep=3)
    checkpoint.save_checkpoint(tmp_path, 10, toy_state(2.0), train_state(10), keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_10"]
    weights = torch.load(tmp_path / "iter_10" / "model.pt", weights_only=True)
    assert torch.equal(weights["weight"], torch.full((2, 2), 2.0))


def test_a_failed_write_leaves_no_partial_checkpoint(tmp_path: Path, monkeypatch) -> None:
    checkpoint.save_checkpoint(tmp_path, 10, toy_state(1.0), train_state(10), keep=1)
    real_save = torch.save

    def failing_save(obj: object, path: object) -> None:
        if isinstance(obj, dict) and "optimizer" in obj:
            raise OSError("disk full")
        real_save(obj, path)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(tmp_path, 20, toy_state(2.0), train_state(20), keep=1)
    # The old checkpoint is intact, the new one does not exist, nothing temporary is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_10"]
    weights = torch.load(tmp_path / "iter_10" / "model.pt", weights_only=True)
    assert torch.equal(weights["weight"], torch.full((2, 2), 1.0))


def test_averaged_state_dicts_are_the_elementwise_mean_and_keep_integer_buffers() -> None:
    first = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(7), "h": torch.tensor([0.5]).half()}
    second = {"w": torch.tensor([3.0, -2.0]), "n": torch.tensor(9), "h": torch.tensor([1.5]).half()}
    third = {"w": torch.tensor([2.0, 3.0]), "n": torch.tensor(1), "h": torch.tensor([2.5]).half()}
    averaged = checkpoint.average_state_dicts([first, second, third])
    assert torch.equal(averaged["w"], torch.tensor([2.0, 1.0]))  # (1+3+2)/3, (2-2+3)/3
    assert averaged["h"].dtype == torch.float16 and float(averaged["h"]) == 1.5
    assert int(averaged["n"]) == 7  # taken from the first model, not averaged
    assert averaged["w"] is not first["w"]
    with pytest.raises(HumanSegError, match="model 2 has other keys or shapes"):
        checkpoint.average_state_dicts([first, {**second, "w": torch.zeros(3)}])
    with pytest.raises(HumanSegError, match="no models given"):
        checkpoint.average_state_dicts([])


def test_rng_state_round_trip() -> None:
    state = checkpoint.capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_resume_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(HumanSegError, match="no such checkpoint directory"):
        checkpoint.resolve_resume_dir(tmp_path / "iter_5")
    (tmp_path / "iter_5").mkdir()
    torch.save(toy_state(0.0), tmp_path / "iter_5" / "model.pt")
    with pytest.raises(HumanSegError, match="train_state.pt is missing"):
        checkpoint.resolve_resume_dir(tmp_path / "iter_5")
    (tmp_path / "iter_5" / "train_state.pt").write_bytes(b"not a checkpoint")
    directory = checkpoint.resolve_resume_dir(tmp_path / "iter_5" / "model.pt")
    with pytest.raises(HumanSegError, match="train_state.pt: not a readable training state"):
        checkpoint.load_train_state(directory)


# ---------------------------------------------------------------- data order


def take(sampler: ShuffledBatches, count: int) -> list:
    """The first `count` batches of an endless sampler."""
    return list(itertools.islice(iter(sampler), count))


def test_ranks_split_each_global_batch_of_the_single_process_order() -> None:
    single = take(ShuffledBatches(10, batch_size=4, seed=3), 6)
    rank0 = take(ShuffledBatches(10, batch_size=2, seed=3, rank=0, world_size=2), 6)
    rank1 = take(ShuffledBatches(10, batch_size=2, seed=3, rank=1, world_size=2), 6)
    assert [a + b for a, b in zip(rank0, rank1, strict=True)] == single
    # 10 samples, global batch 4: 2 batches per epoch, 8 distinct indices per epoch
    for epoch in range(3):
        indices = [index for batch in single[2 * epoch: 2 * epoch + 2] for index, _ in batch]
        assert len(set(indices)) == 8
    seeds = [seed for batch in single for _, seed in batch]
    assert len(set(seeds)) == len(seeds)  # every sample draw gets its own augmentation seed


def test_starting_at_iteration_k_replays_the_rest_of_the_order() -> None:
    full = take(ShuffledBatches(9, batch_size=2, seed=7), 11)
    resumed = take(ShuffledBatches(9, batch_size=2, seed=7, start_iteration=5), 6)
    assert resumed == full[5:]


def test_a_dataset_smaller_than_a_global_batch_is_an_error() -> None:
    with pytest.raises(HumanSegError, match="3 samples, fewer than one batch of 4"):
        ShuffledBatches(3, batch_size=2, seed=0, world_size=2)


class RandomDataset(torch.utils.data.Dataset):
    """Returns draws from the global generators, like an augmenting dataset does."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seeded_samples_are_reproducible_and_leave_global_streams_alone() -> None:
    samples = SeededSamples(RandomDataset())
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    first = samples[(2, 99)]
    after = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == after
    random.seed(5)  # a different global state does not change the sample
    assert samples[(2, 99)] == first
    assert samples[(2, 100)] != first


# ---------------------------------------------------------------- end to end

ITERS = 40


@pytest.fixture(scope="module")
def blob_root(tmp_path_factory: pytest.TempPathFactory, make_blob_dataset) -> Path:
    """24 training and 8 validation blob images (64x64)."""
    return make_blob_dataset(tmp_path_factory.mktemp("blobs"), train=24, val=8)


@pytest.fixture(scope="module")
def trained(
    blob_root: Path, tmp_path_factory: pytest.TempPathFactory, blob_config, one_thread: None
) -> tuple[dict, Path, object]:
    """One uninterrupted 40-iteration run of PPHumanSegLite with CE + SC loss, eval every 20."""
    from humanseg.builder import load_config
    from humanseg.engine.train import train

    config_path = blob_root / "blobs.yml"
    config_path.write_text(blob_config(blob_root, iters=ITERS, learning_rate=0.1))
    cfg = load_config(config_path)
    save_dir = tmp_path_factory.mktemp("run")
    result = train(cfg, save_dir, save_interval=20, log_iters=10, seed=0, do_eval=True,
                   use_vdl=True, keep_checkpoint_max=2, progress=False)
    return cfg, save_dir, result


def test_training_lowers_the_loss_and_raises_miou(trained) -> None:
    _, save_dir, result = trained
    losses = [entry["loss"] for entry in result.losses]
    assert [entry["iter"] for entry in result.losses] == [10, 20, 30, 40]
    assert losses[-1] < 0.5 * losses[0]
    terms = set(result.losses[0]) - {"iter", "lr", "loss"}
    assert len(terms) == 2 and any("SemanticConnectivity" in name for name in terms)
    first, last = result.evaluations[0], result.evaluations[-1]
    assert (first["iter"], last["iter"]) == (20, 40)
    assert last["miou"] > first["miou"] + 0.2 and last["miou"] > 0.7
    # The learning rate follows the poly schedule: lr of iteration 10 is used at step index 9.
    assert result.losses[0]["lr"] == pytest.approx(0.1 * (1 - 9 / ITERS) ** 0.9)


def test_run_writes_checkpoints_best_model_and_tensorboard(trained) -> None:
    _, save_dir, result = trained
    assert sorted(p.name for p in save_dir.iterdir()) == [
        "best_model", "iter_20", "iter_40", "tensorboard"]
    best = json.loads((save_dir / "best_model" / "metrics.json").read_text())
    assert best["iter"] == result.best_iter
    assert best["miou"] == pytest.approx(max(e["miou"] for e in result.evaluations))
    model_file = torch.load(save_dir / "best_model" / "model.pt", weights_only=True)
    assert set(model_file) == set(result.model.state_dict())  # a plain state_dict
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(save_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"Train/loss", "Train/lr", "Evaluate/miou", "Evaluate/connectivity"} <= tags
    assert [event.step for event in events.Scalars("Evaluate/miou")] == [20, 40]


def test_resume_from_a_mid_checkpoint_is_bit_for_bit(trained, tmp_path: Path) -> None:
    from humanseg.engine.train import train

    cfg, save_dir, _ = trained
    resumed = train(cfg, tmp_path, resume_model=str(save_dir / "iter_20"), save_interval=20,
                    log_iters=10, do_eval=False, progress=False)
    assert resumed.seed == 0  # taken from the checkpoint
    uninterrupted = torch.load(save_dir / "iter_40" / "model.pt", weights_only=True)
    continued = torch.load(tmp_path / "iter_40" / "model.pt", weights_only=True)
    assert all(torch.equal(uninterrupted[name], continued[name]) for name in uninterrupted)
    first_state = checkpoint.load_train_state(save_dir / "iter_40")
    second_state = checkpoint.load_train_state(tmp_path / "iter_40")
    assert torch.equal(first_state["rng"]["torch"], second_state["rng"]["torch"])


def test_resume_with_more_iters_follows_the_new_poly_schedule(trained, tmp_path: Path) -> None:
    from humanseg.engine.train import train

    cfg, save_dir, _ = trained
    resumed = train(cfg, tmp_path, resume_model=str(save_dir / "iter_20"), iters=24,
                    log_iters=1, do_eval=False, progress=False)
    assert [entry["iter"] for entry in resumed.losses] == [21, 22, 23, 24]
    # Iteration k uses step index k - 1 of poly over the new total: 0.1 * (1 - (k-1)/24) ** 0.9
    # (the checkpoint's own schedule, over 40, would give 0.1 * 0.5 ** 0.9 = 0.0536 at 21).
    expected = [0.1 * (1 - 20 / 24) ** 0.9, 0.1 * (1 - 21 / 24) ** 0.9,
                0.1 * (1 - 22 / 24) ** 0.9, 0.1 * (1 - 23 / 24) ** 0.9]
    assert [entry["lr"] for entry in resumed.losses] == pytest.approx(expected, rel=1e-9)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("iter_")] == ["iter_24"]


def test_save_interval_comes_from_the_config_unless_given(trained, blob_root: Path,
                                                          tmp_path: Path) -> None:
    from humanseg.cli import main
    from humanseg.engine.train import train

    cfg, _, _ = trained
    config_path = tmp_path / "interval.yml"  # PaddleSeg's pp_humanseg configs have this key
    config_path.write_text("save_interval: 2\n" + (blob_root / "blobs.yml").read_text())
    argv = ["train", "--config", str(config_path), "--iters", "5", "--seed", "0",
            "--keep_checkpoint_max", "0"]
    assert main([*argv, "--save_dir", str(tmp_path / "config")]) == 0
    assert sorted(p.name for p in (tmp_path / "config").iterdir()) == [
        "iter_2", "iter_4", "iter_5"]  # every 2 iterations and at the end
    assert main([*argv, "--save_dir", str(tmp_path / "flag"), "--save_interval", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "flag").iterdir()) == ["iter_3", "iter_5"]
    with pytest.raises(HumanSegError, match="save_interval: must be a whole number >= 1, got 0"):
        train({**cfg, "save_interval": 0}, tmp_path / "zero", iters=2, progress=False)
    with pytest.raises(HumanSegError, match="save_interval: .* got 'often'"):
        train({**cfg, "save_interval": "often"}, tmp_path / "word", iters=2, progress=False)
    assert not (tmp_path / "zero").exists() and not (tmp_path / "word").exists()


def test_training_errors_are_one_clear_message(trained, tmp_path: Path) -> None:
    from humanseg.engine.train import train

    cfg, save_dir, _ = trained
    with pytest.raises(HumanSegError, match="checkpoint is at iteration 40, not below --iters 40"):
        train(cfg, tmp_path, resume_model=str(save_dir / "iter_40"), progress=False)
    with pytest.raises(HumanSegError, match="unknown option.*save_every"):
        train(cfg, tmp_path, save_every=3)
    with pytest.raises(HumanSegError, match="fp16 needs --device cuda"):
        train(cfg, tmp_path, precision="fp16", progress=False)
    with pytest.raises(HumanSegError, match="loss became nan by iteration 2"):
        train(cfg, tmp_path / "diverged", iters=4, log_iters=2, learning_rate=1e30, seed=0,
              progress=False)
    assert not (tmp_path / "diverged").exists()
    no_val = {key: value for key, value in cfg.items() if key != "val_dataset"}
    with pytest.raises(HumanSegError, match="no val_dataset"):
        train(no_val, tmp_path, do_eval=True, progress=False)


def test_bf16_autocast_trains_on_the_cpu(trained, tmp_path: Path) -> None:
    from humanseg.engine.train import train

    cfg, _, _ = trained
    result = train(cfg, tmp_path, iters=4, log_iters=2, seed=1, precision="bf16", progress=False)
    assert all(np.isfinite(entry["loss"]) for entry in result.losses)
    assert (tmp_path / "iter_4" / "model.pt").is_file()


def test_worker_processes_load_the_same_augmented_batches(trained, tmp_path: Path) -> None:
    from humanseg.engine.train import train

    cfg, _, _ = trained
    in_process = train(cfg, tmp_path / "w0", iters=3, seed=5, num_workers=0, progress=False)
    in_workers = train(cfg, tmp_path / "w2", iters=3, seed=5, num_workers=2, progress=False)
    first, second = in_process.model.state_dict(), in_workers.model.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_a_used_save_dir_is_refused_unless_resuming_or_overwriting(trained, blob_root: Path,
                                                                   tmp_path: Path,
                                                                   capsys) -> None:
    from humanseg.cli import main
    from humanseg.engine.train import train

    cfg, _, _ = trained
    save_dir = tmp_path / "run"
    train(cfg, save_dir, iters=4, save_interval=2, seed=0, keep_checkpoint_max=0, progress=False)
    (save_dir / "notes.txt").write_text("mine")
    first_run = (save_dir / "iter_4" / "model.pt").read_bytes()
    with pytest.raises(HumanSegError, match=r"run: holds another run's outputs \(iter_2, iter_4\)"):
        train(cfg, save_dir, iters=2, seed=1, progress=False)
    argv = ["train", "--config", str(blob_root / "blobs.yml"), "--save_dir", str(save_dir),
            "--iters", "2", "--seed", "1"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--overwrite" in error and "--resume_model" in error
    assert (save_dir / "iter_4" / "model.pt").read_bytes() == first_run
    assert main([*argv, "--overwrite"]) == 0  # the first run's outputs go, other files stay
    assert sorted(p.name for p in save_dir.iterdir()) == ["iter_2", "notes.txt"]
    train(cfg, save_dir, iters=3, resume_model=str(save_dir / "iter_2"), progress=False)
    assert sorted(p.name for p in save_dir.iterdir()) == ["iter_2", "iter_3", "notes.txt"]


def test_files_other_than_a_run_s_outputs_do_not_block_a_save_dir(trained, tmp_path: Path) -> None:
    """The default save_dir `output/` also holds predict and demo results: they stay, and a run
    starts beside them."""
    from humanseg.engine.train import train

    cfg, _, _ = trained
    save_dir = tmp_path / "output"
    (save_dir / "result" / "label").mkdir(parents=True)
    (save_dir / "result" / "label" / "photo.png").write_bytes(b"mask")
    (save_dir / "notes.txt").write_text("mine")
    train(cfg, save_dir, iters=2, save_interval=2, seed=0, progress=False)
    assert sorted(p.name for p in save_dir.iterdir()) == ["iter_2", "notes.txt", "result"]
    assert (save_dir / "result" / "label" / "photo.png").read_bytes() == b"mask"


def test_a_running_training_locks_its_save_dir(trained, blob_root: Path,
                                               tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from humanseg.engine.train import train
    from humanseg.errors import HumanSegWarning

    cfg, _, _ = trained
    save_dir = tmp_path / "busy"
    lock = save_dir / checkpoint.LOCK_FILE
    running = subprocess.Popen(
        [sys.executable, "-m", "humanseg.cli", "train", "--config", str(blob_root / "blobs.yml"),
         "--save_dir", str(save_dir), "--iters", "1000000", "--save_interval", "1000000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ,
                                                                   "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 300
        while not (lock.is_file() and lock.read_text().strip()) and running.poll() is None:
            assert time.monotonic() < deadline, "the training subprocess never took the lock"
            time.sleep(0.2)
        assert lock.read_text().split()[0] == str(running.pid)
        with pytest.raises(HumanSegError, match=f"another training run .*{running.pid}"):
            train(cfg, save_dir, iters=2, progress=False)
        assert lock.read_text().split()[0] == str(running.pid)  # the refused run left it alone
    finally:
        running.send_signal(signal.SIGKILL)  # dies without cleaning up: its lock file stays
        running.wait()
    assert lock.is_file()
    with pytest.warns(HumanSegWarning, match=f"left by a run that ended .*{running.pid}"):
        train(cfg, save_dir, iters=2, seed=0, progress=False)
    assert sorted(p.name for p in save_dir.iterdir()) == ["iter_2"]  # lock released at the end
