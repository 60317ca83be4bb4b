"""Tests of config loading: `_base_` inheritance, deep merge, validation naming key and file."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from humanseg.builder import load_config
from humanseg.errors import HumanSegError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(path.name for path in (REPO / "configs" / "pp_humanseg").glob("*.yml"))

# The structure of PaddleSeg's contrib/PP-HumanSeg/configs/human_pp_humansegv1_mobile.yml
# (written out here by hand): it must load unchanged.
PADDLESEG_MOBILE = """\
batch_size: 8
iters: 1000

train_dataset:
  type: Dataset
  dataset_root: data/mini_supervisely
  train_path: data/mini_supervisely/train.txt
  num_classes: 2
  transforms:
    - type: Resize
      target_size: [192, 192]
    - type: ResizeStepScaling
      scale_step_size: 0
    - type: RandomRotation
    - type: RandomPaddingCrop
      crop_size: [192, 192]
    - type: RandomHorizontalFlip
    - type: RandomDistort
    - type: RandomBlur
      prob: 0.3
    - type: Normalize
  mode: train

val_dataset:
  type: Dataset
  dataset_root: data/mini_supervisely
  val_path: data/mini_supervisely/val.txt
  num_classes: 2
  transforms:
    - type: Resize
      target_size: [192, 192]
    - type: Normalize
  mode: val

export:
  transforms:
    - type: Resize
      target_size: [192, 192]
    - type: Normalize

optimizer:
  type: sgd
  momentum: 0.9
  weight_decay: 0.0005

lr_scheduler:
  type: PolynomialDecay
  learning_rate: 0.001
  end_lr: 0
  power: 0.9

loss:
  types:
    - type: MixedLoss
      losses:
        - type: CrossEntropyLoss
        - type: LovaszSoftmaxLoss
      coef: [0.8, 0.2]
  coef: [1]

model:
  type: FCN
  backbone:
    type: HRNet_W18_Small_V1
    align_corners: False
  num_classes: 2
  backbone_indices: [-1]
  pretrained: pretrained_models/human_pp_humansegv1_mobile_192x192_pretrained/model.pdparams
"""

# PaddleSeg's configs/_base_/cityscapes.yml structure, and a child config that inherits it.
CITYSCAPES_BASE = """\
batch_size: 2
iters: 80000
train_dataset:
  type: Dataset
  dataset_root: data/cityscapes
  train_path: data/cityscapes/train.txt
  num_classes: 19
  transforms:
    - type: ResizeStepScaling
      min_scale_factor: 0.5
      max_scale_factor: 2.0
      scale_step_size: 0.25
    - type: RandomPaddingCrop
      crop_size: [1024, 512]
    - type: Normalize
  mode: train
optimizer:
  type: SGD
  momentum: 0.9
  weight_decay: 4.0e-5
lr_scheduler:
  type: PolynomialDecay
  learning_rate: 0.01
  end_lr: 0
  power: 0.9
loss:
  types:
    - type: CrossEntropyLoss
  coef: [1]
"""


def write(path: Path, text: str) -> Path:
    """Write a YAML file (dedented) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_paddleseg_pp_humanseg_config_loads_unchanged(tmp_path: Path) -> None:
    path = write(tmp_path / "human_pp_humansegv1_mobile.yml", PADDLESEG_MOBILE)
    assert load_config(path) == yaml.safe_load(PADDLESEG_MOBILE)
    # PaddleSeg's portrait_pp_humansegv2_lite.yml also sets a top-level save_interval.
    with_interval = "save_interval: 1000\n" + PADDLESEG_MOBILE
    path.write_text(with_interval)
    assert load_config(path)["save_interval"] == 1000


