"""``trimesh-decode``: encode images as ~200-byte triangle previews, decode them, build datasets.

``encode`` runs the hill-climbing encoder; ``decode`` renders a preview by barycentric
interpolation or with the trained neural decoder (the same file either way); ``dataset`` encodes
random crops of a folder of photos for training, resumably and in parallel, with a manifest;
``pack`` and ``unpack`` carry such a folder to a machine without the photos (a lent accelerator)
as the photos once, JPEG-compressed, plus the previews; ``evaluate`` compares the decoders on held-out images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from compat.cli import OneLineParser, UsageError, check_output_file, check_output_folder, run_subcommand, write_atomic
from compat.images import load_image, save_png
from trimesh_decode import MAX_GAIN, SYMMETRIES, check_gain, raster_cpu
from trimesh_decode.bitstream import PreviewFormatError, from_bytes
from trimesh_decode.dataset import DatasetError, build_dataset, pack_dataset, unpack_dataset
from trimesh_decode.encoder import MIN_TARGET, EncoderConfig, encode_image
from trimesh_decode.evaluate import EvaluationError, evaluate
from trimesh_decode.models import DEFAULT_MODEL, list_models, load_model

ITERATIONS = EncoderConfig().iterations  # the encoder's default, for encode and evaluate

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
EXAMPLE = """examples:
  trimesh-decode encode photo.jpg -o photo.tri --bytes 200 --seed 0
  trimesh-decode decode photo.tri -o preview.png --size 256
  trimesh-decode decode photo.tri -o better.png --decoder neural [--symmetries 8]
  trimesh-decode evaluate --images ../shared/data/kodak --limit 4 -o out/previews
  trimesh-decode evaluate --dataset data/previews --limit 400 -o out/seen --no-baselines --model mobile
  trimesh-decode dataset --images ../shared/data/photos --out data/previews --crops 1000 --size 256
  trimesh-decode dataset --images ../shared/data/photos_4k --exclude nips17_dev --images ../shared/data/photos \\
      --out data/previews_4k --crops 4000 --iterations 3000:30000 --max-scale 4
  trimesh-decode pack data/previews -o .kit/previews && trimesh-decode unpack .kit/previews -o /tmp/previews
