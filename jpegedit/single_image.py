"""Single-image optimisation (the paper's Sec. 4.4, Fig. 9): one model per (image, lambda), all of
them trained at once - vmapped over a model axis inside one jit, the model axis sharded over the
``data`` mesh (every device of every process).

Each model is a pair of Q-tables and an attention head, started from a trained model (a shipped one
by default) and refined on its own image alone (batch 1, the full image) at its own lambda. The
backbone (the starting models', VGG16 or Lite0) is frozen and shared - the shipped models' setting -
so its features are computed once per image and every model only runs its head, the codec and the
loss. Images of one run share one shape: portrait images are transposed to landscape (Kodak: all
512x768 then), and transposed back for the files.

    python -m jpegedit.single_image --data ../shared/data/kodak -o out/single_image \\
        --lambdas 0.001,0.003,0.01,0.03,0.1,0.3 --steps 2000

Writes ``OUT/single_image.json`` (per image and lambda: bytes, bpp, PSNR, MS-SSIM of the real JPEG
file, before and after refinement; the curve averaged over images per lambda), ``OUT/single_image.png``,
and checkpoints under ``OUT/checkpoints`` (a rerun of the same command resumes).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from compat import metrics
from compat import sharding as meshlib
from compat.checkpoint import CheckpointError
from compat.cli import OneLineParser, UsageError, check_output_folder, run, write_atomic
from compat.images import list_images, load_image
from compat.trainer import ConfigMismatchError, RunRefused, Task, TrainingDiverged, apply_gradients, guard_update, train
from jpegedit import codec, jpegfile, losses
from jpegedit.encoder import attention as model_attention
from jpegedit.encoder import encode_for_file, features
from jpegedit.encoder import features as image_features
from jpegedit.models import load_model
from jpegedit.network import TABLE_SCALE, attention_head, export_tables, project_tables, tables_from_params
from jpegedit.scoring import score

__all__ = [
    "prepare_images",
    "init_params",
    "make_step",
    "make_task",
    "run_config",
    "optimise",
    "evaluate_models",
    "main",
]

log = logging.getLogger(__name__)


def prepare_images(images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[bool]]:
    """Stack images of one landscape shape: portrait ones transposed. Returns (stack, transposed)."""
    flipped = [im.shape[0] > im.shape[1] for im in images]
    land = [np.ascontiguousarray(im.transpose(1, 0, 2)) if f else im for im, f in zip(images, flipped)]
    shapes = {im.shape for im in land}
    if len(shapes) != 1:
        raise ValueError(
            f"single-image optimisation needs images of one size (after turning portraits): got {sorted(shapes)}"
        )
    return np.stack(land), flipped


def init_params(model, count: int) -> dict:
    """The starting tables and heads of ``count`` models, ``{"q": (count, 2, 8, 8), "head": {...}}``:
    ``model`` is one model (copied ``count`` times) or a sequence of models, tiled: model ``k``
    starts from ``model[k % len(model)]`` (one starting model per lambda)."""
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    for m in models:
        if m.head is None:
            raise ValueError(
                f"model {m.name} has no attention head; single-image optimisation refines Q-tables + attention"
            )
    pick = np.arange(count) % len(models)

    def stack(get):
        return jnp.asarray(np.stack([np.asarray(get(models[i]), np.float32) for i in pick]))

    return {
        "q": stack(lambda m: m.tables) * TABLE_SCALE,
        "head": {"kernel": stack(lambda m: m.head["kernel"]), "bias": stack(lambda m: m.head["bias"])},
    }


def make_optimizer(lr: float, head_lr: float) -> optax.GradientTransformation:
    labels = {"q": "q", "head": {"kernel": "head", "bias": "head"}}
    return optax.chain(
        optax.multi_transform({"q": optax.adam(lr), "head": optax.adam(head_lr)}, labels), project_tables()
    )


def make_step(tx: optax.GradientTransformation, alpha: float = 10.0, beta: float = 1.0, gamma: float = 0.0):
    """``step(params, opt_state, images, feats, index, lams) -> (params, opt_state, loss, grad_norm)``,
    every argument but ``images`` and ``feats`` with a leading model axis; model ``m`` trains on
    ``images[index[m]]`` at ``lams[m]``. A non-finite step leaves that model unchanged (its loss is
    reported as it was, so the caller sees it)."""

    def one(params, opt_state, image, feats, lam):
        def loss_fn(p):
            tables = tables_from_params(p["q"])
            attention = attention_head(p["head"], feats)
            decoded, _ = codec.roundtrip(image, tables, chroma="444", rounding="cubic_ste", scales=attention)
            total, _ = losses.objective(image, decoded, tables, attention, lam=lam, alpha=alpha, beta=beta, gamma=gamma)
            return total, None

        u = apply_gradients(loss_fn, params, opt_state, tx)
        new_params, new_opt = guard_update(u.ok, (u.params, u.opt_state), (params, opt_state))
        return new_params, new_opt, u.loss, u.grad_norm

    def step(params, opt_state, images, feats, index, lams):
        img = jnp.take(images, index, axis=0)
        f = jnp.take(feats, index, axis=0)
        return jax.vmap(one)(params, opt_state, img, f, lams)

    return step


def backbone_features(images: np.ndarray, models: Sequence = ()) -> jax.Array:
    """The frozen backbone's features of every image, once: (N, H/8, W/8, C). The backbone is the
    starting ``models``' (one for all of them; VGG16 when none is given)."""
    backbones = sorted({m.backbone for m in models if m.head is not None}) or ["vgg16"]
    if len(backbones) > 1:
        raise ValueError(f"the starting models read different backbones ({', '.join(backbones)}): give one family")
    return jnp.stack([features(x, backbones[0]) for x in images])


