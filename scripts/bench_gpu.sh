#!/usr/bin/env bash
# The GPU figures in one command (issue 16): bash scripts/bench_gpu.sh [--dry-run] [OUT_DIR]
#
# On a machine with a CUDA GPU, in about 8 minutes, from the repository root:
#   1. training-step throughput of m4cea_base and labram_base: bf16 eager and
#      compiled, against the official-style fp32 step, with MFU (scripts/bench_train.py, batch 256);
#   2. a single-GPU DDP smoke run: torchrun --nproc_per_node=1 pretrain/pretrain_main.py (NCCL) for one
#      epoch of m4cea_base on synthetic windows (1 h of synthetic EEG, preprocessed with MFDE first);
#   3. the time to annotate a 24-h recording on the GPU (scripts/bench_predict.py --hours 24);
#   4. the pretraining loader's windows/s with 0, 4, 8 and 16 workers over those synthetic windows.
# Figures go to OUT_DIR/bench_gpu.json (default runs/bench_gpu), each step's output to OUT_DIR/*.log.
# A step that fails is recorded as failed (its log tail in the JSON) and the others still run; the exit
# status is then 1. Without CUDA the script stops at once with exit status 2.
#
# --dry-run: every step at toy size on the CPU (m4cea_tiny and labram_tiny, 2 minutes of EEG, gloo instead of NCCL, a
# 1-minute recording): checks the plumbing and the JSON on a machine without GPU; the figures mean
# nothing.
#
# Python: $PYTHON, else .venv/bin/python, else python3 (the project's requirements must be installed).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
OUT_DIR=""
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "bench_gpu.sh: unknown option $arg (allowed: --dry-run, --help)" >&2; exit 2 ;;
        *) [ -n "$OUT_DIR" ] && { echo "bench_gpu.sh: one OUT_DIR only" >&2; exit 2; }; OUT_DIR="$arg" ;;
    esac
done
OUT_DIR="${OUT_DIR:-runs/bench_gpu}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if [ "$DRY_RUN" = 0 ]; then
    if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        echo "bench_gpu.sh: no CUDA GPU visible to torch ($PYTHON): run it on a GPU machine, or use" \
            "--dry-run to check the steps on the CPU." >&2
        exit 2
    fi
    MODEL=m4cea_base; LABRAM_MODEL=labram_base; DEVICE=cuda; EEG_S=3600; PREDICT_HOURS=24; WORKERS="0 4 8 16"
    TRAIN_ARGS=(--device cuda --gpu-batch-size 256 --steps 20 --warmup 5
                --variants cuda-reference cuda-bf16 cuda-bf16-compile)
    DDP_SET=(--set runtime.device=cuda --set optim.batch_size=128 --set optim.micro_batch_size=128
             --set data.num_workers=8)
    PREDICT_ARGS=(--hours 24 --devices cuda)
    LOADER_BATCH=128
else
    MODEL=m4cea_tiny; LABRAM_MODEL=labram_tiny; DEVICE=cpu; EEG_S=120; PREDICT_HOURS=0.02; WORKERS="0 2"
    TRAIN_ARGS=(--device cpu --batch-size 2 --threads 1 --steps 1 --warmup 0 --variants cpu-fp32)
    DDP_SET=(--set runtime.device=cpu --set optim.batch_size=4 --set optim.micro_batch_size=4
             --set data.num_workers=0)
    PREDICT_ARGS=(--hours 0.02 --devices cpu --threads 1 --compile never)
    LOADER_BATCH=4
fi
mkdir -p "$OUT_DIR"
STATUS_FILE="$OUT_DIR/steps.tsv"
: > "$STATUS_FILE"

# run_step NAME TIMEOUT_S COMMAND...: output to OUT_DIR/NAME.log; one line "NAME<TAB>rc<TAB>seconds".
run_step() {
    local name="$1" limit="$2"; shift 2
    local start end rc
    echo "== $name: $*"
    start=$(date +%s)
    timeout "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
    rc=$?
    end=$(date +%s)
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((end - start))" >> "$STATUS_FILE"
    if [ "$rc" = 0 ]; then echo "   ok ($((end - start)) s)"; else echo "   FAILED (exit $rc; $OUT_DIR/$name.log)"; fi
}

# 1. Training-step throughput and MFU.
run_step train_m4cea 240 "$PYTHON" scripts/bench_train.py --model "$MODEL" "${TRAIN_ARGS[@]}" \
    --json "$OUT_DIR/train_m4cea.json"
run_step train_labram 150 "$PYTHON" scripts/bench_train.py --model "$LABRAM_MODEL" "${TRAIN_ARGS[@]}" \
    --json "$OUT_DIR/train_labram.json"

