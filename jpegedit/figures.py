"""The paper's qualitative figures for one image (Fig. 4 and 6):

* ``attention.png`` - the image, and the luma and chroma attention maps of a Q-tables + attention
  model (each block's mean over its 64 frequencies, normalised to [0, 1]);
* ``smoothed.png`` - the attention edit alone: coefficients ``F * A`` with unit tables (no
  quantisation beyond integers) as the standard decoder shows them, beside the image;
* ``crops.png`` - the same crop of libjpeg (4:4:4, the quality whose file is closest in bytes), the
  Q-tables-only model and the Q-tables + attention model, each with its bpp and PSNR: files of
  matched size.

    python -m jpegedit.figures --image ../shared/data/kodak/kodim23.png -o out/figures \\
        [--attention attention_lam0.01] [--qtables qtables_lam0.01]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from compat.cli import OneLineParser, check_output_folder, run
from compat.images import load_image
from jpegedit import baselines, codec
from jpegedit.encoder import attention, encode_jpeg
from jpegedit.models import load_model
from jpegedit.scoring import decode, score

__all__ = ["attention_maps", "smoothed", "figures"]


def attention_maps(image: np.ndarray, model) -> tuple[np.ndarray, np.ndarray]:
    """Per block, the mean attention over the 64 frequencies, luma and chroma, each scaled to [0, 1]."""

    a_l, a_c = attention(model, image)

    def norm(a):
        m = np.asarray(a).mean(axis=(-2, -1))
        lo, hi = m.min(), m.max()
        return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)

    return norm(a_l), norm(a_c)


def smoothed(image: np.ndarray, model) -> np.ndarray:
    """The attention edit without quantisation: what a decoder shows for ``round(F * A)`` at unit tables."""

    x = jnp.asarray(image, jnp.float32)
    att = attention(model, image)
    out, _ = codec.roundtrip(x, jnp.ones((2, 8, 8), jnp.float32), chroma="444", rounding="hard", scales=att)
    return np.clip(np.round(np.asarray(out)), 0, 255).astype(np.uint8)


def _scores(image, data):
    dec = decode(data)
    s = score(image, data, ms_ssim=False, decoded=dec)
    return dec, s["bpp"], s["psnr"]


def _save(fig, axes, path: Path, title: str | None = None) -> Path:
    import matplotlib.pyplot as plt  # lazy: slow to import; only plotting needs it

    for a in axes:
        a.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def figures(
    image: np.ndarray,
    out: str | Path,
    attention: str = "attention_lam0.01",
    qtables: str = "qtables_lam0.01",
    crop: int = 192,
) -> list[Path]:
    import matplotlib  # lazy: slow to import; only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: slow to import; only plotting needs it

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    att_model, q_model = load_model(attention), load_model(qtables)
    files = []

    a_l, a_c = attention_maps(image, att_model)
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.4))
    ax[0].imshow(image)
    ax[0].set_title("image")
    for a, m, t in ((ax[1], a_l, "luma attention"), (ax[2], a_c, "chroma attention")):
        im = a.imshow(m, cmap="viridis", vmin=0, vmax=1)
        a.set_title(t)
        fig.colorbar(im, ax=a, fraction=0.035)
    files.append(
        _save(
            fig,
            ax,
            out / "attention.png",
            "attention per 8x8 block: mean over the 64 frequencies, normalised to [0, 1]",
        )
    )

    sm = smoothed(image, att_model)
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].imshow(image)
    ax[0].set_title("image")
    ax[1].imshow(sm)
    ax[1].set_title("attention edit alone (unit tables)")
    files.append(_save(fig, ax, out / "smoothed.png"))

    att_file = encode_jpeg(att_model, image)
    target = len(att_file)
    q_best = min(range(1, 101), key=lambda q: abs(len(baselines.encode("libjpeg-444", image, q)) - target))
    panels = [
        (f"libjpeg 4:4:4 q{q_best}", baselines.encode("libjpeg-444", image, q_best)),
        (f"Q-tables ({q_model.name})", encode_jpeg(q_model, image)),
        (f"Q-tables + attention ({att_model.name})", att_file),
    ]
    h, w = image.shape[:2]
    s = min(crop, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    fig, ax = plt.subplots(1, 4, figsize=(14, 4.3))
    ax[0].imshow(image[top : top + s, left : left + s], interpolation="nearest")
    ax[0].set_title("original")
    for a, (title, data) in zip(ax[1:], panels):
        dec, bpp, psnr = _scores(image, data)
        a.imshow(dec[top : top + s, left : left + s], interpolation="nearest")
        a.set_title(f"{title}\n{bpp:.3f} bpp, {psnr:.2f} dB", fontsize=9)
    files.append(_save(fig, ax, out / "crops.png"))
    return files


EXAMPLE = """example:
  python -m jpegedit.figures --image ../shared/data/kodak/kodim23.png -o out/figures
"""


def figures_command(args: argparse.Namespace) -> str:
    check_output_folder(args.out, args.force)
    image = load_image(args.image)
    for name in (args.attention, args.qtables):
        load_model(name)  # an unknown or broken model is refused before anything is written
    return "\n".join(f"wrote {f}" for f in figures(image, args.out, args.attention, args.qtables))


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(
        prog="python -m jpegedit.figures",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--image", required=True, help="the image (any format compat.images reads)")
    p.add_argument("-o", "--out", required=True, help="folder for the figures (refused if not empty, unless --force)")
    p.add_argument("--attention", default="attention_lam0.01", help="a Q-tables + attention model")
    p.add_argument("--qtables", default="qtables_lam0.01", help="a Q-tables-only model")
    p.add_argument("--force", action="store_true", help="write into a non-empty OUT")
    return run(p.prog, p, figures_command, argv, expected=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
