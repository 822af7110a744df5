#!/usr/bin/env bash
# Runs both sides of the generation / LoRA-training benchmark back to back on the same model:
# Burn (models/examples/bench_generate.rs, release build) and PyTorch + PEFT (bench/pytorch_peft.py).
# Usage: bench/run.sh [path/to/model.gguf]   (PYTHON defaults to /work/venv-bench/bin/python)
# Run it on an otherwise idle machine: other processes on the same cores skew both sides, and
# PyTorch's OpenMP threads (which spin while waiting) far more than Burn's.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-${HEARTH_ASSETS:-assets}/SmolLM2-135M-Instruct.Q4_1.gguf}"
python="${PYTHON:-/work/venv-bench/bin/python}"
echo "== $(date -u +%FT%TZ) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== Burn"
cargo run --release -q -p hearth-models --example bench_generate -- "$model"
echo "== PyTorch + PEFT"
"$python" -u bench/pytorch_peft.py --model "$model" --threads "$(nproc)" ${BENCH_JSON:+--json "$BENCH_JSON"} 2>&1 \
    | grep -v -i -e 'de-quantizing' -e '^Loading weights' -e 'warn'
echo "== done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