def test_base_inheritance_deep_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    write(tmp_path / "_base_" / "cityscapes.yml", CITYSCAPES_BASE)
    child = write(
        tmp_path / "models" / "fcn.yml",
        """\
        _base_: ../_base_/cityscapes.yml
        batch_size: 8
        train_dataset:
          dataset_root: data/other
          transforms:
            - type: Normalize
        optimizer:
          weight_decay: 0.0005
        """,
    )
    cfg = load_config(child)
    assert cfg["batch_size"] == 8 and cfg["iters"] == 80000
    assert cfg["train_dataset"]["dataset_root"] == "data/other"
    assert cfg["train_dataset"]["train_path"] == "data/cityscapes/train.txt"
    assert cfg["train_dataset"]["transforms"] == [{"type": "Normalize"}]
    assert cfg["optimizer"] == {"type": "SGD", "momentum": 0.9, "weight_decay": 0.0005}
    assert "_base_" not in cfg


def test_bases_chain_and_list_of_bases_earlier_base_wins(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "batch_size: 1\niters: 10\n")
    write(tmp_path / "b.yml", "_base_: a.yml\nbatch_size: 2\n")
    write(tmp_path / "c.yml", "iters: 30\nbatch_size: 3\ntest_config: {aug_eval: true}\n")
    top = write(tmp_path / "sub" / "top.yml", "_base_: [../b.yml, ../c.yml]\n")
    # PaddleSeg merges the file over its first base, then that over the second: b (and its
    # own base a) beat c wherever both set a key.
    assert load_config(top) == {"batch_size": 2, "iters": 10, "test_config": {"aug_eval": True}}


def test_inherited_false_replaces_the_base_mapping(tmp_path: Path) -> None:
    write(tmp_path / "base.yml", CITYSCAPES_BASE)
    child = write(
        tmp_path / "child.yml",
        """\
        _base_: base.yml
        train_dataset:
          _inherited_: False
          type: FolderDataset
          dataset_root: data/portraits
          num_classes: 2
        """,
    )
    assert load_config(child)["train_dataset"] == {
        "type": "FolderDataset", "dataset_root": "data/portraits", "num_classes": 2
    }


def test_legacy_learning_rate_form_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path / "old.yml",
        """\
        batch_size: 4
        iters: 100
        learning_rate:
          value: 0.01
          decay:
            type: poly
            power: 0.9
            end_lr: 0
        optimizer:
          type: sgd
          momentum: 0.9
          weight_decay: 4.0e-5
        """,
    )
    assert load_config(path)["learning_rate"]["decay"]["type"] == "poly"


@pytest.mark.parametrize("name", ["sgd", "SGD", "Momentum", "adam", "Adam", "adamw", "AdamW"])
def test_every_paddleseg_optimizer_name_is_accepted(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "opt.yml", f"optimizer:\n  type: {name}\n  weight_decay: 0.0001\n")
    assert load_config(path)["optimizer"]["type"] == name


def test_warmup_and_cosine_schedules_are_accepted(tmp_path: Path) -> None:
    poly = "lr_scheduler: {type: PolynomialDecay, learning_rate: 0.1, end_lr: 0, power: 0.9, "
    write(tmp_path / "p.yml", poly + "warmup_iters: 10, warmup_start_lr: 0.001}\n")
    cosine = "lr_scheduler: {type: CosineAnnealingDecay, learning_rate: 0.1, T_max: 100}\n"
    write(tmp_path / "c.yml", cosine)
    assert load_config(tmp_path / "p.yml")["lr_scheduler"]["warmup_iters"] == 10
    assert load_config(tmp_path / "c.yml")["lr_scheduler"]["T_max"] == 100


def test_unknown_top_level_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yml", "batch_size: 2\nbatchsize: 3\n")
    with pytest.raises(HumanSegError, match=r"bad\.yml: batchsize: unknown key"):
        load_config(path)


def test_unknown_key_is_blamed_on_the_base_file_that_wrote_it(tmp_path: Path) -> None:
    write(tmp_path / "base.yml", "optimizer:\n  type: sgd\n  momentun: 0.9\n")
    child = write(tmp_path / "child.yml", "_base_: base.yml\noptimizer:\n  weight_decay: 0.1\n")
    with pytest.raises(HumanSegError, match=r"base\.yml: optimizer.*momentun"):
        load_config(child)


def test_bad_model_key_is_blamed_on_the_file_that_wrote_it(tmp_path: Path) -> None:
    write(tmp_path / "base.yml", "model:\n  type: FCN\n  backbone: {type: HRNet_W18, widht: 18}\n")
    child = write(tmp_path / "child.yml", "_base_: base.yml\nmodel:\n  num_classes: 2\n")
    with pytest.raises(HumanSegError, match=r"base\.yml: model\.backbone\.widht: unknown key"):
        load_config(child)


