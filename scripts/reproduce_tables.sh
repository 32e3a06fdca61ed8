#!/usr/bin/env bash
# Rerun the paper's fine-tuning tables: M4CEA, LaBraM, braindecode baselines, the M4CEA ablations and a
# gated ensemble of the models on the same windows, splits, seeds and metrics:
#
#   bash scripts/reproduce_tables.sh [--models LIST] [--seeds LIST] [--ensemble] [--labram-pretrained FILE]
#       [--random-masking-pretrained FILE] [--no-tie-pretrained FILE]
#       PRETRAINED DATA_ROOT RUNS_DIR [finetune_main.py options ...]
#
# PRETRAINED  the M4CEA pretraining checkpoint (pretrain/pretrain_main.py, checkpoint-*.pth) or an official
#             M4CEA state dict
# DATA_ROOT   one labelled preprocessing output per task: DATA_ROOT/<task>/manifest.csv (tasks without
#             one are skipped, and said so); every model reads the same windows, adapted by the loader
# RUNS_DIR    receives RUNS_DIR/<variant>/<task>/seed<S>/ for every variant, task with data and the seeds
#             42 2024 3407 4399 114514 (or --seeds), then the tables: the first model's main table (Markdown on stdout,
#             RUNS_DIR/table_main.csv) and, with more than one variant, one row per task and variant
#             (RUNS_DIR/table_comparison.csv)
# --models LIST   comma-separated model names (default m4cea_base,labram_base); m4cea_* fine-tune from
#             PRETRAINED, labram_* from --labram-pretrained with LaBraM's published recipe
#             (configs/finetune/recipes/labram.yaml), braindecode.<Class> (e.g. braindecode.BIOT,
#             braindecode.CBraMod, braindecode.EEGNet) train from scratch with their own input contract
#             (models/zoo.py), no layer-wise lr decay (optim.layer_decay=1.0) and
#             configs/finetune/recipes/<class in lower case>.yaml when it exists
# --seeds LIST    comma-separated seeds instead of the paper's five (e.g. --seeds 42,2024 for a quick
#             comparison); the tables then expect these seeds
# --ensemble  also fit a gated ensemble (finetune/ensemble_main.py, EnECG) of the LIST models' runs per task
#             and seed, in RUNS_DIR/ensemble/<task>/seed<S>/ (needs two or more models; a task and seed
#             whose member runs did not finish is skipped, and said so); the comparison table then has an
#             "ensemble" row per task, with its uniform average and best single member beside it
# --labram-pretrained FILE   LaBraM checkpoint: the official checkpoints/labram-base.pth of
#             github.com/935963004/LaBraM, or one of pretrain/pretrain_main.py --config
#             configs/pretrain/labram_base.yaml; required when LIST has a LaBraM model
# The M4CEA ablations (variant <model>-random_masking, <model>-no_tie) run for each M4CEA model when their
# checkpoint is given, and are skipped (said so) otherwise:
# --random-masking-pretrained FILE   pretrained with random instead of knowledge-guided masking
#             (pretrain/pretrain_main.py ... --set masking.strategy=random)
# --no-tie-pretrained FILE   pretrained with LaBraM's temporal convolution instead of TIE
#             (pretrain/pretrain_main.py ... --set model.tie=false); fine-tuned with --set model.tie=false
# Further options go to every finetune/finetune_main.py call, e.g. --set data.num_workers=4 or
# --config cohort.yaml (a --config replaces LaBraM's recipe file), and, except --linear-probe, to every
# finetune/ensemble_main.py call (e.g. --set ensemble.inputs=features). A run that already finished
# (results.json) is kept, so a killed script resumes.
# LAUNCH replaces the Python command, e.g. LAUNCH="torchrun --nproc_per_node=8" on an 8-GPU node.
# Exit status: 0, 1 when a run failed (the others still run and the tables are printed), 2 on a usage error.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/_venv.sh"

