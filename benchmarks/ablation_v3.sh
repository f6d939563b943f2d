#!/usr/bin/env bash
# The DeepSeek-V3 architecture ablation: the cpu base as it is (GQA), with MLA, with MTP (D=1, lambda 0.3),
# with both; each pretrained on the same token budget, then R1-Zero on each. Runs one after another; prints
# the table (benchmarks/ablation_table.py) at the end.
#
#   bash benchmarks/ablation_v3.sh                       # out/ablation, the cpu preset's budgets
#   OUT=/tmp/abl PRETRAIN_STEPS=500 ZERO_STEPS=100 bash benchmarks/ablation_v3.sh   # a smaller, equal budget
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-out/ablation}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-700}
ZERO_STEPS=${ZERO_STEPS:-150}
declare -A FLAGS=([gqa]="" [mla]="--attn mla" [mtp]="--mtp_depth 1" [mla_mtp]="--attn mla --mtp_depth 1")
for variant in gqa mla mtp mla_mtp; do
  echo "== $variant: pretrain $PRETRAIN_STEPS steps ${FLAGS[$variant]}"
  $PY pretrain.py --preset cpu --out "$OUT/$variant/base" --max_steps "$PRETRAIN_STEPS" ${FLAGS[$variant]}
  echo "== $variant: R1-Zero $ZERO_STEPS steps"
  $PY train_zero.py --preset cpu --init "$OUT/$variant/base" --out "$OUT/$variant/zero" --steps "$ZERO_STEPS" \
    --eval_every "$ZERO_STEPS"
done
$PY benchmarks/ablation_table.py "$OUT"
