"""Reference JPEGs for the jpegedit tests: what Pillow (libjpeg-turbo) writes and decodes."""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image

SUBSAMPLING = {"444": 0, "420": 2}


def pillow_jpeg(image: np.ndarray, quality: int, chroma: str = "444", **kw) -> bytes:
    """The bytes Pillow writes for ``image`` (H, W, 3) or (H, W, 1) at IJG ``quality``."""
    buf = io.BytesIO()
    pil = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image)
    pil.save(buf, "JPEG", quality=quality, subsampling=SUBSAMPLING[chroma], **kw)
    return buf.getvalue()


def pillow_decode(data: bytes) -> np.ndarray:
    im = np.asarray(Image.open(io.BytesIO(data)))
    return im[..., None] if im.ndim == 2 else im


@cache
def photos() -> dict[str, np.ndarray]:
    """Photos that ship with scikit-image (available offline, in CI), and two generated images."""
    from skimage import data

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:61, 0:83]
    gradient = np.stack([yy * 4, xx * 3, (yy + xx) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    return {
        "astronaut": data.astronaut(),  # 512x512
        "chelsea": data.chelsea(),  # 300x451: odd width, rows not a multiple of 16
        "coffee": data.coffee(),  # 400x600
        "noise_37x53": rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
        "gradient_61x83": gradient,
    }


def jpeg_config(attention=True, finetune=False, crop=32, lam=0.01, gamma=0.0):
    """jpegedit's base config for the tests: small crops, a learning rate that moves in a few steps."""
    from jpegedit import task

    c = task.base_config()
    c.data.crop = crop
    c.model.attention = attention
    c.model.finetune_backbone = finetune
    c.loss.lam, c.loss.gamma = lam, gamma
    c.optim.lr = 1e-4
    return c


def jpeg_batch(n: int = 8, s: int = 32) -> dict:
    """A train batch of ``n`` different s x s crops of one photo."""
    img = photos()["astronaut"]
    return {"image": np.stack([img[17 * i : 17 * i + s, 23 * i : 23 * i + s] for i in range(n)])}