@pytest.mark.parametrize(("teacher", "message"), [
    ("{model_path: t.pt, coeff: 1}", r"teacher\.coeff: unknown key"),
    ("{coef: 1}", r"teacher\.model_path: the teacher's weights are required"),
    ("{model_path: t.pt, temperature: 0}", r"teacher\.temperature: must be a number > 0"),
    ("{model_path: t.pt, model: {type: PPHumanSegLite, num_clases: 2}}",
     r"teacher\.model\.num_clases: unknown key"),
    ("{model_path: t.pt, grey_student: 0.5}", r"teacher\.grey_student: the train transforms need"),
])
def test_bad_teacher_section_fails_at_load_naming_key_and_file(
    tmp_path: Path, teacher: str, message: str
) -> None:
    # before any data or weights are read; the train transforms here have no Normalize
    base = write(tmp_path / "base.yml", "train_dataset:\n  type: Dataset\n  dataset_root: d\n"
                 "  train_path: d/train.txt\n  num_classes: 2\n  transforms: []\n"
                 "model: {type: PPHumanSegLite, num_classes: 2}\n")
    child = write(tmp_path / "child.yml", f"_base_: {base.name}\nteacher: {teacher}\n")
    with pytest.raises(HumanSegError, match=r"child\.yml: " + message):
        load_config(child)
    good = write(tmp_path / "good.yml", f"_base_: {base.name}\n"
                 "teacher: {model_path: t.pt, flip: true, input_size: [398, 224]}\n")
    assert load_config(good)["teacher"]["input_size"] == [398, 224]


def test_bad_transform_key_names_its_path_and_file(tmp_path: Path) -> None:
    write(tmp_path / "base.yml", CITYSCAPES_BASE)
    child = write(
        tmp_path / "child.yml",
        """\
        _base_: base.yml
        train_dataset:
          transforms:
            - type: Resize
              targetsize: [192, 192]
        """,
    )
    with pytest.raises(
        HumanSegError, match=r"child\.yml: train_dataset\.transforms\[0\]\.targetsize: unknown key"
    ):
        load_config(child)