"""


def _gain(text: str) -> float:
    try:
        return check_gain(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, {MAX_GAIN:g}], got {text!r}") from None


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _iterations(text: str) -> int | tuple[int, int]:
    """``N`` or ``LO:HI`` (a log-uniform range per crop), positive, LO <= HI."""
    if ":" not in text:
        return _positive(text)
    lo, hi = (_positive(t) for t in text.split(":", 1))
    if lo > hi:
        raise argparse.ArgumentTypeError(f"expected LO:HI with LO <= HI, got {text!r}")
    return lo, hi


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = OneLineParser(
        prog="trimesh-decode", description="~200-byte triangle previews of images.", epilog=EXAMPLE, formatter_class=fmt
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    e = sub.add_parser(
        "encode",
        help="encode an image as a preview",
        description="Encode an image as a triangle preview (stochastic hill climbing to a byte target).",
        epilog=EXAMPLE,
        formatter_class=fmt,
    )
    e.add_argument("input", help="image to encode (any format compat.images reads)")
    e.add_argument("-o", "--out", required=True, help="output preview file (.tri)")
    e.add_argument(
        "--bytes", type=_positive, default=200, help="byte target (default 200); the size lands within 2 bytes below it"
    )
    e.add_argument("--seed", type=int, default=0, help="random seed (the encoding is deterministic for a seed)")
    e.add_argument(
        "--iterations", type=_positive, default=ITERATIONS, help=f"hill-climbing iterations (default {ITERATIONS})"
    )
    e.add_argument(
        "--grid", type=int, default=None, help="grid points on the longer side (default: by the budget, 16 to 64)"
    )
    e.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    d = sub.add_parser(
        "decode",
        help="render a preview as an image",
        description="Render a preview file as a PNG.",
        epilog=EXAMPLE,
        formatter_class=fmt,
    )
    d.add_argument("input", help="preview file (.tri)")
    d.add_argument("-o", "--out", required=True, help="output PNG")
    d.add_argument("--size", type=_positive, default=256, help="longer side of the output in pixels (default 256)")
    d.add_argument(
        "--decoder", choices=("interp", "neural"), default="interp", help="interp: barycentric interpolation (default)"
    )
    d.add_argument(
        "--model",
        default=None,
        help="neural decoder: a shipped name, a .npz, or a training run folder (default: the shipped 'mobile')",
    )
    d.add_argument(
        "--symmetries",
        type=int,
        choices=SYMMETRIES,
        default=1,
        help="neural decoder: average the decodings of this many flips/transposes of the input, with either "
        "--backend (default 1; 8 gains about 0.02 dB for 8x the time)",
    )
    d.add_argument(
        "--gain",
        type=_gain,
        default=1.0,
        help="neural decoder: scale the network's correction of interpolation by this factor (default 1: as "
        f"trained; 1.5 keeps the image's class more often for about 0.15 dB; up to {MAX_GAIN:g})",
    )
    d.add_argument(
        "--backend",
        choices=("jax", "onnx"),
        default="jax",
        help="neural decoder: jax (default), or onnx: onnxruntime on the CPU (the onnx extra; --model may be a "
        ".onnx file from `python -m trimesh_decode.models export-onnx`)",
    )
    d.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    s = sub.add_parser(
        "dataset",
        help="encode random crops of a photo folder",
        description="Encode random crops of every image in a folder as previews (training data for the neural "
        "decoder). Resumable: rerun the same command to continue.",
        epilog=EXAMPLE,
        formatter_class=fmt,
    )
    s.add_argument(
        "--images",
        required=True,
        action="append",
        help="folder of photos (searched recursively); repeat it for several folders",
    )
    s.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out the photos whose path inside their --images folder matches GLOB or lies under the folder "
        "GLOB (repeatable), e.g. --exclude nips17_dev: the neural decoder's ImageNet-domain test set",
    )
    s.add_argument("--out", "-o", required=True, help="output folder: crops/*.png, previews/*.tri, manifest.jsonl")
    s.add_argument("--crops", type=_positive, required=True, help="number of crops to encode")
    s.add_argument("--size", type=_positive, default=256, help="crop side in pixels (default 256)")
    s.add_argument("--bytes", type=_positive, default=200, help="byte target (default 200)")
    s.add_argument("--seed", type=int, default=0, help="seed of the crop choice and of the encoder")
    s.add_argument(
        "--iterations",
        type=_iterations,
        default=3000,
        help="hill-climbing iterations, N or LO:HI (each crop its own, log-uniform; recorded in the manifest); "
        "default 3000",
    )
    s.add_argument(
        "--max-scale",
        type=float,
        default=1.0,
        help="crop squares of up to this many times --size (random, log-uniform; capped by the photo) and resize them "
        "to --size, so crops look like previews of whole photos (default 1: the photos' own resolution)",
    )
    s.add_argument("--processes", type=_positive, default=None, help="worker processes (default: all cores)")
    v = sub.add_parser(
        "evaluate",
        help="interpolation vs neural decoding on held-out images",
        description="Encode each image's 256x256 centre square as a preview (cached in OUT), decode it by "
        "interpolation, by each neural model, by blurred interpolation and by WebP/JPEG at the same bytes; write "
        "evaluation.json, evaluation.md and figures/.",
        epilog=EXAMPLE,
        formatter_class=fmt,
    )
    v.add_argument("--images", default=None, help=f"folder of held-out images (default {KODAK})")
    v.add_argument(
        "--dataset",
        default=None,
        help="instead of --images: a `trimesh-decode dataset` folder, scored on the previews stored in it (the "
        "bitstreams a model trained on, or a held-out folder built the same way); --limit takes the first N crops",
    )
    v.add_argument("--out", "-o", required=True, help="output folder (refused if it is not empty, unless --force)")
    v.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty OUT: previews cached there are reused, evaluation.json, evaluation.md and "
        "figures/ replaced",
    )
    v.add_argument(
        "--model",
        action="append",
        default=None,
        help="neural decoder (repeat for ablations; the first is 'neural'; default: the shipped 'mobile')",
    )
    v.add_argument("--bytes", type=_positive, default=200, help="preview byte target (default 200)")
    v.add_argument("--seed", type=int, default=0, help="encoder seed")
    v.add_argument(
        "--iterations", type=_positive, default=ITERATIONS, help=f"hill-climbing iterations (default {ITERATIONS})"
    )
    v.add_argument("--processes", type=_positive, default=None, help="encoder processes (default: all cores)")
    v.add_argument("--limit", type=_positive, default=None, help="only the first N images")
    v.add_argument(
        "--views",
        choices=("centre", "tiles"),
        default="centre",
        help="centre: each image's central square resized to 256x256 (default); tiles: every whole 256x256 tile at the "
        "image's own resolution (more views per image, for recall and t-tests; tiles of one image are not independent)",
    )
    v.add_argument(
        "--symmetries",
        type=int,
        choices=SYMMETRIES,
        default=1,
        help="also score the first model averaged over this many symmetries of the square (default 1: not)",
    )
    v.add_argument(
        "--gain",
        type=_gain,
        default=1.0,
        help="also score the first model with its correction of interpolation scaled by this factor (default 1: not)",
    )
    v.add_argument("--figures", type=int, default=6, help="comparison figures to draw (default 6)")
    v.add_argument("--no-baselines", action="store_true", help="skip WebP/JPEG at equal bytes")
    k = sub.add_parser(
        "pack",
        help="a dataset folder as photos (JPEG) + previews, without crops",
        description="Copy a `dataset` folder compactly, for a machine without its photos: each source photo once as a "
        "JPEG, every preview, the manifest; `unpack` cuts the crops again.",
        epilog=EXAMPLE,
        formatter_class=fmt,
    )
    k.add_argument("dataset", help="a folder written by `trimesh-decode dataset`")
    k.add_argument(
        "-o", "--out", required=True, help="output folder (refused if it exists and is not empty, unless --force)"
    )
    k.add_argument(
        "--quality", type=_positive, default=95, help="JPEG quality of the photos, 4:4:4 (default 95: about 45 dB)"
    )
    k.add_argument("--force", action="store_true", help="write into a non-empty OUT")
    u = sub.add_parser(
        "unpack",
        help="a packed dataset back to a training folder",
        description="Cut the crops of a `pack` output again from its photos: a training folder (crops/, previews/, "
        "manifest.jsonl).",
        epilog=EXAMPLE,
        formatter_class=fmt,
    )
    u.add_argument("kit", help="a folder written by `trimesh-decode pack`")
    u.add_argument(
        "-o", "--out", required=True, help="output folder (refused if it exists and is not empty, unless --force)"
    )
    u.add_argument("--processes", type=_positive, default=None, help="worker processes (default: all cores)")
    u.add_argument("--force", action="store_true", help="write into a non-empty OUT")
    return p


def evaluate_command(args) -> str:
    if args.dataset is not None and args.images is not None:
        raise UsageError("give --images or --dataset, not both")
    if args.dataset is not None and args.views != "centre":
        raise UsageError("--views is for --images; a --dataset is scored on its own crops")
    images = args.images or str(KODAK)
    if args.dataset is None and not Path(images).is_dir():
        raise UsageError(f"--images {images} is not a folder")
    check_output_folder(args.out, args.force, resumable=True)
    s = evaluate(
        images,
        args.out,
        models=args.model or ["mobile"],
        target_bytes=args.bytes,
        seed=args.seed,
        iterations=args.iterations,
        processes=args.processes,
        figures=args.figures,
        baselines=not args.no_baselines,
        limit=args.limit,
        views=args.views,
        symmetries=args.symmetries,
        gain=args.gain,
        dataset=args.dataset,
    )
    m = s["mean"]
    interp = f"interp {m['interp']['psnr']:.2f} dB / SSIM {m['interp']['ssim']:.3f}"
    line = f"{s['images']} images, {s['preview_bytes_mean']:.1f} bytes: {interp}"
    if "neural" in m:
        line += (
            f", neural {m['neural']['psnr']:.2f} dB / SSIM {m['neural']['ssim']:.3f} "
            f"({100 * s['improved_psnr']:.0f}% of images improved)"
        )
    return line + f"; {Path(args.out) / 'evaluation.md'}"


def output_size(grid_w: int, grid_h: int, size: int) -> tuple[int, int]:
    """(H, W) of a decoding whose longer side is ``size``, with the grid's aspect ratio."""
    if grid_w >= grid_h:
        return max(2, round(size * (grid_h - 1) / (grid_w - 1))), size
    return size, max(2, round(size * (grid_w - 1) / (grid_h - 1)))


