#!/usr/bin/env bash
# The whole recipe, every stage in order, then a report:
#   teacher and student bases -> R1-Zero -> the four R1 stages -> distillation into the student
#   -> the student trained by RL alone (the paper's Table 6) -> evaluation of every checkpoint -> report.
#
#   bash speedrun.sh          # gpu preset with CUDA, else cpu (2 CPU cores: see the README for the time)
#   bash speedrun.sh toy      # under a minute on 2 cores: does everything run? (a smoke test, not the science)
#   OUT=/tmp/run bash speedrun.sh cpu
#
# Writes OUT (default out/, or out/toy for toy): one checkpoint directory per stage, times.tsv (wall time
# of each stage), report.md and report.json. Rerunning skips a stage whose checkpoint is complete, was made at
# this preset by the same command and the same code (stamps/NAME records both), and whose inputs were not
# remade; it resumes an interrupted stage and remakes the others (the old checkpoint moves to NAME.old). After
# editing code, a rerun therefore runs what the edit touches. KEEP=1 skips every complete stage whatever
# changed; delete OUT to start over (rm -rf out/toy for toy). Extra flags for one stage: ZERO_FLAGS, R1_FLAGS,
# DISTILL_FLAGS, STUDENT_RL_FLAGS, EVAL_FLAGS, PRETRAIN_FLAGS (e.g. ZERO_FLAGS="--steps 50"). SEED=N trains every
# stage with --seed N (another run of the same recipe); the evaluation keeps its own seed, so that runs of
# different seeds are tested on the same problems.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
SEED_FLAG=${SEED:+--seed $SEED}
PRESET=${1:-$($PY -c "from r1mini.device import default_preset; print(default_preset())" | tail -1)}  # gpu needs bf16 (Ampere+)
case "$PRESET" in toy|cpu|gpu) ;; *) echo "usage: bash speedrun.sh [toy|cpu|gpu]" >&2; exit 2;; esac
if [ "$PRESET" = toy ]; then OUT=${OUT:-out/toy}; else OUT=${OUT:-out}; fi
mkdir -p "$OUT"
# times.tsv: each stage's wall time; a stage skipped on a rerun keeps the time it took when it ran
if [ -f "$OUT/times.tsv" ]; then mv "$OUT/times.tsv" "$OUT/times.before.tsv"; else : > "$OUT/times.before.tsv"; fi
: > "$OUT/times.tsv"
$PY - > "$OUT/hardware.txt" <<'PYEOF'
import os, platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), {gpu}, torch {torch.__version__}")
PYEOF

done_ckpt() {  # is there a finished checkpoint of this preset in $1? (one of another preset is not skipped:
  # the stage's script then stops with a message that names both presets)
  [ -f "$1/meta.json" ] && $PY -c "import json,sys; m = json.load(open('$1/meta.json')); \
sys.exit(0 if m.get('done') and str(m.get('preset') or '$PRESET').split('-')[0] == '$PRESET' else 1)"
}

