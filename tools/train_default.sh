#!/usr/bin/env bash
# Reproduce the shipped default portrait model (src/humanseg/weights/default.{yml,pt}), the earlier
# from-scratch model and the SCL ablation of docs/results.md, from the repository root, on CPU:
#
#   tools/train_default.sh prepare    # COCO person labels -> dataset/COCO_person
#   tools/train_default.sh convert    # PaddleSeg's released Lite (../shared/models ONNX) -> .pt
#   tools/train_default.sh finetune   # the first fine-tuning run (shipped 2026-12-01/02), 192x192
#   tools/train_default.sh finetune_grey_colour  # runs 5-8 (docs/model_zoo.md): grey samples
#                                     # (25% or 10%) with a colour teacher, paper SC or `unmatched:
#                                     # soft`, two at a time -> output/portrait/finetune192_grey*_colour_teacher*
#   tools/train_default.sh soup_grey  # the average of runs 5 and 8 (shipped 03:00-03:25 UTC)
#                                     # -> output/portrait/soup_grey_colour/model.pt
#   tools/train_default.sh finetune_grey_more  # the shipped model: run 9, 600 more iterations from
#                                     # that average, 40% grey samples with the colour teacher
#                                     # -> output/portrait/finetune192_grey_more
#   tools/train_default.sh ship       # copy that model + config into src/humanseg/weights (+ ONNX)
#
# The from-scratch recipe (no inherited weights; shipped until 2026-12-01, docs/model_zoo.md):
#   tools/train_default.sh default    # main run (CE + SC loss), 1000 iters -> output/portrait/default
#   tools/train_default.sh stage2     # 1000 more iters from its weights -> .../default_stage2
#   tools/train_default.sh stage3     # 2000 more iters from stage 2's -> .../default_stage3
#   tools/train_default.sh stage4     # 4000 more, portraits weighted up -> .../default_stage4
#   tools/train_default.sh stage5     # 4000 more from stage 4's -> .../default_stage5
#   tools/train_default.sh stage6     # 4000 more from stage 5's -> .../default_stage6
#   tools/train_default.sh stage6b    # stage 6 again, seed 6, 2500 iters -> .../default_stage6_seed6
#   tools/train_default.sh soup       # the average of the two stage-6 models -> .../soup/model.pt
#   tools/train_default.sh ship_scratch  # copy that model + config into src/humanseg/weights
#   tools/train_default.sh ablation   # CE vs CE + SC, seeds 1 2 3 -> output/portrait/ablation
#   tools/train_default.sh report     # tables and plots -> docs/results.md figures
#   tools/train_default.sh unmatched  # from the soup (the from-scratch model): CE vs CE + SC (paper) vs CE + SC
#                                     # (unmatched soft), seeds 1 2, two runs at a time
#                                     # -> output/portrait/unmatched_ablation
#   tools/train_default.sh unmatched_report  # its tables and plots -> docs/results.md figures
#   tools/train_default.sh all        # prepare, convert, finetune, ship
#
# One thread per run (OMP_NUM_THREADS=1) and bf16 autocast: on the development CPU (AMD EPYC with
# avx512_bf16) a bf16 step was 1.5-4x faster than fp32. Training is seeded (data order and
# augmentation), but bf16 kernels do not promise bit-identical weights on another machine.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # no spinning threads on a shared machine
CONFIG_SCL=configs/portrait/pp_humanseg_lite_portrait_192x192_scl.yml
CONFIG_STAGE2=configs/portrait/pp_humanseg_lite_portrait_192x192_scl_stage2.yml
CONFIG_STAGE3=configs/portrait/pp_humanseg_lite_portrait_192x192_scl_stage3.yml
CONFIG_STAGE4=configs/portrait/pp_humanseg_lite_portrait_192x192_scl_stage4.yml
CONFIG_STAGE5=configs/portrait/pp_humanseg_lite_portrait_192x192_scl_stage5.yml
CONFIG_STAGE6=configs/portrait/pp_humanseg_lite_portrait_192x192_scl_stage6.yml
CONFIG_CE=configs/portrait/pp_humanseg_lite_portrait_192x192.yml
CONFIG_256=configs/portrait/pp_humanseg_lite_portrait_192x192_released.yml
CONFIG_FINETUNE=configs/portrait/pp_humanseg_lite_portrait_192x192_released_finetune.yml
CONFIG_RELEASED=configs/pp_humanseg/pp_humanseg_lite_portrait_398x224.yml
RELEASED_ONNX=../shared/models/pp_humanseg_lite_portrait_398x224.onnx
RELEASED=output/released/pp_humanseg_lite_portrait_398x224.pt
FINETUNE_DIR=output/portrait/finetune192
SOUP_GREY=output/portrait/soup_grey_colour/model.pt
GREY_MORE_DIR=output/portrait/finetune192_grey_more
GREY_MORE_ITERS=600
FINETUNE_ITERS=1200
CONFIG_GREY_COLOUR=configs/portrait/pp_humanseg_lite_portrait_192x192_released_finetune_
DEFAULT_DIR=output/portrait/default
ABLATION_DIR=output/portrait/ablation
DEFAULT_ITERS=1000
STAGE2_DIR=output/portrait/default_stage2
STAGE3_DIR=output/portrait/default_stage3
STAGE3_ITERS=2000
STAGE4_DIR=output/portrait/default_stage4
STAGE4_ITERS=4000
STAGE5_DIR=output/portrait/default_stage5
STAGE5_ITERS=4000
STAGE6_DIR=output/portrait/default_stage6
STAGE6_ITERS=4000
STAGE6B_DIR=output/portrait/default_stage6_seed6
STAGE6B_ITERS=2500
SOUP=output/portrait/soup/model.pt
ABLATION_ITERS=300
ABLATION_SEEDS=${ABLATION_SEEDS:-1 2 3}
UNMATCHED_DIR=output/portrait/unmatched_ablation
UNMATCHED_CONFIGS=configs/portrait/unmatched_ablation
UNMATCHED_ITERS=${UNMATCHED_ITERS:-250}  # the configs' iters
COMMON=(--do_eval --use_vdl --precision bf16 --num_workers 1 --log_iters 10 --keep_checkpoint_max 1)