def encode_command(args) -> str:
    out = check_output_file(args.out, args.force)
    if not MIN_TARGET <= args.bytes <= 4096:
        raise UsageError(f"--bytes {args.bytes} out of range ({MIN_TARGET}..4096)")
    if args.grid is not None and not 2 <= args.grid <= 256:
        raise UsageError(f"--grid {args.grid} out of range (2..256)")
    image = load_image(args.input)
    if min(image.shape[:2]) < 2:
        raise UsageError(f"{args.input}: {image.shape[1]}x{image.shape[0]} is too small for a preview")
    res = encode_image(image, args.bytes, args.seed, EncoderConfig(grid=args.grid, iterations=args.iterations))
    write_atomic(out, res.data, args.force)
    p = res.preview
    h, w = output_size(p.grid_w, p.grid_h, 256)
    ref = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS), np.float64)
    dec = raster_cpu.interpolate(p, (h, w)).astype(np.float64)
    psnr = 10 * np.log10(255.0**2 / max(np.mean((dec - ref) ** 2), 1e-12))
    return (
        f"{args.input} -> {out}: {res.num_bytes} bytes ({p.grid_w}x{p.grid_h} grid, {len(p.vertices)}+4 vertices, "
        f"{p.num_colours} colours), PSNR {psnr:.2f} dB at {w}x{h}, {res.seconds:.2f} s"
    )