def _per_lambda(model, nl: int) -> list:
    models = list(model) if isinstance(model, (list, tuple)) else [model] * nl
    if len(models) != nl:
        raise ValueError(f"{len(models)} starting models for {nl} lambdas: give one model, or one per lambda")
    return models


def _model_rows(n: int, lams: Sequence[float], devices: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Each model's image and lambda, image-major; padded to a multiple of ``devices`` with copies of
    model 0's work. Returns ``(index, lam, padding)``."""
    m = n * len(lams)
    pad = (-m) % devices
    index = np.concatenate([np.repeat(np.arange(n), len(lams)), np.zeros(pad, np.int64)]).astype(np.int32)
    lam = np.tile(np.asarray(lams, np.float32), n)
    return index, np.concatenate([lam, np.full(pad, lam[0], np.float32)]), pad


def run_config(
    lams: Sequence[float],
    starts: Sequence[str],
    images: Sequence[str],
    *,
    steps: int,
    lr: float,
    head_lr: float,
    devices: int,
    checkpoint_every: int = 100,
    log_every: int = 10,
):
    """The trainer's config of one single-image optimisation: its batch is the models (images x
    lambdas, padded to the devices), and what it records in ``config.json`` (the lambdas, starting
    models, images and learning rates) must match when a run resumes."""
    index, _, _ = _model_rows(len(images), lams, devices)
    c = ml_collections.ConfigDict()
    c.name = "single_image"
    c.steps, c.seed, c.batch_size = int(steps), 0, len(index)
    c.log_every, c.checkpoint_every = max(1, min(log_every, steps)), max(1, checkpoint_every)
    c.keep_checkpoints, c.async_checkpoints = 2, False
    c.lambdas, c.init, c.images = [float(x) for x in lams], list(starts), list(images)
    c.lr, c.head_lr = float(lr), float(head_lr)
    return c


class _Rows:
    """This process's share of the model rows, the same every step (no state to checkpoint)."""

    def __init__(self, rows: dict):
        self.rows = rows

    def __iter__(self):
        return self

    def __next__(self):
        return self.rows


def make_task(config, images: np.ndarray, model) -> Task:
    """The single-image optimisation as a task of the shared trainer (its lock, SIGTERM save,
    resume, metrics and divergence stop): the state holds every model's tables, head and Adam
    moments, sharded over ``data`` along the model axis; the batch is each model's (image, lambda);
    the images and their backbone features live on the devices once, read by every step. Logged:
    the mean loss and gradient norm over the models whose step was finite, and how many were not
    (their update is skipped, as the harness's guard does for a whole batch)."""
    lams, n = config.lambdas, len(images)
    starts = _per_lambda(model, len(lams))
    if any(m.head is not None and "hidden" in m.head for m in starts):
        raise ValueError(
            "single-image optimisation refines the paper's linear attention head; a coeff-head model is not supported"
        )
    tx = make_optimizer(config.lr, config.head_lr)
    step = make_step(tx)
    mesh = meshlib.data_mesh()
    index, lam, _ = _model_rows(n, lams, mesh.size)
    if len(index) != config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} is not the {len(index)} models of this run")
    repl = meshlib.replicated_sharding(mesh)
    imgs = jax.device_put(jnp.asarray(images, jnp.float32), repl)
    feats = jax.device_put(backbone_features(images, starts), repl)

    def init(rng):
        del rng  # the models start from trained ones
        params = init_params(starts, len(index))
        m = len(index)
        return {
            "params": params,
            "opt_state": jax.vmap(tx.init)(params),
            "step": jnp.zeros((), jnp.int32),
            "first_loss": jnp.full((m,), jnp.nan, jnp.float32),
            "loss": jnp.full((m,), jnp.nan, jnp.float32),
        }

    def state_sharding(state, mesh):
        shard, repl = meshlib.data_sharding(mesh), meshlib.replicated_sharding(mesh)
        return {k: repl if k == "step" else shard for k in state}

    def train_step(state, batch, rng):
        del rng  # straight-through rounding: no noise
        params, opt_state, loss, gnorm = step(
            state["params"], state["opt_state"], imgs, feats, batch["index"], batch["lam"]
        )
        finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        count = jnp.sum(finite)
        new = {
            "params": params,
            "opt_state": opt_state,
            "step": state["step"] + 1,
            "first_loss": jnp.where(state["step"] == 0, loss, state["first_loss"]),
            "loss": loss,
        }
        mean = lambda x: jnp.sum(jnp.where(finite, x, 0.0)) / count  # noqa: E731 - NaN when none is finite
        return new, {"loss": mean(loss), "grad_norm": mean(gnorm), "non_finite_models": len(index) - count}

    def dataset(process_index: int, process_count: int, local_batch: int):
        lo = process_index * local_batch
        return _Rows({"index": index[lo : lo + local_batch], "lam": lam[lo : lo + local_batch]})

    return Task(
        init=init,
        train_step=train_step,
        dataset=dataset,
        name=f"{n * len(lams)} single-image models",
        state_sharding=state_sharding,
    )


