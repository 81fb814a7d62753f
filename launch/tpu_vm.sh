#!/usr/bin/env bash
# A Cloud TPU VM slice (e.g. v5e-32, 8 hosts): the same command on every worker. On TPU VMs
# jax.distributed.initialize() finds the coordinator, process count and id by itself, so
# launch/train.py is only told that it is one of several (--distributed=yes).
# WORKDIR must be a path every worker sees (a Filestore / NFS mount, or a gcsfuse-mounted bucket).
#
#   launch/tpu_vm.sh my-tpu us-central2-b configs/trimesh_decode/paper.py /mnt/shared/runs/trimesh_paper
#
# Run it from your workstation; it first copies this checkout to every worker (~/compat-codecs),
# installs it, then starts training on all workers at once. A preempted (exit 75) or interrupted
# run continues when the same command is run again.
set -euo pipefail
TPU=${1:?usage: launch/tpu_vm.sh TPU_NAME ZONE CONFIG[:ARGS] WORKDIR}
ZONE=${2:?usage: launch/tpu_vm.sh TPU_NAME ZONE CONFIG[:ARGS] WORKDIR}
CONFIG=${3:?usage: launch/tpu_vm.sh TPU_NAME ZONE CONFIG[:ARGS] WORKDIR}
WORKDIR=${4:?usage: launch/tpu_vm.sh TPU_NAME ZONE CONFIG[:ARGS] WORKDIR}
cd "$(dirname "$0")/.."
gcloud compute tpus tpu-vm scp --recurse --zone "$ZONE" --worker=all . "$TPU":~/compat-codecs
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command \
  "cd ~/compat-codecs && pip install -q -e . 'jax[tpu]' && python launch/train.py --config '$CONFIG' --workdir '$WORKDIR' --distributed=yes"
