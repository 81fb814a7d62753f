"""``jpegedit``: the command-line tools of the JPEG method.

``jpegedit encode IN -o OUT.jpg --quality Q`` writes an ordinary baseline JPEG through our own JAX
codec (the exact path, :mod:`jpegedit.libjpeg`): its coefficients are those libjpeg-turbo writes at
the same quality, which the command checks and reports. Without IN it encodes an embedded photo
(scikit-image's astronaut), so a fresh install can be tried with one command.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from compat.cli import OneLineParser, UsageError, check_output_file, check_output_folder, run_subcommand, write_atomic
from compat.images import load_folder, load_image
from jpegedit import baselines, codec, encoder, jpegfile, libjpeg, report, scoring
from jpegedit.models import SHIPPED_BACKBONES, list_models

EXAMPLE = """examples:
  jpegedit encode -o astronaut.jpg --quality 50             # the embedded default photo
  jpegedit encode photo.png -o photo.jpg --quality 75 --chroma 420 --optimize
  jpegedit encode photo.png -o photo.jpg --model attention_lam0.01   # a shipped learned model
  jpegedit encode photo.png -o photo.jpg --target-bpp 0.5            # the best learned file within 0.5 bpp
  jpegedit encode photo.png -o photo.jpg --learned --quality 60      # a step of the learned rate ladder
  jpegedit encode photo.png -o photo.jpg --lambda 0.001 --baseline   # a sequential (SOF0) file, not progressive
  jpegedit encode photo.png -o photo.jpg --lambda 0.01 --rate-term paper   # trained on the paper's rate proxies
  jpegedit evaluate --data ../shared/data/kodak -o out/kodak --limit 2   # RD curves and BD-rates