USAGE="usage: bash scripts/reproduce_tables.sh [--models LIST] [--seeds LIST] [--ensemble] [--labram-pretrained FILE] \
[--random-masking-pretrained FILE] [--no-tie-pretrained FILE] PRETRAINED DATA_ROOT RUNS_DIR \
[finetune_main.py options ...]"
die() {
    echo "reproduce_tables.sh: error: $1" >&2
    exit 2
}
MODELS="m4cea_base,labram_base"
SEEDS_LIST="42,2024,3407,4399,114514"
ENSEMBLE=0
LABRAM_PRETRAINED=""
RANDOM_MASKING_PRETRAINED=""
NO_TIE_PRETRAINED=""
while [ $# -gt 0 ]; do
    case "$1" in
        --models) [ $# -ge 2 ] || die "--models needs a value"; MODELS="$2"; shift 2 ;;
        --seeds) [ $# -ge 2 ] || die "--seeds needs a value"; SEEDS_LIST="$2"; shift 2 ;;
        --ensemble) ENSEMBLE=1; shift ;;
        --labram-pretrained) [ $# -ge 2 ] || die "--labram-pretrained needs a file"; LABRAM_PRETRAINED="$2"; shift 2 ;;
        --random-masking-pretrained) [ $# -ge 2 ] || die "--random-masking-pretrained needs a file"
            RANDOM_MASKING_PRETRAINED="$2"; shift 2 ;;
        --no-tie-pretrained) [ $# -ge 2 ] || die "--no-tie-pretrained needs a file"; NO_TIE_PRETRAINED="$2"; shift 2 ;;
        *) break ;;
    esac
done
if [ $# -lt 3 ]; then
    echo "$USAGE" >&2
    exit 2
fi
PRETRAINED="$1"
DATA_ROOT="$2"
RUNS_DIR="$3"
shift 3
[ -f "$PRETRAINED" ] || die "pretrained checkpoint not found: $PRETRAINED"
[ -d "$DATA_ROOT" ] || die "data folder not found: $DATA_ROOT (one preprocessed folder per task)"
for file in "$LABRAM_PRETRAINED" "$RANDOM_MASKING_PRETRAINED" "$NO_TIE_PRETRAINED"; do
    [ -z "$file" ] || [ -f "$file" ] || die "checkpoint not found: $file"
done

# Variants: name, checkpoint and the finetune_main.py options that select the model.
VARIANT_NAMES=()
VARIANT_CKPTS=()
VARIANT_ARGS=()
IFS=',' read -r -a MODEL_LIST <<< "$MODELS"
[ ${#MODEL_LIST[@]} -gt 0 ] || die "--models needs at least one model name"
for model in "${MODEL_LIST[@]}"; do
    case "$model" in
        m4cea_*)
            VARIANT_NAMES+=("$model"); VARIANT_CKPTS+=("$PRETRAINED"); VARIANT_ARGS+=("--set model.name=$model")
            if [ -n "$RANDOM_MASKING_PRETRAINED" ]; then
                VARIANT_NAMES+=("$model-random_masking"); VARIANT_CKPTS+=("$RANDOM_MASKING_PRETRAINED")
                VARIANT_ARGS+=("--set model.name=$model")
            else
                echo "== $model-random_masking: skipped, no checkpoint (--random-masking-pretrained FILE)"
            fi
            if [ -n "$NO_TIE_PRETRAINED" ]; then
                VARIANT_NAMES+=("$model-no_tie"); VARIANT_CKPTS+=("$NO_TIE_PRETRAINED")
                VARIANT_ARGS+=("--set model.name=$model model.tie=false")
            else
                echo "== $model-no_tie: skipped, no checkpoint (--no-tie-pretrained FILE)"
            fi
            ;;
        labram_*)
            [ -n "$LABRAM_PRETRAINED" ] || die "$model needs --labram-pretrained FILE (the official \
checkpoints/labram-base.pth or a LaBraM pretraining checkpoint), or leave it out: --models m4cea_base"
            VARIANT_NAMES+=("$model"); VARIANT_CKPTS+=("$LABRAM_PRETRAINED")
            VARIANT_ARGS+=("--config $ROOT/configs/finetune/recipes/labram.yaml --set model.name=$model")
            ;;
        braindecode.?*)
            # trained from scratch; the class's input contract is models/zoo.py's (an unknown class fails
            # in finetune_main.py, naming the setting); no layer groups, so no layer-wise lr decay
            VARIANT_NAMES+=("$model"); VARIANT_CKPTS+=("")
            recipe="$ROOT/configs/finetune/recipes/$(echo "${model#braindecode.}" | tr '[:upper:]' '[:lower:]').yaml"
            zoo_args="--set model.name=$model optim.layer_decay=1.0"
            if [ -f "$recipe" ]; then
                VARIANT_ARGS+=("--config $recipe $zoo_args")
            else
                VARIANT_ARGS+=("$zoo_args")
            fi
            ;;
        *) die "unknown model '$model' in --models (allowed: m4cea_*, labram_* names of models.list_models(), \
braindecode.<Class>)" ;;
    esac
