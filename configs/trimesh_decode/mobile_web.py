"""Stage 1 of the browser's neural decoder `mobile_web`: the `mobile` architecture at 32 filters
instead of 64 (a third of its multiply-adds: 0.47 G per 256x256 preview against 1.47 G), so
onnxruntime-web's wasm back end decodes a preview within 100 ms on a 2-core CPU (51-80 ms on
2026-12-07, when `mobile` took 78-133 ms; on the slower VM of 2026-12-02 `mobile` took
160-270 ms). Trained from
scratch (a narrower network cannot start from `mobile`'s weights) on the previews `mobile_4k` was
fine-tuned on: crops of ``../shared/data/photos_4k`` (less ``nips17_dev/``, the ImageNet-domain
test set) and ``../shared/data/photos`` at 3000..30000 encoder iterations.

    trimesh-decode dataset --images ../shared/data/photos_4k --exclude nips17_dev --images ../shared/data/photos \\
        -o data/previews_4k --crops 4000 --iterations 3000:30000 --max-scale 4
    python launch/train.py --config configs/trimesh_decode/mobile_web.py --workdir runs/trimesh_mobile_web
    python launch/train.py --config configs/trimesh_decode/mobile_web_full.py --workdir runs/trimesh_mobile_web256
    python -m trimesh_decode.models export runs/trimesh_mobile_web256 mobile_web --command "..."
    python -m trimesh_decode.models export-onnx mobile_web --float16 -o web/models/mobile_web.onnx

Aligned 128x128 crops of the rendered inputs, all 8 symmetries of the square, batch 32, Adam at
1e-3 with a cosine decay over ``steps``. Expected on a 2-core CPU: about 0.58 s per step, so the
default 3000 steps take about 30 minutes, ending near +0.22 dB over interpolation on its training
crops; stage 2 (mobile_web_full.py) is the shipped model, and trimesh_decode/models/mobile_web.json
records the commands, the step and the evaluation.
"""

from pathlib import Path

from compat.config import config_module
from trimesh_decode.settings import REPO, parse_overrides

_mobile = config_module(Path(__file__).with_name("mobile.py"))


def get_config(arg: str | None = None):
    c = _mobile.get_config()
    c.name = "mobile_web"
    c.steps = 3_000
    c.batch_size = 32
    c.data.dataset = str(REPO / "data" / "previews_4k")
    c.data.dihedral = True
    c.model.width = 32
    c.optim.lr = 1e-3
    c.optim.warmup = 50
    c.optim.decay_steps = c.steps
    return parse_overrides(c, arg)
