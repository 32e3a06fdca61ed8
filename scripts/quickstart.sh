#!/usr/bin/env bash
# The main job on real recordings: bash scripts/quickstart.sh [DATA_DIR [OUT_DIR]]
#
# DATA_DIR holds recordings (any format MNE reads) and optionally an events.csv
# (recording, subject, onset_s, duration_s, label). Without DATA_DIR, the two real CHB-MIT crops in
# ../shared/data/chbmit/edf are used when present, otherwise CHB-MIT records chb01_03 and chb01_04 are
# downloaded from PhysioNet (sha256-checked) with their seizure times as events.
#
# OUT_DIR (default runs/quickstart) receives:
#   preprocessed/                          windows with MFDE weights, manifest.csv, config.yaml
#   pretrain/                              a short knowledge-guided pretraining of m4cea_tiny
#   finetune/onset_detection/seed42/       fine-tuning and test results (results.json, figures)
#   finetune/table_main.csv                the results table
#   predict/                               the fine-tuned model applied to the recordings
# A few minutes on a laptop CPU. Rerunning with the same OUT_DIR resumes preprocessing (recordings already
# in OUT_DIR/preprocessed are skipped; a different preprocessing config is refused: use a new OUT_DIR) and
# runs pretraining, fine-tuning and prediction again from scratch (their folders are removed first).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh

DATA_DIR="${1:-}"
OUT_DIR="${2:-runs/quickstart}"
if [ -z "$DATA_DIR" ]; then
    if [ -d ../shared/data/chbmit/edf ]; then
        DATA_DIR=../shared/data/chbmit/edf
    else
        DATA_DIR="$("$PYTHON" preprocess/datasets/chbmit.py fetch --records chb01_03 chb01_04)"
    fi
fi
echo "Data: $DATA_DIR -> $OUT_DIR"
rm -rf "$OUT_DIR/pretrain" "$OUT_DIR/finetune" "$OUT_DIR/predict"

EVENTS=()
[ -f "$DATA_DIR/events.csv" ] && EVENTS=(--events "$DATA_DIR/events.csv")

echo "== 1/5 Preprocessing (0.5-70 Hz, 50 Hz notch, 1000 Hz, 4-s windows, MFDE weights)"
"$PYTHON" preprocess/preprocess_main.py --input "$DATA_DIR" --output "$OUT_DIR/preprocessed" \
    "${EVENTS[@]}" --set labels.default=background

echo "== 2/5 Pretraining m4cea_tiny (knowledge-guided masking, 10 short epochs)"
"$PYTHON" pretrain/pretrain_main.py --config configs/pretrain/m4cea_tiny.yaml \
    --data "$OUT_DIR/preprocessed" --output "$OUT_DIR/pretrain" --epochs 10

# One subject: train and test within it (patient-specific protocol); several: subject-wise splits.
N_SUBJECTS="$("$PYTHON" -c "import sys; from preprocess.segments import read_manifest; \
print(len({r['subject'] for r in read_manifest(sys.argv[1])}))" "$OUT_DIR/preprocessed")"
PROTOCOL=subject_wise
[ "$N_SUBJECTS" -lt 3 ] && PROTOCOL=patient_specific
echo "== 3/5 Fine-tuning onset_detection, seed 42 ($N_SUBJECTS subject(s): $PROTOCOL split)"
# Settings for a demo on a few dozen windows: small batches, a high learning rate, no layer decay.
"$PYTHON" finetune/finetune_main.py --task onset_detection --seed 42 --data "$OUT_DIR/preprocessed" \
    --output "$OUT_DIR/finetune" --pretrained "$OUT_DIR/pretrain/checkpoint-last.pth" --epochs 10 \
    --set model.name=m4cea_tiny --set split.protocol="$PROTOCOL" --set split.patient_specific_by=time_block \
    --set split.val_fraction=0.2 --set split.test_fraction=0.2 --set data.num_workers=0 \
    --set optim.batch_size=4 --set optim.micro_batch_size=4 --set optim.base_lr=0.5 \
    --set optim.layer_decay=1.0 --set optim.warmup_epochs=1

echo "== 4/5 Results table"
"$PYTHON" scripts/make_table.py "$OUT_DIR/finetune" --seeds 42

# How much EEG the demonstration saw (the recordings' length, in s), said on its figures and at the end.
EEG_S="$("$PYTHON" -c "import sys; from preprocess.reading import find_recordings, read_recording
raws = [read_recording(p) for p in find_recordings([sys.argv[1]])]
print(round(sum(r.n_times / r.info['sfreq'] for r in raws)))" "$DATA_DIR")"
NOTE="DEMONSTRATION, not a result - m4cea_tiny trained on $EEG_S s of EEG of $N_SUBJECTS subject(s)"

echo "== 5/5 Prediction: the fine-tuned model applied to the recordings (events, figures)"
"$PYTHON" finetune/predict.py --checkpoint "$OUT_DIR/finetune/onset_detection/seed42" --input "$DATA_DIR" \
    --output "$OUT_DIR/predict" --set "figure.note=$NOTE"

echo
echo "Outputs:"
echo "  windows + manifest:   $OUT_DIR/preprocessed/manifest.csv"
echo "  pretraining:          $OUT_DIR/pretrain/checkpoint-last.pth (log: metrics.jsonl)"
echo "  fine-tuning results:  $OUT_DIR/finetune/onset_detection/seed42/results.json"
echo "  table:                $OUT_DIR/finetune/table_main.csv"
echo "  prediction:           $OUT_DIR/predict/"

echo
echo "NOT A RESULT: this model is a demonstration on $EEG_S s of EEG ($N_SUBJECTS subject(s)), trained for"
echo "10 short epochs and tested on a handful of windows of the same recordings. Its figures show that the"
echo "pipeline runs end to end, not how well M4CEA detects seizures (see the warnings in results.json)."
echo "For real figures, on whole datasets with subject-wise splits and the five seeds:"
echo "  python preprocess/preprocess_main.py --dataset chbmit --task onset_detection --input CHBMIT_ROOT --output DATA"
echo "  python finetune/finetune_main.py --task onset_detection --seed 42 --data DATA --pretrained CKPT --output RUNS"
echo "  bash scripts/reproduce_tables.sh --labram-pretrained labram-base.pth CKPT DATA_ROOT RUNS"
echo "      # M4CEA and LaBraM on every task (DATA_ROOT/<task>) x the five seeds (--models m4cea_base: M4CEA only)"
echo "  python scripts/make_table.py RUNS                       # mean +/- std over seeds, n and warnings"
echo "(README, section 3, and docs/finetuning.md: fine-tuning, splits, evidence and tables.)"
