#!/usr/bin/env bash
# The main job on real recordings: bash scripts/quickstart.sh [DATA_DIR [OUT_DIR]]
#
# DATA_DIR holds recordings (any format MNE reads) and optionally an events.csv
# (recording, subject, onset_s, duration_s, label). Without DATA_DIR, the two real CHB-MIT crops in
# ../shared/data/chbmit/edf are used when present, otherwise CHB-MIT records chb01_03 and chb01_04 are
# downloaded from PhysioNet (sha256-checked) with their seizure times as events.
# OUT_DIR (default runs/quickstart) receives:
#   preprocessed/   pickled windows with MFDE weights, manifest.csv, config.yaml
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

EVENTS=()
[ -f "$DATA_DIR/events.csv" ] && EVENTS=(--events "$DATA_DIR/events.csv")

echo "== 1/1 Preprocessing (0.5-70 Hz, 50 Hz notch, 1000 Hz, 4-s windows, MFDE weights)"
"$PYTHON" preprocess/preprocess_main.py --input "$DATA_DIR" --output "$OUT_DIR/preprocessed" \
    "${EVENTS[@]}" --set labels.default=background

echo "Done: $OUT_DIR/preprocessed/manifest.csv"
