#!/usr/bin/env bash
# Before a lent accelerator's run (the `device` tool): pack what launch/device_paper.sh needs and the
# repository does not hold into .kit/ (git-ignored), within the 64 MiB a run carries:
#   - the training previews with their photos once, as JPEGs (`trimesh-decode pack`; no crops),
#   - the wheels the device image lacks (grain, ml_collections, tensorboardX and theirs), for its Python 3.12.
#
#   launch/device_kit.sh [DATASET]        # default data/trimesh_previews_scaled
#   then: run(command="bash launch/device_paper.sh", carry=[".kit"])
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${1:-data/trimesh_previews_scaled}
QUALITY=${QUALITY:-95}
PY=${PYTHON:-python}
rm -rf .kit
"$PY" -m trimesh_decode.cli pack "$DATASET" -o .kit/previews --quality "$QUALITY"
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms="$platforms --platform $p"
done
# the versions this repository is tested with here (pyproject.toml's lower bounds are older)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
  -d .kit/wheels grain==0.2.18 array_record==0.8.6 portpicker==1.6.0 ml_collections==1.1.0 tensorboardX==2.6.5
kit=$(du -sm .kit | cut -f1)
repo=$(git ls-files -z | xargs -0 du -cb | tail -1 | awk '{print int($1 / 1048576)}')
echo "launch/device_kit.sh: .kit is ${kit} MiB, the tracked tree ${repo} MiB (a run carries at most 64 MiB)"
if [ $((kit + repo)) -ge 62 ]; then
  echo "launch/device_kit.sh: too large to carry; rerun with QUALITY=85" >&2
  exit 1
fi
