"""The measured agreements that the README's instrument table reports, reproduced.

Tests assert the tolerances (1e-4, +-0.002); this script prints the actual differences:
PSNR / SSIM / MS-SSIM of the issue's Kodak pairs against TensorFlow 2.21's values and against
scikit-image, LPIPS on ../shared/data/lpips_ref against the published distances, and the
classifier's top class and probability on kodim23 and kodim21. Needs ../shared/data.

    python benchmarks/metric_agreement.py
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# (image, JPEG quality, bytes, PSNR, TF MS-SSIM, TF SSIM): the reference of issue 2.
TF_REFERENCE = [
    ("kodim01", 10, 26217, 24.8995, 0.921371, 0.694828),
    ("kodim07", 30, 34315, 32.8357, 0.980476, 0.915435),
    ("kodim23", 50, 36018, 36.1520, 0.981790, 0.924725),
    ("kodim04", 75, 69488, 36.1825, 0.988430, 0.926388),
]
LPIPS_REFERENCE = {"vgg": (0.569, 0.422), "alex": (0.722, 0.138)}


def _rgb(src) -> np.ndarray:
    return np.asarray(Image.open(src).convert("RGB"))


def main() -> int:
    if not DATA.is_dir():
        print(f"needs {DATA} (the shared data set beside the repository)", file=sys.stderr)
        return 2
    import jax
    from skimage.metrics import structural_similarity

    from compat import metrics as M

    worst = {"ms_ssim_tf": 0.0, "ssim_tf": 0.0, "ssim_skimage": 0.0}
    for name, q, nbytes, ref_psnr, ref_ms, ref_ss in TF_REFERENCE:
        x = _rgb(DATA / "kodak" / f"{name}.png")
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, "JPEG", quality=q, subsampling=0)
        y = _rgb(io.BytesIO(buf.getvalue()))
        ps, ms, ss = float(M.psnr(x, y)), float(M.ms_ssim(x, y)), float(M.ssim(x, y))
        sk = structural_similarity(
            x.astype(np.float64),
            y.astype(np.float64),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=-1,
        )
        worst["ms_ssim_tf"] = max(worst["ms_ssim_tf"], abs(ms - ref_ms))
        worst["ssim_tf"] = max(worst["ssim_tf"], abs(ss - ref_ss))
        worst["ssim_skimage"] = max(worst["ssim_skimage"], abs(ss - sk))
        print(
            f"{name} q{q}: {len(buf.getvalue())} bytes (ref {nbytes}), PSNR {ps:.4f} (ref {ref_psnr}), "
            f"MS-SSIM {ms - ref_ms:+.2e} vs TF, SSIM {ss - ref_ss:+.2e} vs TF, {ss - sk:+.2e} vs skimage"
        )
    print("max |diff|: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))

    ref, p0, p1 = (_rgb(DATA / "lpips_ref" / f"{n}.png") for n in ("ex_ref", "ex_p0", "ex_p1"))
    for net, (d0, d1) in LPIPS_REFERENCE.items():
        print(
            f"LPIPS {net}: {float(M.lpips(ref, p0, net)):.4f} / {float(M.lpips(ref, p1, net)):.4f} (published {d0} / "
            f"{d1})"
        )

    for name in ("kodim23", "kodim21"):
        p = jax.nn.softmax(M.classify(_rgb(DATA / "kodak" / f"{name}.png")))
        top = int(np.argmax(p))
        print(f"classify {name}: ImageNet class {top}, p = {float(p[top]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