def optimise(
    images: np.ndarray,
    lams: Sequence[float],
    model,
    *,
    steps: int,
    workdir: str | Path,
    lr: float = 1e-5,
    head_lr: float = 1e-4,
    names: Sequence[str] | None = None,
    checkpoint_every: int = 100,
    progress: bool = True,
) -> tuple[dict, dict]:
    """Refine ``model`` (one, or one per lambda) on each image at each lambda (M = images x lambdas
    models, padded to a multiple of the device count) with the shared trainer in ``workdir`` (a rerun
    resumes there). Returns ``(params with a leading model axis, info)``; model ``i * len(lams) + j``
    is image ``i`` at ``lams[j]``."""
    n, nl = len(images), len(lams)
    m = n * nl
    mesh = meshlib.data_mesh()
    starts = _per_lambda(model, nl)
    names = list(names) if names is not None else [f"image{i}" for i in range(n)]
    config = run_config(
        lams,
        [s.name for s in starts],
        names,
        steps=steps,
        lr=lr,
        head_lr=head_lr,
        devices=mesh.size,
        checkpoint_every=checkpoint_every,
    )
    ckdir = Path(workdir) / "checkpoints"
    resumed_at = max((int(p.name) for p in ckdir.iterdir() if p.name.isdigit()), default=0) if ckdir.is_dir() else 0
    t0 = time.perf_counter()
    state, last = train(config, workdir, make_task(config, images, starts), progress=progress)
    first, final = np.asarray(state["first_loss"])[:m], np.asarray(state["loss"])[:m]
    info = {
        "models": m,
        "padding": config.batch_size - m,
        "devices": mesh.size,
        "steps": steps,
        "resumed_at": resumed_at,
        "preempted": last.get("preempted"),
        "seconds": time.perf_counter() - t0,
        "first_loss": None if resumed_at >= steps else first.tolist(),
        "last_loss": None if resumed_at >= steps else final.tolist(),
        "non_finite_models": last.get("non_finite_models"),
    }
    return jax.tree.map(lambda x: np.asarray(x)[:m], state["params"]), info