prepare() {
    "$PY" -m humanseg.cli prepare-coco --coco-root ../shared/data/coco_mini --out dataset/COCO_person
}

convert() {
    # The separate-batch-norm export: its BN statistics are what fine-tuning starts from.
    "$PY" -m humanseg.cli convert-paddle --src "$RELEASED_ONNX" --config "$CONFIG_RELEASED" \
        --dst "$RELEASED"
}

finetune() {
    # No --do_eval: no model is picked by its validation score; the final iteration ships.
    "$PY" train.py --config "$CONFIG_FINETUNE" --save_dir "$FINETUNE_DIR" --seed 1 \
        --iters "$FINETUNE_ITERS" --save_interval 200 --precision bf16 --num_workers 1 \
        --log_iters 10 --keep_checkpoint_max 0
}

finetune_grey_colour() {
    # The shipped recipe with `teacher.grey_student` 0.25 or 0.1 (RandomGrayscale left out), each
    # with the paper's SC loss and with `unmatched: soft`; the two SC variants side by side.
    for share in grey grey10; do
        for variant in "" _soft; do
            run=${share}_colour_teacher$variant
            "$PY" train.py --config "$CONFIG_GREY_COLOUR$run.yml" --save_dir "${FINETUNE_DIR}_$run" \
                --seed 1 --iters "$FINETUNE_ITERS" --save_interval 200 --precision bf16 \
                --num_workers 1 --log_iters 10 --keep_checkpoint_max 0 \
                > "${FINETUNE_DIR}_$run.log" 2>&1 &
        done
        wait
    done
}

soup_grey() {
    # Uniform average of run 5 (25% grey, paper SC) and run 8 (10% grey, SC `unmatched: soft`):
    # same start (the released weights), same seed and schedule, different grey share and SC term.
    "$PY" tools/average_weights.py --config "$CONFIG_256" --out "$SOUP_GREY" \
        "${FINETUNE_DIR}_grey_colour_teacher/iter_$FINETUNE_ITERS/model.pt" \
        "${FINETUNE_DIR}_grey10_colour_teacher_soft/iter_$FINETUNE_ITERS/model.pt"
}

finetune_grey_more() {
    # Run 9: from the runs-5-and-8 average, 40% grey samples taught by the colour teacher, a third
    # of the peak learning rate, 600 iterations.
    "$PY" train.py --config "${CONFIG_GREY_COLOUR}grey_colour_teacher_from_soup.yml" \
        --save_dir "$GREY_MORE_DIR" --seed 1 --iters "$GREY_MORE_ITERS" --save_interval 200 \
        --precision bf16 --num_workers 1 --log_iters 10 --keep_checkpoint_max 0
}

ship() {
    install -m 644 "$GREY_MORE_DIR/iter_$GREY_MORE_ITERS/model.pt" src/humanseg/weights/default.pt
    install -m 644 "$CONFIG_256" src/humanseg/weights/default.yml
    export_packaged
}

export_packaged() {
    # The packaged model's ONNX export, which `--backend auto` runs on onnxruntime.
    "$PY" -m humanseg.cli export --output src/humanseg/weights/default.onnx
}

