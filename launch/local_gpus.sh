#!/usr/bin/env bash
# One host, every local GPU (or TPU chip): one process sees all of them, and launch/train.py splits
# each global batch over the `data` mesh axis. Reruns itself after a preemption (exit 75).
#
#   launch/local_gpus.sh configs/trimesh_decode/paper.py runs/trimesh_paper
#   CUDA_VISIBLE_DEVICES=0,1 launch/local_gpus.sh 'configs/jpegedit/qtables_attention.py:lam=0.01' runs/att
#
# The global batch (config.batch_size) must be a multiple of the number of devices.
set -euo pipefail
CONFIG=${1:?usage: launch/local_gpus.sh CONFIG[:ARGS] WORKDIR [extra flags]}
WORKDIR=${2:?usage: launch/local_gpus.sh CONFIG[:ARGS] WORKDIR [extra flags]}
shift 2
cd "$(dirname "$0")/.."
while true; do
  status=0
  python launch/train.py --config "$CONFIG" --workdir "$WORKDIR" --distributed=no "$@" || status=$?
  if [ "$status" -ne 75 ]; then exit "$status"; fi
  echo "launch/local_gpus.sh: preempted; continuing from the checkpoint" >&2
done