def evaluate_models(
    images: np.ndarray, flipped: Sequence[bool], names: Sequence[str], lams: Sequence[float], params: dict, model
) -> list[dict]:
    """Each (image, lambda) model as a real JPEG file of its image (turned back if it was a portrait),
    standard Huffman tables; and the starting model on the same image, for comparison."""

    starts = _per_lambda(model, len(lams))
    feats = backbone_features(images, starts)

    def file_scores(image, tables, attention):
        data = jpegfile.write(encode_for_file(image, tables, attention), tables)
        return {k: v for k, v in score(image, data).items() if k != "lpips"}

    rows = []
    for i, name in enumerate(names):
        image = images[i].transpose(1, 0, 2) if flipped[i] else images[i]
        before_of = {}
        upright = image_features(image)  # of the image as it is, for every starting model
        for j, lam in enumerate(lams):
            start = starts[j]
            if start.name not in before_of:  # what `jpegedit encode --model` writes
                before_of[start.name] = file_scores(image, start.tables, model_attention(start, image, upright))
            before = {"model": start.name, **before_of[start.name]}
            k = i * len(lams) + j
            head = {"kernel": jnp.asarray(params["head"]["kernel"][k]), "bias": jnp.asarray(params["head"]["bias"][k])}
            tables = export_tables(params["q"][k])
            attention = attention_head(head, feats[i])
            if flipped[i]:
                # trained on the turned image: turning it back transposes the block grid, every block's
                # coefficients (v, u) -> (u, v), and so the tables and the attention within each block
                tables = np.ascontiguousarray(tables.transpose(0, 2, 1))
                attention = tuple(jnp.transpose(a, (1, 0, 3, 2)) for a in attention)
            rows.append(
                {
                    "image": name,
                    "lam": float(lam),
                    "before": before,
                    "after": file_scores(image, tables, attention),
                    "tables": tables.tolist(),
                }
            )
    return rows


def _curve(rows: list[dict], lams: Sequence[float], which: str = "after") -> list[dict]:
    out = []
    for lam in lams:
        rs = [r for r in rows if r["lam"] == float(lam)]
        rec = {"lam": float(lam), "images": len(rs)}
        for k in ("bpp", "psnr", "ms_ssim"):
            vals = [r[which][k] for r in rs if r[which][k] is not None]
            rec[k] = float(np.mean(vals)) if vals else None
        out.append(rec)
    return out


def bd_vs_start(rows: list[dict], lams: Sequence[float], split: float = 0.3) -> dict:
    """BD-rate of the refined models' mean curve against their starting models' (same images), in
    PSNR and MS-SSIM, over the whole common range and below / above ``split`` bpp (the paper: the
    single-image models win above 0.3 bpp). None where the curves do not overlap there."""

    before, after = _curve(rows, lams, "before"), _curve(rows, lams, "after")
    out = {"split_bpp": split}
    for key in ("psnr", "ms_ssim"):
        if any(c[key] is None for c in before + after) or len(lams) < 2:
            continue
        rb, qb = np.array([c["bpp"] for c in before]), np.array([c[key] for c in before])
        ra, qa = np.array([c["bpp"] for c in after]), np.array([c[key] for c in after])
        for name, rr in (
            (f"bd_rate_{key}", None),
            (f"bd_rate_{key}_below_{split}", (0.0, split)),
            (f"bd_rate_{key}_above_{split}", (split, np.inf)),
        ):
            try:
                out[name] = float(metrics.bd_rate(rb, qb, ra, qa, rate_range=rr))
            except ValueError:
                out[name] = None
    return out


