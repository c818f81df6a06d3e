#!/usr/bin/env bash
# The GPU path, measured: install, start a GPU worker, run the throughput benches for text and ViT-B-32 image
# creatives, print creatives/s and GPU memory. Written to be run as soon as a machine with a GPU is at hand:
#
#   bash bench/gpu_check.sh                      # on the GPU machine (CTAX_DEVICE=cuda)
#   bash bench/gpu_check.sh --device cpu --quick # the same steps on CPU: what keeps the script from rotting
#
# Options: --device cuda|cpu (default cuda), --quick (small payloads, no accuracy runs), --no-install,
# --out DIR (default: a new temporary folder). Figures land in DIR as JSON beside the printed tables.
# CTAX_PYTHON (default .venv/bin/python): the interpreter, for a machine whose image already holds torch with CUDA
# and cannot reach a package registry (then --no-install, with the missing packages on PYTHONPATH).
#  1. `make install` (offline: HF_HUB_OFFLINE=1; the venv's onnxruntime has a CUDA provider only if
#     onnxruntime-gpu is installed: without it the onnx backends are left out on CUDA, and the script says so).
#  2. The device: nvidia-smi's view, torch's, onnxruntime's providers.
#  3. python -m bench.backends --device DEVICE: per backend, raw creatives/s at the worker's batch size and end to
#     end through a worker runtime on DEVICE (fp16/bf16 autocast, batch sized from free memory, pinned copies),
#     text and ViT-B-32 image creatives, torch's peak GPU memory per backend.
#  4. (not with --quick) python -m bench.throughput with CTAX_DEVICE=DEVICE: the service as processes, its
#     labelling worker on DEVICE, end to end over HTTP (its "raw" column is the encoders on this process's CPU).
#  nvidia-smi samples the GPU's used memory every 500 ms throughout; the peak is printed at the end.
set -euo pipefail

DEVICE=cuda
QUICK=0
INSTALL=1
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --no-install) INSTALL=0; shift ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-$(mktemp -d -t ctax-gpu-check-XXXXXX)}"
mkdir -p "$OUT"
PY="${CTAX_PYTHON:-.venv/bin/python}"
echo "== gpu_check: device $DEVICE, quick $QUICK, figures in $OUT"

if [[ $INSTALL -eq 1 ]]; then
    echo "== make install"
    make install
fi

echo "== the device"
SAMPLER=""
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv | tee "$OUT/gpu.csv"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/gpu_memory_mib.log" &
    SAMPLER=$!
    trap '[[ -n "$SAMPLER" ]] && kill "$SAMPLER" 2>/dev/null || true' EXIT
elif [[ "$DEVICE" == cuda* ]]; then
    echo "gpu_check.sh: --device $DEVICE but nvidia-smi is not here; is this the GPU machine?" >&2
    exit 1
fi
"$PY" - "$DEVICE" <<'PY'
import sys

import onnxruntime
import torch

device = sys.argv[1]
print(f"torch {torch.__version__}: cuda available {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}" if torch.cuda.is_available()
         else ""))
print(f"onnxruntime {onnxruntime.__version__}: providers {', '.join(onnxruntime.get_available_providers())}")
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"gpu_check.sh: --device {device} but torch sees no CUDA device")
PY

echo "== bench.backends on $DEVICE"
if [[ $QUICK -eq 1 ]]; then
    "$PY" -m bench.backends --device "$DEVICE" --quick --backends torch,onnx --json "$OUT/backends.json"
else
    "$PY" -m bench.backends --device "$DEVICE" --no-eval --n-text 4096 --n-image 1024 --batch-size 256 \
        --json "$OUT/backends.json"
    echo "== bench.throughput: the service's labelling worker on $DEVICE"
    CTAX_DEVICE="$DEVICE" "$PY" -m bench.throughput --modes text,image --n-text 4000 --n-image 1000 \
        --batch-size 256 --json "$OUT/throughput.json"
fi

echo "== summary"
"$PY" - "$OUT" <<'PY'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
for row in json.loads((out / "backends.json").read_text()):
    peak = row.get("gpu_torch_peak_mib")
    print(f"{row['modality']:>5} {row['backend']:<14} raw {row['raw_per_s']:8.1f}/s  end to end "
          f"{row['end_to_end_per_s']:8.1f}/s  cosine {row['cosine_to_torch']:.5f}"
          + (f"  torch peak {peak:.0f} MiB" if peak is not None else ""))
if (out / "throughput.json").is_file():
    for row in json.loads((out / "throughput.json").read_text()):
        print(f"service {row['mode']:>5} {row['endpoint']:<10} end to end {row['end_to_end_per_s']:8.1f}/s  raw "
              f"{row['raw_encoder_per_s']:8.1f}/s on {row.get('device', 'cpu')}  ratio {row['ratio']:.2f}")
samples = out / "gpu_memory_mib.log"
if samples.is_file() and samples.stat().st_size:
    used = [int(line) for line in samples.read_text().split() if line.strip().isdigit()]
    print(f"GPU memory used (nvidia-smi, whole run): peak {max(used)} MiB over {len(used)} samples")
PY
