#!/usr/bin/env bash
# Rerun the paper's fine-tuning tables from one pretrained checkpoint:
#
#   bash scripts/reproduce_tables.sh PRETRAINED DATA_ROOT RUNS_DIR [finetune_main.py options ...]
#
# PRETRAINED  a pretraining checkpoint (pretrain/pretrain_main.py, checkpoint-*.pth) or an official M4CEA
#             state dict
# DATA_ROOT   one labelled preprocessing output per task: DATA_ROOT/<task>/manifest.csv (tasks without
#             one are skipped, and said so)
# RUNS_DIR    receives RUNS_DIR/<task>/seed<S>/ for every task with data and the seeds 42 2024 3407 4399
#             114514, then the main table (Markdown on stdout, RUNS_DIR/table_main.csv)
# Further options go to every finetune/finetune_main.py call, e.g. --set model.name=m4cea_tiny or
# --config cohort.yaml. A run that already finished (results.json) is kept, so a killed script resumes.
# LAUNCH replaces the Python command, e.g. LAUNCH="torchrun --nproc_per_node=8" on an 8-GPU node.
# Exit status: 0, 1 when a run failed (the others still run and the table is printed), 2 on a usage error.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/_venv.sh"

if [ $# -lt 3 ]; then
    echo "usage: bash scripts/reproduce_tables.sh PRETRAINED DATA_ROOT RUNS_DIR [finetune_main.py options ...]" >&2
    exit 2
fi
PRETRAINED="$1"
DATA_ROOT="$2"
RUNS_DIR="$3"
shift 3
if [ ! -f "$PRETRAINED" ]; then
    echo "reproduce_tables.sh: error: pretrained checkpoint not found: $PRETRAINED" >&2
    exit 2
fi
if [ ! -d "$DATA_ROOT" ]; then
    echo "reproduce_tables.sh: error: data folder not found: $DATA_ROOT (one preprocessed folder per task)" >&2
    exit 2
fi

SEEDS=(42 2024 3407 4399 114514)
read -r -a TASKS <<< "$("$PYTHON" -c 'from tasks import TASKS; print(" ".join(TASKS))')"
read -r -a LAUNCH_CMD <<< "${LAUNCH:-$PYTHON}"
FAILED=()
for task in "${TASKS[@]}"; do
    if [ ! -f "$DATA_ROOT/$task/manifest.csv" ]; then
        echo "== $task: skipped, no data ($DATA_ROOT/$task/manifest.csv is absent)"
        continue
    fi
    for seed in "${SEEDS[@]}"; do
        if [ -f "$RUNS_DIR/$task/seed$seed/results.json" ]; then
            echo "== $task, seed $seed: already done ($RUNS_DIR/$task/seed$seed/results.json)"
            continue
        fi
        echo "== $task, seed $seed"
        if ! "${LAUNCH_CMD[@]}" "$ROOT/finetune/finetune_main.py" --task "$task" --seed "$seed" \
            --data "$DATA_ROOT/$task" --output "$RUNS_DIR" --pretrained "$PRETRAINED" "$@"; then
            FAILED+=("$task/seed$seed")
        fi
    done
done

mkdir -p "$RUNS_DIR"
"$PYTHON" "$ROOT/scripts/make_table.py" "$RUNS_DIR"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "reproduce_tables.sh: failed runs: ${FAILED[*]} (see their log.txt)" >&2
    exit 1
fi