@pytest.mark.parametrize(
    ("section", "pattern"),
    [
        ("train_dataset: {type: Cityscapes, dataset_root: x, num_classes: 2}",
         r"train_dataset\.type: unknown dataset type 'Cityscapes'"),
        ("train_dataset: {type: Dataset, dataset_root: x}",
         r"train_dataset\.num_classes: missing"),
        ("train_dataset: {type: Dataset, dataset_root: x, num_classes: 2, split: a}",
         r"train_dataset\.split: unknown key"),
        ("val_dataset: {type: Dataset, dataset_root: x, num_classes: 2, "
         "transforms: [{type: Rezise}]}", r"val_dataset\.transforms\[0\]\.type: unknown transform"),
        ("export: {transforms: [{type: Resize, target_size: [1, 2, 3]}]}",
         r"export\.transforms\[0\]: bad Resize parameters"),
        ("export: {transforms: [{type: RandomHorizontalFlip}]}",
         r"export\.transforms\[0\]\.type: unknown inference transform 'RandomHorizontalFlip'"),
        ("optimizer: {type: lamb}", r"optimizer\.type: unknown optimizer"),
        ("optimizer: {type: sgd, momentum: abc}", r"optimizer: bad sgd parameters"),
        ("lr_scheduler: 0.1", r"lr_scheduler: must be a mapping"),
        ("lr_scheduler: {type: OneCycle, learning_rate: 0.1}", r"lr_scheduler\.type"),
        ("iters: -5", r"iters: must be a whole number >= 1"),
        ("model: {type: PPHumanSegLite, num_classes: 2, colour: 1}",
         r"model\.colour: unknown key \(allowed here: align_corners, in_channels"),
        ("model: {type: FCN, num_classes: 2, backbone: {type: HRNet_W18, width: 3}}",
         r"model\.backbone\.width: unknown key"),
        ("model: {type: FCN, num_classes: 2, backbone: {type: HRNet_W99}}",
         r"model\.backbone\.type: unknown backbone 'HRNet_W99'"),
        ("model: {type: PPHumanSegLite, num_classes: 0}",
         r"model: PPHumanSegLite: num_classes must be an integer >= 1, got 0"),
        ("loss: {types: [{type: CrossEntropyLoss, ignore_idx: 1}], coef: [1]}",
         r"loss\.types\[0\]\.ignore_idx: unknown key"),
        ("loss: {types: [{type: FocalLoss}], coef: [1]}",
         r"loss\.types\[0\]\.type: unknown loss 'FocalLoss'"),
        ("loss: {types: [{type: DiceLoss}], coef: [1, 2]}", r"loss\.coef: MixedLoss: coef"),
        ("model: {type: FCN, num_classes: 2}\nval_dataset: {type: Dataset, dataset_root: x, "
         "num_classes: 3}", r"val_dataset\.num_classes: 3 differs from model\.num_classes 2"),
    ],
)
def test_bad_sections_raise_one_clear_error(tmp_path: Path, section: str, pattern: str) -> None:
    path = write(tmp_path / "bad.yml", section + "\n")
    with pytest.raises(HumanSegError, match=r"bad\.yml: " + pattern):
        load_config(path)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(HumanSegError, match="missing.yml: config file not found"):
        load_config(tmp_path / "missing.yml")
    write(tmp_path / "broken.yml", "batch_size: [1,\n")
    with pytest.raises(HumanSegError, match="broken.yml: not valid YAML"):
        load_config(tmp_path / "broken.yml")
    # a syntax error says where, also inside a _base_ file, with no parser internals
    write(tmp_path / "tabs.yml", "model:\n  type: FCN\n\tnum_classes: 2\n")
    write(tmp_path / "child.yml", "_base_: tabs.yml\niters: 10\n")
    with pytest.raises(HumanSegError) as caught:
        load_config(tmp_path / "child.yml")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'tabs.yml'}: not valid YAML at line 3, column 1: ")
    assert "<unicode string>" not in message and "\n" not in message
    write(tmp_path / "list.yml", "- 1\n- 2\n")
    with pytest.raises(HumanSegError, match="list.yml: a config must be a YAML mapping"):
        load_config(tmp_path / "list.yml")
    write(tmp_path / "orphan.yml", "_base_: nowhere.yml\n")
    with pytest.raises(HumanSegError, match=r"orphan\.yml: _base_ file .*nowhere\.yml not found"):
        load_config(tmp_path / "orphan.yml")
    write(tmp_path / "x.yml", "_base_: y.yml\n")
    write(tmp_path / "y.yml", "_base_: x.yml\n")
    with pytest.raises(HumanSegError, match="inheritance cycle"):
        load_config(tmp_path / "x.yml")


def test_shipped_configs_load_and_the_ablation_differs_only_in_the_loss() -> None:
    folder = REPO / "configs" / "pp_humanseg"
    configs = {path.stem: load_config(path) for path in sorted(folder.glob("*.yml"))}
    assert set(configs) == {
        "fcn_hrnetw18_coco_person_192x192_scl",
        "fcn_hrnetw18_coco_person_192x192",
        "fcn_hrnetw18_small_v1_humanseg_192x192",
        "pp_humanseg_lite_portrait_398x224",
        "pp_humanseg_lite_portrait_256x144",
    }
    scl = configs["fcn_hrnetw18_coco_person_192x192_scl"]
    plain = configs["fcn_hrnetw18_coco_person_192x192"]
    assert scl["iters"] == 20000
    assert scl["model"]["backbone"]["type"] == "HRNet_W18"
    assert scl["train_dataset"]["dataset_root"] == "dataset/COCO_person"
    assert scl["loss"] == {
        "types": [{"type": "CrossEntropyLoss"}, {"type": "SemanticConnectivityLoss"}],
        "coef": [1, 0.1],
    }
    assert plain["loss"] == {"types": [{"type": "CrossEntropyLoss"}], "coef": [1]}
    assert {k: v for k, v in scl.items() if k != "loss"} == {
        k: v for k, v in plain.items() if k != "loss"
    }
    lite = configs["pp_humanseg_lite_portrait_398x224"]
    assert lite["train_dataset"]["type"] == "FolderDataset"
    assert "train_path" not in lite["train_dataset"]
    # The 256x144 variant changes only the sizes of the same 16:9 portrait pipeline.
    small = configs["pp_humanseg_lite_portrait_256x144"]
    assert small["model"] == lite["model"] and small["loss"] == lite["loss"]
    assert small["val_dataset"]["transforms"] == [
        {"type": "PaddingByAspectRatio", "aspect_ratio": 1.77777778},
        {"type": "Resize", "target_size": [256, 144]}, {"type": "Normalize"}]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_build_their_model_and_loss(name: str) -> None:
    from humanseg.losses import build_loss_from_config
    from humanseg.models import build_model

    cfg = load_config(REPO / "configs" / "pp_humanseg" / name)
    assert build_model(cfg["model"]).num_classes == cfg["train_dataset"]["num_classes"] == 2
    build_loss_from_config(cfg["loss"])