train_stage() {
    # One training run: CONFIG SAVE_DIR SEED ITERS SAVE_INTERVAL, with the common options.
    "$PY" train.py --config "$1" --save_dir "$2" --seed "$3" --iters "$4" --save_interval "$5" \
        "${COMMON[@]}"
}

# Stage 1 from scratch; every later stage is a warm restart from the previous stage's final
# weights (its config's model.pretrained): stage 2 the same recipe, stage 3 longer at a lower peak
# rate, stage 4 with the web portraits drawn more often, stages 5 and 6 at lower peak rates still,
# and stage 6b stage 6 once more with another seed (other data order and augmentation), shorter.
default() { train_stage "$CONFIG_SCL" "$DEFAULT_DIR" 0 "$DEFAULT_ITERS" 200; }
stage2() { train_stage "$CONFIG_STAGE2" "$STAGE2_DIR" 1 "$DEFAULT_ITERS" 200; }
stage3() { train_stage "$CONFIG_STAGE3" "$STAGE3_DIR" 2 "$STAGE3_ITERS" 400; }
stage4() { train_stage "$CONFIG_STAGE4" "$STAGE4_DIR" 3 "$STAGE4_ITERS" 500; }
stage5() { train_stage "$CONFIG_STAGE5" "$STAGE5_DIR" 4 "$STAGE5_ITERS" 500; }
stage6() { train_stage "$CONFIG_STAGE6" "$STAGE6_DIR" 5 "$STAGE6_ITERS" 500; }
stage6b() { train_stage "$CONFIG_STAGE6" "$STAGE6B_DIR" 6 "$STAGE6B_ITERS" 500; }

soup() {
    # Uniform average of the two stage-6 runs (same start, different seeds): a model soup.
    "$PY" tools/average_weights.py --config "$CONFIG_SCL" --out "$SOUP" \
        "$STAGE6_DIR/iter_$STAGE6_ITERS/model.pt" "$STAGE6B_DIR/iter_$STAGE6B_ITERS/model.pt"
}

ship_scratch() {
    # Final iterations only, not the best by validation mIoU (no selection on the val set).
    install -m 644 "$SOUP" src/humanseg/weights/default.pt
    install -m 644 "$CONFIG_SCL" src/humanseg/weights/default.yml
    export_packaged
}

ablation() {
    for seed in $ABLATION_SEEDS; do
        for arm in ce scl; do
            config=$CONFIG_CE
            [ "$arm" = scl ] && config=$CONFIG_SCL
            train_stage "$config" "$ABLATION_DIR/${arm}_seed$seed" "$seed" "$ABLATION_ITERS" 100
        done
    done
}

report() {
    "$PY" tools/ablation_report.py --default "$SOUP" --ablation "$ABLATION_DIR" \
        --config "$CONFIG_SCL" --out docs/figures
}

unmatched_run() {
    # One arm (ce, scl, scl_soft) and seed, without evaluation (the report scores the end).
    "$PY" train.py --config "$UNMATCHED_CONFIGS/$1.yml" --save_dir "$UNMATCHED_DIR/$1_seed$2" \
        --seed "$2" --iters "$UNMATCHED_ITERS" --save_interval "$UNMATCHED_ITERS" --use_vdl \
        --precision bf16 --num_workers 1 --log_iters 10 --keep_checkpoint_max 1 \
        > "$UNMATCHED_DIR/$1_seed$2.log" 2>&1
}

unmatched() {
    # Issue 10's ablation: the three arms from the packaged model, two lanes side by side.
    mkdir -p "$UNMATCHED_DIR"
    { unmatched_run scl_soft 1 && unmatched_run ce 1 && unmatched_run scl 2; } &
    { unmatched_run scl 1 && unmatched_run scl_soft 2 && unmatched_run ce 2; } &
    wait
}

unmatched_report() {
    "$PY" tools/ablation_report.py --default "$SOUP" \
        --ablation "$UNMATCHED_DIR" --config "$UNMATCHED_CONFIGS/scl.yml" --out docs/figures \
        --save_dir "$UNMATCHED_DIR" --prefix unmatched_
}

stage=${1:-all}
case "$stage" in
    prepare | convert | finetune | finetune_grey_colour | soup_grey | finetune_grey_more | ship | default | stage2 | stage3 | stage4 | stage5 | stage6 | stage6b | soup | ship_scratch | ablation | report | unmatched | unmatched_report) "$stage" ;;
    all) prepare && convert && finetune_grey_colour && soup_grey && finetune_grey_more && ship ;;
    *) echo "usage: $0 [prepare|convert|finetune|finetune_grey_colour|soup_grey|finetune_grey_more|ship|default|stage2|stage3|stage4|stage5|stage6|stage6b|soup|ship_scratch|ablation|report|unmatched|unmatched_report|all]" >&2; exit 2 ;;
esac
