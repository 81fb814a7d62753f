#!/usr/bin/env bash
# On a lent accelerator: train the paper's decoder (configs/trimesh_decode/paper.py) on the packed
# previews within one command's 10 minutes, then put its exported weights (float16, ~53 MB) under
# $OUT in pieces below the 16 MiB a file may have on the way back. Prepare .kit/ here first with
# launch/device_kit.sh, then (the `device` tool):
#
#   run(command="bash launch/device_paper.sh", carry=[".kit"], timeout_s=600)
#   cat /work/.device/.../paper_gpu.npz.part* > trimesh_decode/models/paper_gpu.npz   # back here
#
# A second call while the machine is still warm continues the same run from its checkpoint (the
# unpacked crops in /tmp are kept too); a fresh machine starts over. Environment: MINUTES of
# training (default 7), STEPS (the cosine's length, default 4000), WORKERS (Grain processes, 12),
# RUN (default runs/trimesh_paper_gpu), KIT (.kit), WHEELS ($KIT/wheels; empty: installed already),
# PREVIEWS (where to unpack, /tmp/previews), EXTRA (more config overrides, comma-first: ",optim.lr=2e-3").
set -uo pipefail
cd "$(dirname "$0")/.."
KIT=${KIT:-.kit}
MINUTES=${MINUTES:-7}
STEPS=${STEPS:-4000}
WORKERS=${WORKERS:-12}
RUN=${RUN:-runs/trimesh_paper_gpu}
EXTRA=${EXTRA:-}
OUT=${OUT:-/tmp/device_out}
EXPORT=${EXPORT:-/tmp/export}
mkdir -p "$OUT"
WHEELS=${WHEELS-$KIT/wheels}  # WHEELS= (empty) where the packages are installed already
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
CONFIG="configs/trimesh_decode/paper.py:data.dataset=$PREVIEWS,data.workers=$WORKERS,steps=$STEPS,optim.decay_steps=$STEPS$EXTRA"
echo "training $CONFIG for at most $MINUTES minutes in $RUN"
# SIGTERM at the limit: the trainer finishes its step, saves a checkpoint and exits 75
timeout --preserve-status -k 60 -s TERM "${MINUTES}m" python3 launch/train.py --config "$CONFIG" --workdir "$RUN" \
  > "$OUT/train.log" 2>&1
status=$?
echo "train.py exit status $status (0 finished, 75 stopped at the time limit with a checkpoint)"
grep -a -o "done: .*\|resumed from step [0-9]*\|Error.*" "$OUT/train.log" | tail -5
tail -n 3 "$RUN/metrics.jsonl"
cp "$RUN/metrics.jsonl" "$RUN/config.json" "$OUT/" 2>/dev/null
if [ "$status" -ne 0 ] && [ "$status" -ne 75 ]; then
  tail -c 3000 "$OUT/train.log"
  exit "$status"
fi
mkdir -p "$EXPORT"
python3 -m trimesh_decode.models export "$RUN" paper_gpu --dir "$EXPORT" \
  --command "bash launch/device_paper.sh (MINUTES=$MINUTES STEPS=$STEPS; $CONFIG)" || exit 1
cp "$EXPORT/paper_gpu.json" "$OUT/"
split -b 15m -d "$EXPORT/paper_gpu.npz" "$OUT/paper_gpu.npz.part"
gzip -9 "$OUT/train.log"
ls -la "$OUT"