def _plot(rows: list[dict], curve: list[dict], path: Path, start: list[dict] | None = None) -> None:
    import matplotlib  # lazy: slow to import; only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: slow to import; only plotting needs it

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name in sorted({r["image"] for r in rows}):
        rs = sorted((r for r in rows if r["image"] == name), key=lambda r: r["after"]["bpp"])
        ax.plot([r["after"]["bpp"] for r in rs], [r["after"]["psnr"] for r in rs], color="0.8", lw=0.8)
    ax.plot([c["bpp"] for c in curve], [c["psnr"] for c in curve], "o-", color="C0", label="single-image models (mean)")
    if start:  # the starting models' curve (one start per lambda, or the same one repeated)
        ax.plot(
            [c["bpp"] for c in start], [c["psnr"] for c in start], "s--", color="C3", label="starting models (mean)"
        )
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


EXAMPLE = """example:
  python -m jpegedit.single_image --data ../shared/data/kodak -o out/single_image --limit 2 --steps 20
"""


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(
        prog="python -m jpegedit.single_image",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--data", required=True, help="folder of images of one size (portraits are turned)")
    ap.add_argument(
        "-o",
        "--out",
        required=True,
        help="results folder (JSON, plot, checkpoints); refused if not empty, unless --force",
    )
    ap.add_argument("--force", action="store_true", help="continue in a non-empty OUT (a rerun resumes there)")
    ap.add_argument("--lambdas", default="0.001,0.003,0.01,0.03,0.1,0.3", help="comma-separated lambdas")
    ap.add_argument(
        "--init",
        default="attention_lam{lam}",
        help="the model the single-image models start from; {lam} stands for each lambda (one start per lambda)",
    )
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=1e-5, help="Adam learning rate of the tables")
    ap.add_argument("--head-lr", type=float, default=1e-4, help="Adam learning rate of the attention head")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    return run(
        ap.prog,
        ap,
        _single_image_command,
        argv,
        expected=(FileNotFoundError, NotADirectoryError, CheckpointError, RunRefused, TrainingDiverged),
    )


def _single_image_command(args: argparse.Namespace) -> str | None:
    check_output_folder(args.out, args.force, resumable=True)
    try:
        lams = [float(x) for x in args.lambdas.split(",") if x]
    except ValueError:
        raise UsageError(f"--lambdas {args.lambdas!r} is not a comma-separated list of numbers") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    meshlib.maybe_initialize_distributed()
    paths = list_images(args.data)[: args.limit]
    if not paths:
        raise UsageError(f"no images under {args.data}")
    model = (
        [load_model(args.init.format(lam=f"{lam:g}")) for lam in lams]
        if "{lam}" in args.init
        else load_model(args.init)
    )
    images, flipped = prepare_images([load_image(p) for p in paths])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [Path(p).name for p in paths]
    try:
        params, info = optimise(
            images, lams, model, steps=args.steps, lr=args.lr, head_lr=args.head_lr, workdir=out, names=names
        )
    except ConfigMismatchError as e:  # the trainer's advice names its own flags
        raise UsageError(f"{str(e).split('; rerun with')[0]}; rerun with its settings, or use another -o") from None
    if info["preempted"] is not None:
        print(f"preempted at step {info['preempted']} of {args.steps}; the same command with --force continues")
        return 75
    if jax.process_index() != 0:
        return None
    rows = evaluate_models(images, flipped, names, lams, params, model)
    curve = _curve(rows, lams)
    doc = {
        "init": [m.name for m in model] if isinstance(model, list) else model.name,
        "lambdas": lams,
        "steps": args.steps,
        "lr": args.lr,
        "head_lr": args.head_lr,
        "info": info,
        "curve": curve,
        "start_curve": _curve(rows, lams, "before"),
        "vs_start": bd_vs_start(rows, lams),
        "images": rows,
    }
    write_atomic(out / "single_image.json", json.dumps(doc, indent=1).encode(), force=True)
    _plot(rows, curve, out / "single_image.png", doc["start_curve"])
    lines = [
        f"lambda {c['lam']:g}: {c['bpp']:.3f} bpp, PSNR {c['psnr']:.2f} dB over {c['images']} images" for c in curve
    ]
    lines.append(
        "BD-rate against the starting models: "
        + ", ".join(f"{k} {v:+.1f}%" for k, v in doc["vs_start"].items() if k.startswith("bd_") and v is not None)
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
