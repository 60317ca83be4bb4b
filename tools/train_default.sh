#!/usr/bin/env bash
# Reproduce the shipped default portrait model (src/humanseg/weights/default.{yml,pt}) and the SCL
# ablation of docs/results.md, from the repository root, on CPU:
#
#   tools/train_default.sh prepare    # COCO person labels -> dataset/COCO_person
#   tools/train_default.sh default    # main run (CE + SC loss) -> output/portrait/default
#   tools/train_default.sh ship       # copy its final model + config into src/humanseg/weights
#   tools/train_default.sh ablation   # CE vs CE + SC, seeds 1 and 2 -> output/portrait/ablation
#   tools/train_default.sh report     # tables and plots -> docs/results.md figures
#   tools/train_default.sh all        # all of the above, in order
#
# One thread per run (OMP_NUM_THREADS=1) and bf16 autocast: on the development CPU (AMD EPYC with
# avx512_bf16) a bf16 step is 2-4x faster than fp32. Training is seeded, but bf16 and thread
# scheduling make the weights reproducible to about 1e-3 mIoU, not bit for bit.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # no spinning threads on a shared machine
CONFIG_SCL=configs/portrait/pp_humanseg_lite_portrait_192x192_scl.yml
CONFIG_CE=configs/portrait/pp_humanseg_lite_portrait_192x192.yml
DEFAULT_DIR=output/portrait/default
ABLATION_DIR=output/portrait/ablation
DEFAULT_ITERS=1000
ABLATION_ITERS=300
COMMON=(--do_eval --use_vdl --precision bf16 --num_workers 1 --log_iters 10 --keep_checkpoint_max 1)

prepare() {
    "$PY" -m humanseg.cli prepare-coco --coco-root ../shared/data/coco_mini --out dataset/COCO_person
}

default() {
    "$PY" train.py --config "$CONFIG_SCL" --save_dir "$DEFAULT_DIR" --seed 0 \
        --iters "$DEFAULT_ITERS" --save_interval 200 "${COMMON[@]}"
}

ship() {
    # The final iteration's model, not the best by validation mIoU (no selection on the val set).
    cp "$DEFAULT_DIR/iter_$DEFAULT_ITERS/model.pt" src/humanseg/weights/default.pt
    cp "$CONFIG_SCL" src/humanseg/weights/default.yml
}

ablation() {
    for seed in 1 2; do
        for arm in ce scl; do
            config=$CONFIG_CE
            [ "$arm" = scl ] && config=$CONFIG_SCL
            "$PY" train.py --config "$config" --save_dir "$ABLATION_DIR/${arm}_seed$seed" \
                --seed "$seed" --iters "$ABLATION_ITERS" --save_interval 100 "${COMMON[@]}"
        done
    done
}

report() {
    "$PY" tools/ablation_report.py --default "$DEFAULT_DIR" --ablation "$ABLATION_DIR" \
        --config "$CONFIG_SCL" --out docs/figures
}

stage=${1:-all}
case "$stage" in
    prepare | default | ship | ablation | report) "$stage" ;;
    all) prepare && default && ship && ablation && report ;;
    *) echo "usage: $0 [prepare|default|ship|ablation|report|all]" >&2; exit 2 ;;
esac
