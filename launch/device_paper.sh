#!/usr/bin/env bash
# On a lent accelerator: train the paper's decoder (configs/trimesh_decode/paper.py) on the packed
# previews within one command's 10 minutes, then put its exported weights (float16, ~53 MB) under
# $OUT in pieces below the 16 MiB a file may have on the way back. Prepare .kit/ here first with
# launch/device_kit.sh, then (the `device` tool):
#
#   run(command="bash launch/device_paper.sh", carry=[".kit"], timeout_s=600)
#   cat /work/.device/.../paper_gpu.npz.part* > trimesh_decode/models/paper_gpu.npz   # back here
#
# The machine's speed is not known beforehand, so the schedule is measured, not guessed (warm-up,
# stable, decay): phase 1 trains at the constant learning rate for half of MINUTES
# (SIGTERM: the trainer saves a checkpoint and exits 75); its images/s then fixes the length of
# phase 2, a cosine decay to 1% that starts from phase 1's weights (model.init; Adam afresh) and
# fills the remaining time. A second call while the machine is still warm continues phase 1 from
# its checkpoint and decays anew (the unpacked crops in /tmp are kept too); a fresh machine starts
# over.
#
# Environment: MINUTES (both phases, default 8), P1_SECONDS (phase 1; default half of MINUTES),
# P1_GRACE (seconds phase 1 may take to finish its step and save after SIGTERM before it is killed, 60),
# STEPS2 (phase 2's steps instead of the measured ones), WORKERS (Grain processes, 12), RUN
# (phase 1's run, default runs/trimesh_paper_gpu; phase 2 writes $RUN-decay), KIT (.kit), WHEELS
# ($KIT/wheels; empty: installed already), PREVIEWS (where to unpack, /tmp/previews), OUT, EXPORT,
# EXTRA (config overrides for both phases, comma-first: ",optim.lr=2e-3"; phase 2's start and
# schedule override it).
#
# A warm start: EXTRA=",model.output=residual,model.init=mobile" starts the 256-filter model from the
# shipped `mobile` decoder widened 4x (trimesh_decode.hourglass.widen: the same function), so training
# begins at mobile's quality instead of the paper's from-scratch image head.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
KIT=${KIT:-.kit}
MINUTES=${MINUTES:-8}
P1_SECONDS=${P1_SECONDS:-$((MINUTES * 30))}
P1_GRACE=${P1_GRACE:-60}
WORKERS=${WORKERS:-12}
RUN=${RUN:-runs/trimesh_paper_gpu}
EXTRA=${EXTRA:-}
OUT=${OUT:-/tmp/device_out}
EXPORT=${EXPORT:-/tmp/export}
mkdir -p "$OUT" "$EXPORT"
WHEELS=${WHEELS-$KIT/wheels}
if [ -n "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -c "import jax; print('jax', jax.__version__, jax.devices())" || exit 1
PREVIEWS=${PREVIEWS:-/tmp/previews}
if [ ! -f "$PREVIEWS/manifest.jsonl" ]; then
  python3 -m trimesh_decode.cli unpack "$KIT/previews" -o "$PREVIEWS" --force 2>/dev/null || exit 1
fi
BASE="configs/trimesh_decode/paper.py:data.dataset=$PREVIEWS,data.workers=$WORKERS"

# phase 1: warm-up, then the constant learning rate, until its time is up
CONFIG1="$BASE,steps=100000000,optim.decay_steps=0$EXTRA"
echo "phase 1: $CONFIG1 for ${P1_SECONDS}s in $RUN"
timeout --preserve-status -k "${P1_GRACE}s" -s TERM "${P1_SECONDS}s" python3 launch/train.py --config "$CONFIG1" --workdir "$RUN" \
  > "$OUT/phase1.log" 2>&1
status=$?
echo "phase 1: exit status $status (75: stopped at its time limit with a checkpoint)"
if [ "$status" -ne 75 ] && [ "$status" -ne 0 ]; then
  tail -c 3000 "$OUT/phase1.log"
  exit "$status"
fi

# phase 2: a cosine from phase 1's weights, as long as the measured speed allows in the time left
left=$((MINUTES * 60 - ($(date +%s) - start)))
STEPS2=${STEPS2:-$(python3 - "$RUN/metrics.jsonl" "$left" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
rate = statistics.median(r["images_per_s"] for r in rows[-5:])  # the last logs: past compilation
batch = json.load(open(sys.argv[1].replace("metrics.jsonl", "config.json")))["batch_size"]
print(max(20, int(0.8 * (int(sys.argv[2]) - 90) * rate / batch)))  # 90 s: compile, checkpoint, export
PY
)}
[ -n "$STEPS2" ] || exit 1
WARM2=$((STEPS2 / 10 < 50 ? STEPS2 / 10 : 50))
case "$RUN" in /*) FROM=$RUN ;; *) FROM=$PWD/$RUN ;; esac
CONFIG2="$BASE$EXTRA,model.init=$FROM,steps=$STEPS2,optim.warmup=$((WARM2 > 1 ? WARM2 : 1)),optim.decay_steps=$STEPS2"
RUN2="$RUN-decay"
rm -rf "$RUN2"
echo "phase 2: $CONFIG2 (${left}s left) in $RUN2"
timeout --preserve-status -k 60 -s TERM "$((left > 60 ? left - 30 : 30))s" python3 launch/train.py --config "$CONFIG2" \
  --workdir "$RUN2" > "$OUT/phase2.log" 2>&1
status=$?
echo "phase 2: exit status $status (0 finished; 75 stopped at the time limit with a checkpoint)"
grep -a -o "done: .*" "$OUT/phase2.log" | tail -1
if [ "$status" -ne 75 ] && [ "$status" -ne 0 ]; then
  tail -c 3000 "$OUT/phase2.log"
  exit "$status"
fi
cat "$RUN/metrics.jsonl" > "$OUT/metrics.jsonl"
cat "$RUN2/metrics.jsonl" >> "$OUT/metrics.jsonl"
python3 -m trimesh_decode.models export "$RUN2" paper_gpu --dir "$EXPORT" \
  --command "bash launch/device_paper.sh (MINUTES=$MINUTES; phase 1: $CONFIG1; phase 2: $CONFIG2)" || exit 1
cp "$EXPORT/paper_gpu.json" "$OUT/"
split -b 15m -d "$EXPORT/paper_gpu.npz" "$OUT/paper_gpu.npz.part"
cat "$OUT/phase1.log" "$OUT/phase2.log" | gzip -9 > "$OUT/train.log.gz"
rm "$OUT/phase1.log" "$OUT/phase2.log"
ls -la "$OUT"