def decode_command(args) -> str:
    out = check_output_file(args.out, args.force)
    neural_only = {
        "--model": args.model,
        "--symmetries": args.symmetries != 1,
        "--gain": args.gain != 1.0,
        "--backend": args.backend != "jax",
    }
    used = next((flag for flag, given in neural_only.items() if given), None)
    if args.decoder != "neural" and used:
        raise UsageError(f"{used} is for --decoder neural")
    decoder = None
    if args.decoder == "neural":
        decoder = _onnx_decoder(args.model) if args.backend == "onnx" else _neural_decoder(args.model)
        decoder = decoder.averaged(args.symmetries).amplified(args.gain)
    try:
        data = Path(args.input).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {args.input}: {e.strerror or e}") from None
    try:
        p = from_bytes(data)
    except PreviewFormatError as e:
        raise UsageError(f"{args.input}: {e}") from None
    if args.size > 8192:
        raise UsageError(f"--size {args.size} is larger than 8192")
    h, w = output_size(p.grid_w, p.grid_h, args.size)
    t = time.perf_counter()
    if decoder is None:
        img = raster_cpu.interpolate(p, (h, w))
        how = "interpolation"
    else:
        img = decoder.decode([p])[0]
        if img.shape[:2] != (h, w):
            img = np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.LANCZOS))
        how = f"neural decoder {decoder.label}"
    secs = time.perf_counter() - t
    save_png(out, img, overwrite=args.force)
    return f"{args.input} ({len(data)} bytes, {p!r}) -> {out}: {w}x{h}, {how}, {secs:.2f} s"


def _onnx_decoder(model: str | None):
    try:
        from trimesh_decode.onnx_export import OnnxDecoder, export_onnx  # lazy: the optional onnx extra

        OnnxDecoder.check_installed()
    except ImportError:
        raise UsageError("--backend onnx needs the onnx extra: pip install -e '.[onnx]'") from None
    if model and model.endswith(".onnx"):
        if not Path(model).is_file():
            raise UsageError(f"{model} does not exist")
        return OnnxDecoder(model)
    neural = _neural_decoder(model)
    with tempfile.TemporaryDirectory() as tmp:  # the model exported on the fly (a second or two)
        return OnnxDecoder(export_onnx(neural, Path(tmp) / f"{neural.name}.onnx"))


def _neural_decoder(model: str | None):
    name = model or DEFAULT_MODEL
    if model is None and DEFAULT_MODEL not in list_models():
        raise UsageError(
            "this install ships no neural decoder model; pass --model PATH (a .npz or a training run folder), "
            "or use --decoder interp (it reads every preview)"
        )
    try:
        return load_model(name)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None


def dataset_command(args) -> str:
    return build_dataset(
        args.images,
        args.out,
        crops=args.crops,
        size=args.size,
        target_bytes=args.bytes,
        seed=args.seed,
        iterations=args.iterations,
        max_scale=args.max_scale,
        exclude=tuple(args.exclude),
        processes=args.processes,
    )


def pack_command(args) -> str:
    return pack_dataset(args.dataset, args.out, quality=args.quality, force=args.force)


def unpack_command(args) -> str:
    return unpack_dataset(args.kit, args.out, processes=args.processes, force=args.force)


def main(argv: list[str] | None = None) -> int:
    commands = {
        "encode": encode_command,
        "decode": decode_command,
        "dataset": dataset_command,
        "evaluate": evaluate_command,
        "pack": pack_command,
        "unpack": unpack_command,
    }
    return run_subcommand("trimesh-decode", _parser(), commands, argv, expected=(DatasetError, EvaluationError))


if __name__ == "__main__":
    sys.exit(main())