# 2. Synthetic windows (EDF -> preprocessing with MFDE), then a one-epoch DDP run under torchrun.
mkdir -p "$OUT_DIR/edf"
run_step make_data 180 bash -c "\"$PYTHON\" -c \"import sys; sys.path.insert(0, '.'); \
from preprocess.synthetic import write_long_edf; write_long_edf('$OUT_DIR/edf/synthetic.edf', $EEG_S)\" && \
rm -rf '$OUT_DIR/data' && \"$PYTHON\" preprocess/preprocess_main.py --input '$OUT_DIR/edf' \
--output '$OUT_DIR/data' --workers 4 --quiet --set labels.default=background"
rm -rf "$OUT_DIR/ddp"
run_step ddp_smoke 180 env NCCL_DEBUG=INFO "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 \
    pretrain/pretrain_main.py --config "configs/pretrain/$MODEL.yaml" --data "$OUT_DIR/data" \
    --output "$OUT_DIR/ddp" --epochs 1 "${DDP_SET[@]}" --set optim.warmup_epochs=0 \
    --set logging.log_every=1 --set logging.tensorboard=false

# 3. 24-h prediction.
run_step predict 300 "$PYTHON" scripts/bench_predict.py "${PREDICT_ARGS[@]}" --workdir "$OUT_DIR/predict"

# 4. Loader windows/s with N workers.
run_step loader 120 "$PYTHON" - "$OUT_DIR/data" "$LOADER_BATCH" "$DEVICE" $WORKERS <<'PYTHON'
import json, sys, time

sys.path.insert(0, ".")
from models import get_input_contract  # noqa: E402
from pretrain.data import PretrainDataset, build_pretrain_loader  # noqa: E402

root, batch, device, workers = sys.argv[1], int(sys.argv[2]), sys.argv[3], [int(w) for w in sys.argv[4:]]
dataset = PretrainDataset(root, get_input_contract("m4cea_base"), n_chans=16, n_times=4000, n_tokens=320)
for n_workers in workers:
    loader, sampler = build_pretrain_loader(
        dataset, micro_batch_size=batch, num_workers=n_workers, pin_memory=device == "cuda"
    )
    n_windows, epoch, start = 0, 0, time.perf_counter()
    while n_windows < 4 * len(dataset) and time.perf_counter() - start < 15:  # a few epochs, <= ~15 s
        sampler.set_epoch(epoch)
        for x, _ in loader:
            n_windows += len(x)
        epoch += 1
    seconds = time.perf_counter() - start  # includes starting the workers, once per epoch
    print(json.dumps({"workers": n_workers, "windows": n_windows, "seconds": round(seconds, 3),
                      "windows_per_s": round(n_windows / seconds, 1)}))
PYTHON

# Everything into one JSON.
"$PYTHON" - "$OUT_DIR" "$DRY_RUN" "$MODEL" "$PREDICT_HOURS" <<'PYTHON'
import json, re, sys
from pathlib import Path

out, dry_run, model, predict_hours = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], float(sys.argv[4])
steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, seconds = line.split("\t")
    log = (out / f"{name}.log").read_text(errors="replace")
    steps[name] = {"ok": rc == "0", "exit_status": int(rc), "seconds": int(seconds)}
    if rc != "0":
        steps[name]["log_tail"] = log[-1500:]
result = {"dry_run": dry_run, "model": model, "predict_hours": predict_hours, "steps": steps}
try:
    import torch

    result["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    result["torch"] = torch.__version__
except ImportError:
    pass
for name in ("train_m4cea", "train_labram"):
    path = out / f"{name}.json"
    if path.is_file():
        result[name] = json.loads(path.read_text())
if steps.get("ddp_smoke", {}).get("ok"):
    log = (out / "ddp_smoke.log").read_text(errors="replace")
    metrics = out / "ddp" / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    epochs = [json.loads(line) for line in lines if line.strip()]
    result["ddp_smoke"] = {
        "seconds": steps["ddp_smoke"]["seconds"],
        "backend": "nccl" if "NCCL INFO" in log else ("gloo (dry run)" if dry_run else "unknown: no NCCL output"),
        "last_epoch": epochs[-1] if epochs else None,
    }
if steps.get("predict", {}).get("ok"):
    text = (out / "predict.log").read_text(errors="replace")
    rows = re.findall(
        r"^\s*(\w+)\s+([\d.]+) h\s+(\w+)\s+(\w+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text, re.M
    )
    result["predict"] = [
        {"model": m, "hours": float(h), "device": d, "amp": a, "windows": int(w), "wall_s": float(s),
         "windows_per_s": float(r), "peak_gb": float(g)}
        for m, h, d, a, w, s, r, g in rows
    ]
    # each row's next line: where its time went (the model, its compilation, the rest)
    splits = re.findall(
        r"in that run: the model ([\d.]+) s .*?\+ compiling ([\d.]+) s; the rest ([\d.]+) s", text
    )
    for row, (model_s, compile_s, rest_s) in zip(result["predict"], splits):
        row.update(model_s=float(model_s), compile_s=float(compile_s), rest_s=float(rest_s))
if steps.get("loader", {}).get("ok"):
    lines = (out / "loader.log").read_text().splitlines()
    result["loader"] = [json.loads(line) for line in lines if line.startswith("{")]
(out / "bench_gpu.json").write_text(json.dumps(result, indent=2) + "\n")
print(f"figures: {out / 'bench_gpu.json'}")
PYTHON
if grep -qv $'\t0\t' "$STATUS_FILE"; then
    echo "bench_gpu.sh: some steps failed (see $OUT_DIR/bench_gpu.json)" >&2
    exit 1
fi