stamp() {  # stamp PYTHON SCRIPT ARGS...: the command line (OUT, which can move, as $OUT), then a hash of each
  # file of code it runs (its script, r1mini/)
  local command="${*:2}"
  echo "command: ${command//$OUT/\$OUT}"
  $PY -c "import hashlib, sys; [print(hashlib.sha256(open(f, 'rb').read()).hexdigest(), f) for f in sys.argv[1:]]" \
    "$2" r1mini/*.py
}

changed() {  # changed OLD_STAMP NEW_STAMP: what differs, in words
  if [ -z "$1" ]; then echo "no stamp says what made it"; return; fi
  if [ "$(head -1 <<< "$1")" != "$(head -1 <<< "$2")" ]; then echo "its command differs"; return; fi
  echo "code changed since: $(diff <(echo "$1") <(echo "$2") | awk '/^>/ {print $3}' | paste -sd' ' -)"
}

: > "$OUT/ran"  # the stages this run ran, one a line (stages side by side write it too): one that uses them is remade
stage() {  # stage NAME CHECKPOINT OUT_DIR "INPUT_STAGES" command...: run unless complete and current; time it
  local name=$1 ckpt=$2 dir=$3 inputs=$4; shift 4
  local new old="" why="" input
  new=$(stamp "$@")
  if [ -n "$ckpt" ] && done_ckpt "$ckpt"; then
    [ -f "$OUT/stamps/$name" ] && old=$(cat "$OUT/stamps/$name")
    for input in $inputs; do grep -qx "$input" "$OUT/ran" && why="$input was remade"; done
    [ -z "$why" ] && [ "$old" != "$new" ] && why=$(changed "$old" "$new")
    if [ -z "$why" ] || [ "${KEEP:-0}" = 1 ]; then
      echo "== $name: $ckpt is complete, skipping (rm -rf $OUT to start over)"
      local before
      before=$(awk -F'\t' -v n="$name" '$1 == n {s = $2} END {print s + 0}' "$OUT/times.before.tsv")
      printf '%s\t%s\tskipped\n' "$name" "$before" >> "$OUT/times.tsv"
      return
    fi
    echo "== $name: remaking $ckpt ($why); the old one moves to $dir.old"
    rm -rf "$dir.old" && mv "$dir" "$dir.old"
  fi
  echo "== $name: $*"
  local t0=$SECONDS
  "$@"
  printf '%s\t%s\tran\n' "$name" "$((SECONDS - t0))" >> "$OUT/times.tsv"
  mkdir -p "$OUT/stamps" && echo "$new" > "$OUT/stamps/$name"
  echo "$name" >> "$OUT/ran"
}

# Independent stages run side by side, one thread each, on the CPU (cpu and toy presets): small models use two
# threads poorly when they decode a few rows at a time (bound by per-operation overhead), so two processes of
# one thread get more done than one of two. Pretraining's large matmuls are the exception (bench_train.py at the
# cpu preset: ~19k tokens/s on two threads, ~10k on one), so the teacher's base trains alone on every core.
# On a GPU the stages run one after the other. SIDE_BY_SIDE=0 forces that.
[ "$PRESET" = gpu ] && SIDE=${SIDE_BY_SIDE:-0} || SIDE=${SIDE_BY_SIDE:-1}
BESIDE=""  # the process running beside, to wait for (a plain `wait` would not stop on its failure)
beside() {  # beside COMMAND...: in the background with one thread when side by side, else now
  if [ "$SIDE" = 1 ]; then (export OMP_NUM_THREADS=1; "$@") & BESIDE=$!; else "$@"; fi
}
joined() {  # wait for what runs beside, and fail if it failed
  if [ -n "$BESIDE" ]; then wait "$BESIDE"; BESIDE=""; fi
}
stop_beside() {  # on the way out after a failure, stop what runs beside: its stages would run on for minutes
  if [ -n "$BESIDE" ]; then pkill -TERM -P "$BESIDE" 2>/dev/null || true; kill "$BESIDE" 2>/dev/null || true; fi
}
trap stop_beside EXIT
alone() {  # alone COMMAND...: with one thread when another runs beside it, else all of them
  if [ "$SIDE" = 1 ]; then (export OMP_NUM_THREADS=1; "$@"); else "$@"; fi
}
ckpts() { local c s=""; for c in "$@"; do s="$s${s:+,}$OUT/$c"; done; echo "$s"; }  # a,b -> $OUT/a,$OUT/b
student_lane() {  # the student's base trained by R1-Zero's recipe instead of distillation (the paper's Table 6),
  # with the learning rate chosen for the student on the dev split (cpu: benchmarks/sweep_student_rl.py,
  # docs/runs/student_sweep.md; replies get the preset's length; STUDENT_RL_FLAGS replaces it); then the
  # student's base, distilled and RL-only checkpoints on the test split
  stage student_rl_only "$OUT/student_zero" "$OUT/student_zero" pretrain_student \
    $PY train_zero.py --preset "$PRESET" --init "$OUT/student_base" --out "$OUT/student_zero" \
    ${STUDENT_RL_FLAGS-$STUDENT_CHOSEN} $SEED_FLAG
  stage eval_student "" "" "" $PY eval.py --preset "$PRESET" --out "$OUT/eval_student.json" --show 0 \
    --init "$(ckpts student_base student student_zero)" ${EVAL_FLAGS:-}
}
[ "$PRESET" = cpu ] && STUDENT_CHOSEN="--lr 3e-5" || STUDENT_CHOSEN=""

T0=$SECONDS
# 1. the teacher's base, on every core
stage pretrain "$OUT/base" "$OUT/base" "" \
  $PY pretrain.py --preset "$PRESET" --out "$OUT/base" ${PRETRAIN_FLAGS:-} $SEED_FLAG
# 2. beside: the student's base; alone: R1-Zero and the four R1 stages
beside stage pretrain_student "$OUT/student_base" "$OUT/student_base" "" \
  $PY pretrain.py --preset "$PRESET-student" --out "$OUT/student_base" ${PRETRAIN_FLAGS:-} $SEED_FLAG
alone stage r1_zero "$OUT/zero" "$OUT/zero" pretrain \
  $PY train_zero.py --preset "$PRESET" --init "$OUT/base" --out "$OUT/zero" ${ZERO_FLAGS:-} $SEED_FLAG
alone stage r1 "$OUT/r1/final_rl" "$OUT/r1" r1_zero \
  $PY train_r1.py --preset "$PRESET" --init "$OUT/zero" --out "$OUT/r1" ${R1_FLAGS:-} $SEED_FLAG
joined
# distillation of R1 into the student's base, on every core
stage distill "$OUT/student" "$OUT/student" "r1 pretrain_student" \
  $PY distill.py --preset "$PRESET" --init "$OUT/r1/final_rl" --student "$OUT/student_base" --out "$OUT/student" \
  ${DISTILL_FLAGS:-} $SEED_FLAG
# 3. beside: the student by RL alone, then the student's three checkpoints on the test split; alone: the teacher's
# six (each checkpoint's eval.json)
beside student_lane
alone stage eval_teacher "" "" "" $PY eval.py --preset "$PRESET" --out "$OUT/eval_teacher.json" --show 0 \
  --init "$(ckpts base zero r1/cold_start r1/reasoning_rl r1/rejection_sft r1/final_rl)" ${EVAL_FLAGS:-}
joined
printf 'wall\t%s\ttotal\n' "$((SECONDS - T0))" >> "$OUT/times.tsv"
$PY -m r1mini.report "$OUT"
echo "speedrun ($PRESET) finished in $((SECONDS - T0)) s; report: $OUT/report.md"