"""


def _quality(text: str) -> int:
    try:
        q = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"quality must be an integer in 1..100, got {text!r}") from None
    if not 1 <= q <= 100:
        raise argparse.ArgumentTypeError(f"quality must be in 1..100, got {q}")
    return q


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="jpegedit",
        description="JPEG files that every viewer decodes, made by our JAX codec.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    e = sub.add_parser(
        "encode",
        help="encode an image to a baseline JPEG",
        description="Encode an image to a baseline JPEG with our JAX codec (libjpeg-turbo's arithmetic, "
        "so the coefficients equal libjpeg's at the same quality).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument(
        "input", nargs="?", help="image to encode (any format compat.images reads); default: an embedded photo"
    )
    e.add_argument("-o", "--out", required=True, help="output JPEG file")
    e.add_argument("-q", "--quality", type=_quality, default=None, help="IJG quality 1..100 (default 75)")
    e.add_argument(
        "--learned",
        action="store_true",
        help="--quality steps along the shipped learned family's rate ladder (1: smallest, 100: largest file) "
        "instead of libjpeg's IJG tables",
    )
    e.add_argument(
        "--model",
        default=None,
        help="a learned jpegedit model instead of a quality: a shipped name (see jpegedit.models.list_models) or a "
        ".npz path",
    )
    e.add_argument(
        "--lambda",
        dest="lam",
        type=float,
        default=None,
        help="the shipped learned model (of --rate-term) trained at this rate-distortion weight",
    )
    e.add_argument(
        "--target-bpp",
        type=float,
        default=None,
        help="the best learned file (highest PSNR, measured) not exceeding this bpp, from a fixed ladder of the "
        "shipped models and table scales; libjpeg's quantisation when that scores higher; a few seconds",
    )
    e.add_argument(
        "--rate-term",
        choices=("bits", "paper"),
        default="bits",
        help="which shipped models --lambda and --target-bpp choose from: those trained on the file's estimated "
        "bits (default) or on the paper's rate proxies ||1/Q|| and mean A",
    )
    e.add_argument(
        "--backbone",
        choices=SHIPPED_BACKBONES,
        default=None,
        help="learned models: the attention models on this frozen backbone: lite0 (EfficientNet-Lite0, fast) or "
        f"vgg16 (the paper's VGG; default {encoder.DEFAULT_BACKBONE})",
    )
    e.add_argument(
        "--baseline",
        action="store_true",
        help="learned models: a baseline (SOF0) file with optimised Huffman tables instead of a progressive one",
    )
    e.add_argument(
        "--standard-huffman",
        action="store_true",
        help="learned models: the paper's file: round(F * A / Q) (no trellis), baseline, standard Huffman tables",
    )
    e.add_argument(
        "--no-trellis",
        action="store_true",
        help="learned models: the paper's rounding round(F * A / Q) instead of the trellis quantisation",
    )
    e.add_argument(
        "--tune",
        choices=tuple(encoder.TUNES),
        default="psnr",
        help="learned models: the family trained for this metric (ms-ssim: tables trained on MS-SSIM; lpips: on "
        "MSE + LPIPS), which --target-bpp also optimises (default psnr)",
    )
    e.add_argument("--chroma", choices=("444", "420"), default="444", help="chroma sampling (default 444, the paper's)")
    e.add_argument("--optimize", action="store_true", help="optimised Huffman tables (default: the standard ones)")
    e.add_argument("--grayscale", action="store_true", help="write a one-component (grayscale) JPEG")
    e.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    v = sub.add_parser(
        "evaluate",
        help="rate-distortion curves: learned models against libjpeg, mozjpeg, jpegli",
        description="Encode every image with every baseline codec over its quality grid and with each learned "
        "model (standard and optimised Huffman tables); decode with libjpeg; PSNR, MS-SSIM, LPIPS. Writes one JSON "
        "per codec, rd_*.png, summary.json and README.md (BD-rates) into OUT. Resumable.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("--data", required=True, help="folder of test images (e.g. ../shared/data/kodak)")
    v.add_argument("-o", "--out", required=True, help="results folder (refused if it is not empty, unless --force)")
    v.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty OUT: continue there (per-codec results already in it are reused) and replace its "
        "summaries",
    )
    v.add_argument(
        "--models",
        default=None,
        help="comma-separated learned models (default: every shipped one; none: the baselines only)",
    )
    v.add_argument(
        "--codecs",
        default=None,
        help="comma-separated baseline codecs (default: every one this install has; jpegli needs the peers extra)",
    )
    v.add_argument("--no-lpips", action="store_true", help="skip LPIPS (the slowest measure on a CPU)")
    v.add_argument(
        "--no-tool",
        action="store_true",
        help="skip the curves of what `jpegedit encode` writes (the --quality ladder and --target-bpp choice per "
        "family of the learned models)",
    )
    v.add_argument("--limit", type=int, default=None, help="only the first N images")
    v.add_argument("--below", type=float, default=0.4, help="upper end of the low-rate BD range in bpp (default 0.4)")
    return p


def evaluate_command(args: argparse.Namespace) -> str:
    if not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data} is not a folder")
    check_output_folder(args.out, args.force, resumable=True)
    images = load_folder(args.data, limit=args.limit, what="jpegedit evaluate")
    codecs = [c for c in (args.codecs or ",".join(baselines.available())).split(",") if c]
    unknown = [c for c in codecs if c not in baselines.CODECS]
    if unknown:
        raise UsageError(f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(baselines.CODECS)}")
    missing = [c for c in codecs if c not in baselines.available()]
    if missing:
        raise UsageError(f"{', '.join(missing)} needs pyjpegli: pip install -e '.[peers]'")
    models = [] if args.models == "none" else [m for m in (args.models or ",".join(list_models())).split(",") if m]
    out = Path(args.out)
    baselines.rd_curves(images, out, codecs, lpips=not args.no_lpips)
    if models:
        try:
            baselines.learned_curves(images, out, models, lpips=not args.no_lpips)
            if not args.no_tool:
                for fam in sorted({baselines.family(m) for m in models}):
                    mine = [m for m in models if baselines.family(m) == fam]
                    baselines.tool_curves(images, out, mine, lpips=not args.no_lpips)
        except (FileNotFoundError, ValueError) as e:  # a model name that is not shipped, or a broken file
            raise UsageError(str(e)) from None
    plots = report.write_all(out, args.below, f"Rate-distortion on {args.data} ({len(images)} images)")
    counts = f"{len(images)} images, {len(codecs)} codecs, {len(models)} learned models"
    return f"{counts} -> {out / 'README.md'}, {len(plots)} plots"


def _libjpeg_agrees(image: np.ndarray, quality: int, chroma: str, ours) -> bool:
    """Whether Pillow (libjpeg-turbo) writes the same coefficients at this quality."""

    buf = io.BytesIO()
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    pil.save(buf, "JPEG", quality=quality, subsampling=0 if chroma == "444" else 2)
    ref, _ = jpegfile.read_coefficients(buf.getvalue())
    return all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ours.components, ref.components))


def encode_command(args: argparse.Namespace) -> str:
    out = check_output_file(args.out, args.force)
    chosen = [
        n
        for n, v in (
            ("--quality", args.quality),
            ("--model", args.model),
            ("--lambda", args.lam),
            ("--target-bpp", args.target_bpp),
        )
        if v is not None
    ]
    if len(chosen) > 1:
        raise UsageError(f"give one of --quality, --model, --lambda, --target-bpp (got {' and '.join(chosen)})")
    learned = args.learned or (bool(chosen) and chosen[0] != "--quality")
    if args.learned and chosen and chosen[0] != "--quality":
        raise UsageError(f"--learned goes with --quality (a step of the learned ladder), not with {chosen[0]}")
    if learned and (args.chroma != "444" or args.grayscale):
        raise UsageError("learned models encode colour images with 4:4:4 chroma (the paper's setting)")
    for flag, given in (
        ("--standard-huffman", args.standard_huffman),
        ("--baseline", args.baseline),
        ("--no-trellis", args.no_trellis),
    ):
        if given and not learned:
            raise UsageError(
                f"{flag} is for learned models (--model, --lambda, --target-bpp); quality mode writes a baseline file "
                "with standard tables unless --optimize"
            )
    if args.target_bpp is not None and args.target_bpp <= 0:
        raise UsageError(f"--target-bpp must be positive, got {args.target_bpp}")
    if args.tune != "psnr" and not learned:
        raise UsageError("--tune is for learned models (--learned --quality, --model, --lambda, --target-bpp)")
    candidates = (
        encoder.choose_models(
            model=args.model, lam=args.lam, rate_term=args.rate_term, tune=args.tune, backbone=args.backbone
        )
        if learned
        else []
    )
    quality = 75 if args.quality is None else args.quality
    if args.input is None:
        from skimage import data  # lazy: slow to import; only the embedded example needs it

        image, what = data.astronaut(), "embedded photo (scikit-image astronaut, 512x512)"
    else:
        image = load_image(args.input)
        what = args.input
    if args.grayscale:
        image = np.asarray(Image.fromarray(image).convert("L"))[..., None]
    t0 = time.perf_counter()
    model = None
    fallback = None
    trellis = None if (args.no_trellis or args.standard_huffman) else encoder.TRELLIS_BY_TUNE[args.tune]
    if not learned:
        tables = codec.quality_to_tables(quality)
        co = libjpeg.encode(image, tables, chroma=args.chroma)
        data = jpegfile.write(co, tables, optimize_huffman=args.optimize)
    else:
        model, data, co, scale, fallback = encoder.encode_learned(
            image,
            candidates,
            args.target_bpp,
            optimize=not args.standard_huffman,
            progressive=not (args.baseline or args.standard_huffman),
            quality=args.quality if args.learned else None,
            trellis=trellis,
            tune=args.tune,
        )
    seconds = time.perf_counter() - t0
    write_atomic(out, data, args.force)

    # Pillow (libjpeg-turbo) shows what our exact decoder computes, bit for bit, in far less memory.
    decoded = np.asarray(Image.open(out)).reshape(image.shape)
    h, w = image.shape[:2]
    err = np.mean((image.astype(np.float64) - decoded) ** 2)
    psnr = 10 * np.log10(255.0**2 / err) if err > 0 else float("inf")
    tuned = ""
    if args.tune != "psnr" and min(h, w) >= encoder.MIN_SIDE[args.tune]:  # the metric the file was tuned for
        key = args.tune.replace("-", "_")
        value = scoring.score(image, data, lpips=key == "lpips", ms_ssim=key == "ms_ssim", decoded=decoded)[key]
        tuned = f", {args.tune.upper()} {value:.4f}"
    size = f"{len(data)} bytes, {8 * len(data) / (h * w):.3f} bpp"
    head = f"{what} -> {out}: {size}, PSNR {psnr:.2f} dB{tuned}, {seconds:.2f} s"
    if fallback is not None:
        return f"{head} ({fallback}: it scores higher than every learned file within the target)"
    if model is not None:
        kind = "Q-tables + attention" if model.attention else "Q-tables"
        huff = (
            "baseline, standard Huffman tables"
            if args.standard_huffman
            else "baseline, optimised Huffman tables"
            if args.baseline
            else "progressive, optimised Huffman tables"
        )
        scaled = "" if scale == 1.0 else f", tables x{scale:.3f}"
        quant = "rounding" if trellis is None else "trellis quantisation"
        return f"{head} (learned model {model.name}: {kind}{scaled}; {quant}; {huff}; any JPEG decoder reads it)"
    same = "yes" if _libjpeg_agrees(image, quality, args.chroma, co) else "NO"
    return (
        f"{head} (quality {quality}, {args.chroma}{', gray' if args.grayscale else ''}); "
        f"libjpeg-turbo writes the same coefficients: {same}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(
        "jpegedit",
        _parser(),
        {"encode": encode_command, "evaluate": evaluate_command},
        argv,
        expected=(encoder.EncodeError,),
    )


if __name__ == "__main__":
    sys.exit(main())