PADDLE_PYTHON = REPO / ".venv-paddle" / "bin" / "python"
PADDLESEG_PARSE = (
    "import json, sys, warnings; warnings.filterwarnings('ignore'); "
    "from paddleseg.cvlibs.config import parse_from_yaml; "
    "print(json.dumps(parse_from_yaml(sys.argv[1])))"
)


@pytest.mark.skipif(
    not PADDLE_PYTHON.exists(), reason=".venv-paddle absent: `make paddle-venv` builds PaddleSeg"
)
def test_base_merging_matches_paddleseg_itself(tmp_path: Path) -> None:
    write(tmp_path / "_base_" / "common.yml", CITYSCAPES_BASE + "val_dataset:\n  type: Dataset\n"
          "  dataset_root: data/cityscapes\n  val_path: data/cityscapes/val.txt\n"
          "  num_classes: 19\n  mode: val\n")
    write(tmp_path / "_base_" / "schedule.yml", """\
        iters: 500
        optimizer: {weight_decay: 1.0e-4}
        lr_scheduler: {type: PolynomialDecay, learning_rate: 0.05, end_lr: 0, power: 0.9}
        test_config: {aug_eval: true, scales: [0.75, 1.0]}
        """)
    write(tmp_path / "models" / "mid.yml", """\
        _base_: [../_base_/common.yml, ../_base_/schedule.yml]
        model: {type: FCN, backbone: {type: HRNet_W18}, num_classes: 19}
        train_dataset: {dataset_root: data/other}
        """)
    top = write(tmp_path / "models" / "top.yml", """\
        _base_: mid.yml
        batch_size: 8
        train_dataset:
          transforms: [{type: Normalize}]
        val_dataset:
          _inherited_: False
          type: FolderDataset
          dataset_root: data/portraits
          num_classes: 19
        """)
    result = subprocess.run(
        [str(PADDLE_PYTHON), "-c", PADDLESEG_PARSE, str(top)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    assert load_config(top) == json.loads(result.stdout.strip().splitlines()[-1])


def test_unmatched_ablation_arms_differ_only_in_the_loss() -> None:
    folder = REPO / "configs" / "portrait" / "unmatched_ablation"
    arms = {path.stem: load_config(path) for path in sorted(folder.glob("*.yml"))}
    assert set(arms) == {"ce", "scl", "scl_soft"}
    assert arms["scl"]["model"]["pretrained"] == "output/portrait/soup/model.pt"  # from scratch
    assert arms["scl"]["iters"] == 250  # as run (tools/train_default.sh unmatched)
    assert arms["ce"]["loss"] == {"types": [{"type": "CrossEntropyLoss"}], "coef": [1]}
    assert arms["scl_soft"]["loss"]["types"][1] == {
        "type": "SemanticConnectivityLoss", "unmatched": "soft"}
    without_loss = [{k: v for k, v in cfg.items() if k != "loss"} for cfg in arms.values()]
    assert without_loss[0] == without_loss[1] == without_loss[2]
