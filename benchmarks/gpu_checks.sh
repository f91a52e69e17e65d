#!/usr/bin/env bash
# The cascade's GPU checks, in one script: eval on CUDA in one process (fp32 and fp16) and under
# torchrun (nccl), a torchrun job with more ranks than the node has GPUs (refused in one line), the
# outputs compared, and synchronised latency of saver, base and cascade at batch 1 and 16.
#
#   OUT=runs/gpu bash benchmarks/gpu_checks.sh [N_IMAGES]      # demo pico -> s, first N val images
#
# Needs a CUDA GPU and the demo assets (TINYSAVER_ASSETS). Prints what each step printed and its exit code.
set -u
OUT=${OUT:-runs/gpu_checks}
N=${1:-500}
DEVICE=${DEVICE:-0}  # a dry run elsewhere: DEVICE=cpu
PY=${PYTHON:-python3}
export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
step() { echo; echo "== $*"; }
ARGS=(--limit "$N" --t 0.25 --full --quiet --overwrite)

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PY" -c "import torch, ultralytics, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl',
torch.cuda.nccl.version(), 'ultralytics', ultralytics.__version__, 'numpy', numpy.__version__)"

step "eval, one process, --device $DEVICE"
"$PY" -m tinysaver_det eval "${ARGS[@]}" --device "$DEVICE" --out "$OUT/one"; echo "rc $?"
step "eval under torchrun, one rank, --device $DEVICE"
torchrun --standalone --nproc_per_node 1 -m tinysaver_det eval "${ARGS[@]}" --device "$DEVICE" --out "$OUT/torchrun1"
echo "rc $?"
step "eval under torchrun, 2 ranks, --device $DEVICE, on $(nvidia-smi -L | wc -l) GPU(s)"
torchrun --standalone --nproc_per_node 2 -m tinysaver_det eval "${ARGS[@]}" --device "$DEVICE" --out "$OUT/torchrun2" \
    2>&1 | grep -E "^error:|rank [0-9]+ \(LOCAL_RANK" | sort -u
echo "rc ${PIPESTATUS[0]}"
step "eval, one process, --device $DEVICE --half"
"$PY" -m tinysaver_det eval "${ARGS[@]}" --device "$DEVICE" --half --out "$OUT/half"; echo "rc $?"

step "outputs compared"
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])

def rows(run, name):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / run / name).read_text().splitlines() if line.strip()]

def metrics(run):
    summary = json.loads((out / run / "summary.json").read_text())
    return {row["name"]: (row["metrics"]["AP"], row.get("exit_ratio"), row["gflops_per_image"]) for row in summary["rows"]}

if (out / "torchrun1" / "summary.json").is_file():
    same = all(rows("one", n) == rows("torchrun1", n) for n in ("records.jsonl", "saver_predictions.jsonl",
                                                                "base_predictions.jsonl"))
    same_json = all((out / "one" / n).read_bytes() == (out / "torchrun1" / n).read_bytes()
                    for n in ("results.json", "results_saver.json"))
    print("torchrun (1 rank) equals one process: records and predictions", same, "| results jsons", same_json)
for run in ("one", "half"):
    if (out / run / "summary.json").is_file():
        print(run, {name: f"AP {ap:.4f}, exit {r}, {g:.3f} GFLOPs" for name, (ap, r, g) in metrics(run).items()})
EOF

step "latency, synchronised (best of 3), fp32 and fp16"
"$PY" benchmarks/bench_latency.py --devices "$([ "$DEVICE" = cpu ] && echo cpu || echo "cuda:$DEVICE")" --half --limit 256 --batch 16 --repeats 3
