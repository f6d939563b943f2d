#!/usr/bin/env bash
# The check to run on a GPU, in one go, within BUDGET seconds (default 480: 8 minutes on one H100; it has not
# run yet, as no GPU has been lent to the project, so the times are planned, not measured). Every part runs
# whatever the others did, and the summary says what each found:
#   decode     ms per decode step at the gpu preset's rollout shape (512 rows), CUDA graph vs eager; the
#              first call's compile time; graphs compiled, recompiles for other prompt lengths (must be 0),
#              CUDA-graph skips (must be 0); the memory held by static caches and graph pools, and what is
#              left once the model is dropped                                              (planned ~90 s)
#   grpo       ratio_dev of an update with mu 2 and a KL term (must be 0), eager and compiled; the compiled
#              update's compile time and speed                                             (planned ~100 s)
#   cap24      one whole R1-Zero GRPO step at the gpu preset with the process capped at 24 GiB
#   cap16      the same at 16 GiB (torch.cuda.set_per_process_memory_fraction): fits, or the out-of-memory
#              message                                                                     (~45 s each)
#   ddp        a GRPO update through DDP on one NCCL rank                                  (~20 s)
#   float32    the path of a GPU without bf16 (a T4), forced: float32 cache, decode, update (~60 s)
#   cuda_tests the CUDA variants of tests/test_cuda_paths.py and the CUDA-only sampling tests, in the time left
# Each part's log is $OUT/NAME.log; the figures are in $OUT/results.jsonl and the summary at the end.
#
#   bash benchmarks/gpu_check.sh                 # OUT=out/gpu_check BUDGET=480
#   DEVICE=cpu MODEL=toy bash benchmarks/gpu_check.sh    # a dry run of the script itself on the CPU
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-out/gpu_check}
BUDGET=${BUDGET:-480}
DEVICE=${DEVICE:-cuda}
MODEL=${MODEL:-gpu}
rm -rf "$OUT" && mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
$PY -c "import torch
if '$DEVICE' == 'cuda':
    assert torch.cuda.is_available(), 'gpu_check.sh needs a CUDA GPU (DEVICE=cpu MODEL=toy for a dry run)'
    print(torch.cuda.get_device_name(0), 'capability', torch.cuda.get_device_capability(0), end=', ')
print('torch', torch.__version__, 'CUDA', torch.version.cuda)" | tee "$OUT/device.txt" || exit 1
: > "$OUT/parts.tsv"

part() {  # part NAME SECONDS command...: run it within SECONDS and what is left of BUDGET; log; note the outcome
  local name=$1 limit=$2 t0=$SECONDS left status
  shift 2
  left=$((BUDGET - SECONDS))
  if [ "$left" -lt 20 ]; then
    printf '%s\tnot run (the %s s budget is spent)\t0\n' "$name" "$BUDGET" >> "$OUT/parts.tsv"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (at most $limit s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  case $? in
    0) status=ok ;;
    124|137) status="TIMED OUT after $limit s" ;;
    *) status="FAILED (see $OUT/$name.log)" ;;
  esac
  grep '^RESULT ' "$OUT/$name.log" | sed 's/^RESULT //' >> "$OUT/results.jsonl"
  printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t0))" >> "$OUT/parts.tsv"
  tail -n 2 "$OUT/$name.log"
}

CHECK=(benchmarks/gpu_check.py --device "$DEVICE" --model "$MODEL")
part decode 150 $PY "${CHECK[@]}" decode
part grpo 150 $PY "${CHECK[@]}" grpo
part cap24 90 $PY "${CHECK[@]}" cap 24
part cap16 90 $PY "${CHECK[@]}" cap 16
part ddp 60 $PY "${CHECK[@]}" ddp
part float32 90 $PY "${CHECK[@]}" float32
if [ "$DEVICE" = cuda ]; then
  part cuda_tests 300 $PY -m pytest -q -p no:cacheprovider tests/test_cuda_paths.py -k "not emulated" \
    tests/test_sampling.py::test_generate_on_cuda_float32_model tests/test_sampling.py::test_static_generate_on_cuda_compiled
fi

$PY - "$OUT" "$SECONDS" <<'PYEOF'
import json, sys
from pathlib import Path
out, seconds = Path(sys.argv[1]), sys.argv[2]
print(f"\n{(out / 'device.txt').read_text().strip()}; {seconds} s in all\n")
print("| part | outcome | seconds |\n|---|---|---|")
for line in (out / "parts.tsv").read_text().splitlines():
    print("| " + " | ".join(line.split("\t")) + " |")
path = out / "results.jsonl"
results = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
print("\n| check | figures |\n|---|---|")
for r in results:
    name = r["check"] + (f" {r['gib']:g} GiB" if "gib" in r else "")
    print(f"| {name} | " + ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("check", "gib")) + " |")
# what must hold, by check and figure
MUST = {"decode": {"recompiles": lambda v: v == 0, "cudagraph_skips": lambda v: v == 0,
                   "allocated_after_drop_mib": lambda v: v < 64, "graph_pool_after_drop_mib": lambda v: v < 64},
        "grpo": {"eager_ratio_dev": lambda v: v == 0, "compiled_ratio_dev": lambda v: v == 0},
        "cap": {"ok": lambda v: v is True, "ratio_dev": lambda v: v == 0},
        "float32": {"cache_dtypes": lambda v: v == ["torch.float32"]}}
print()
for r in results:
    for key, holds in MUST.get(r["check"], {}).items():
        if key in r:
            print(f"{'ok  ' if holds(r[key]) else 'BAD '} {r['check']}{' ' + str(r['gib']) if 'gib' in r else ''} "
                  f"{key} = {r[key]}")
PYEOF