done
MEMBER_NAMES=()  # the ensemble's members: the LIST models, not the ablation variants
for model in "${MODEL_LIST[@]}"; do MEMBER_NAMES+=("$model"); done
if [ "$ENSEMBLE" -eq 1 ] && [ ${#MEMBER_NAMES[@]} -lt 2 ]; then
    die "--ensemble needs two or more models in --models, but got '$MODELS'"
fi

IFS=',' read -r -a SEEDS <<< "$SEEDS_LIST"
[ ${#SEEDS[@]} -gt 0 ] || die "--seeds needs at least one seed"
for seed in "${SEEDS[@]}"; do
    [[ "$seed" =~ ^[0-9]+$ ]] || die "--seeds takes comma-separated integers like 42,2024, but got '$SEEDS_LIST'"
done
read -r -a TASKS <<< "$("$PYTHON" -c 'from tasks import TASKS; print(" ".join(TASKS))')"
read -r -a LAUNCH_CMD <<< "${LAUNCH:-$PYTHON}"
FAILED=()
for v in "${!VARIANT_NAMES[@]}"; do
    variant="${VARIANT_NAMES[$v]}"
    read -r -a variant_args <<< "${VARIANT_ARGS[$v]}"
    for task in "${TASKS[@]}"; do
        if [ ! -f "$DATA_ROOT/$task/manifest.csv" ]; then
            echo "== $variant, $task: skipped, no data ($DATA_ROOT/$task/manifest.csv is absent)"
            continue
        fi
        for seed in "${SEEDS[@]}"; do
            if [ -f "$RUNS_DIR/$variant/$task/seed$seed/results.json" ]; then
                echo "== $variant, $task, seed $seed: already done ($RUNS_DIR/$variant/$task/seed$seed/results.json)"
                continue
            fi
            echo "== $variant, $task, seed $seed"
            pretrained=()
            [ -z "${VARIANT_CKPTS[$v]}" ] || pretrained=(--pretrained "${VARIANT_CKPTS[$v]}")
            if ! "${LAUNCH_CMD[@]}" "$ROOT/finetune/finetune_main.py" --task "$task" --seed "$seed" \
                --data "$DATA_ROOT/$task" --output "$RUNS_DIR/$variant" "${pretrained[@]}" \
                "${variant_args[@]}" "$@"; then
                FAILED+=("$variant/$task/seed$seed")
            fi
        done
    done
done

if [ "$ENSEMBLE" -eq 1 ]; then
    ENSEMBLE_ARGS=()
    for arg in "$@"; do [ "$arg" = "--linear-probe" ] || ENSEMBLE_ARGS+=("$arg"); done
    for task in "${TASKS[@]}"; do
        [ -f "$DATA_ROOT/$task/manifest.csv" ] || continue
        for seed in "${SEEDS[@]}"; do
            if [ -f "$RUNS_DIR/ensemble/$task/seed$seed/results.json" ]; then
                echo "== ensemble, $task, seed $seed: already done ($RUNS_DIR/ensemble/$task/seed$seed/results.json)"
                continue
            fi
            members=()
            unfinished=()
            for model in "${MEMBER_NAMES[@]}"; do
                member="$RUNS_DIR/$model/$task/seed$seed"
                members+=("$member")
                [ -f "$member/results.json" ] && [ -f "$member/checkpoint-best.pth" ] || unfinished+=("$member")
            done
            if [ ${#unfinished[@]} -gt 0 ]; then
                echo "== ensemble, $task, seed $seed: skipped, member runs not finished: ${unfinished[*]}"
                continue
            fi
            echo "== ensemble, $task, seed $seed"
            if ! "${LAUNCH_CMD[@]}" "$ROOT/finetune/ensemble_main.py" --task "$task" --seed "$seed" \
                --data "$DATA_ROOT/$task" --output "$RUNS_DIR/ensemble" --members "${members[@]}" \
                "${ENSEMBLE_ARGS[@]}"; then
                FAILED+=("ensemble/$task/seed$seed")
            fi
        done
    done
    VARIANT_NAMES+=("ensemble")
fi

mkdir -p "$RUNS_DIR/${VARIANT_NAMES[0]}"
"$PYTHON" "$ROOT/scripts/make_table.py" "$RUNS_DIR/${VARIANT_NAMES[0]}" --csv "$RUNS_DIR/table_main.csv" \
    --seeds "${SEEDS[@]}"
if [ ${#VARIANT_NAMES[@]} -gt 1 ]; then
    COMPARED=()
    for variant in "${VARIANT_NAMES[@]}"; do
        mkdir -p "$RUNS_DIR/$variant"
        COMPARED+=("$variant=$RUNS_DIR/$variant")
    done
    "$PYTHON" "$ROOT/scripts/make_table.py" --ablation "${COMPARED[@]}" --ablation-csv "$RUNS_DIR/table_comparison.csv" \
        --seeds "${SEEDS[@]}"
fi
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "reproduce_tables.sh: failed runs: ${FAILED[*]} (see their log.txt)" >&2
    exit 1
fi
