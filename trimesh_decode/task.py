"""The neural decoder's training task: ``init`` / ``train_step`` / ``dataset`` for
:func:`compat.trainer.train`.

A batch travels: preview meshes (triangulated on the host by the Grain workers, padded to fixed
sizes) -> :func:`trimesh_decode.raster.decoder_channels` on the device (the 8 channels at 256x256)
-> a random horizontal flip (``data.dihedral``: any of the square's 8 symmetries), optionally a
random order of the colour channels (``data.colour_permute``) and an optional aligned random crop
(the same for input and target) -> the stacked hourglass -> MSE at every loss module (intermediate
supervision), optionally plus LPIPS of the last module's image (``loss.lpips``) -> Adam.

BatchNorm across devices: the batch is one global array sharded over the ``data`` mesh axis and the
step is one ``jax.jit`` program, so the batch mean and variance a BatchNorm layer takes are over the
whole global batch (XLA inserts the cross-device reductions), and the running statistics are one
replicated copy - the same numbers as on a single device (tests/test_trimesh_neural.py pins this).

The dataset is a folder written by ``trimesh-decode dataset`` (crops/, previews/, manifest.jsonl).
"""

from __future__ import annotations

import functools
import itertools

import flax.struct
import jax
import jax.numpy as jnp
import optax

from compat import metrics
from compat.trainer import Task, apply_gradients, guard_update
from trimesh_decode import INTERP, SIZE, raster
from trimesh_decode.hourglass import CHANNEL_SETS, StackedHourglass, select_channels, widen
from trimesh_decode.meshes import MESH_KEYS, Mesh
from trimesh_decode.models import load_model
from trimesh_decode.pipeline import preview_batches
from trimesh_decode.settings import (
    CONFIG_RULES,
    REPO,
    base_config,
    parse_overrides,
    upgrade_config,
    validate_config,
)

__all__ = [
    "TrainState",
    "ema_decay",
    "update_ema",
    "base_config",
    "parse_overrides",
    "validate_config",
    "CONFIG_RULES",
    "make_model",
    "make_optimizer",
    "make_task",
    "loss_fn",
    "REPO",
]


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: dict
    batch_stats: dict
    opt_state: optax.OptState
    # {"params", "batch_stats"} averaged over the steps (config optim.ema); None when not kept, which
    # leaves the checkpoint's structure as it was before averages existed
    ema: dict | None = None


def ema_decay(step: jax.Array, decay: float) -> jax.Array:
    """The average's decay at ``step`` (0-based): ``min(decay, (1 + step) / (10 + step))``, so that
    in the first steps the average follows the weights rather than the start (as TensorFlow's
    ExponentialMovingAverage with ``num_updates``)."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def update_ema(ema: dict, new: dict, decay: jax.Array) -> dict:
    """``decay * ema + (1 - decay) * new``, leaf by leaf."""
    return jax.tree.map(lambda e, n: e + (1.0 - decay) * (n - e), ema, new)


def make_model(config) -> StackedHourglass:
    m = config.model
    if m.channels not in CHANNEL_SETS:
        raise ValueError(f"unknown channel set {m.channels!r}; choose from {', '.join(CHANNEL_SETS)}")
    if m.output == "residual" and m.channels == "no_interp":
        raise ValueError("output='residual' adds the interpolated image, which channels='no_interp' withholds")
    return StackedHourglass(width=m.width, stacks=m.stacks, depth=m.depth, output=m.output)


def make_optimizer(config) -> optax.GradientTransformation:
    o = config.optim
    if o.decay_steps:
        if o.decay_steps <= max(1, o.warmup):
            raise ValueError(
                f"optim.decay_steps ({o.decay_steps}) must exceed optim.warmup ({o.warmup}): "
                "the cosine starts after the warm-up"
            )
        lr = optax.warmup_cosine_decay_schedule(0.0, o.lr, max(1, o.warmup), o.decay_steps, end_value=o.lr * 0.01)
    elif o.warmup:
        lr = optax.linear_schedule(0.0, o.lr, o.warmup)
    else:
        lr = o.lr
    return optax.adam(lr, b1=o.b1, b2=o.b2)


def network_inputs(channels: jax.Array, config) -> tuple[jax.Array, jax.Array]:
    """(the channels the model reads, the interpolated RGB) from (B, H, W, 8) channels."""
    return select_channels(channels, config.model.channels), channels[..., INTERP]


def loss_fn(params, batch_stats, channels, targets, config, model):
    """Sum over loss modules of the MSE (images in [0, 1]), plus ``loss.lpips`` times the mean LPIPS
    distance of the last module's image when that weight is not 0; returns ``(loss, (images, new
    stats, the terms))``."""
    x, interp = network_inputs(channels, config)
    images, updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, x, train=True, interp=interp, mutable=["batch_stats"]
    )
    losses = [jnp.mean(jnp.square(im - targets)) for im in images]
    total = sum(losses)
    if config.loss.lpips:
        # the perceptual term on the image the decoder outputs (the inputs to LPIPS are 0..255)
        perceptual = jnp.mean(metrics.lpips(images[-1] * 255.0, targets * 255.0, net=config.loss.lpips_net))
        losses = [*losses, perceptual]
        total = total + config.loss.lpips * perceptual
    return total, (images, updates["batch_stats"], losses)


def _augment(channels, targets, rng, config):
    """The same random flip, colour order and aligned crop for input channels and targets."""
    b, h, w, _ = channels.shape
    flip_rng, crop_rng, turn_rng = jax.random.split(rng, 3)
    if config.data.colour_permute:
        # (a fourth key folded from the step's key, so the flips and crops stay those of older runs)
        orders = jnp.asarray(list(itertools.permutations(range(3))), jnp.int32)
        order = orders[jax.random.randint(jax.random.fold_in(rng, 4), (b,), 0, len(orders))][:, None, None, :]
        rgb = functools.partial(jnp.take_along_axis, indices=order, axis=-1)
        channels = jnp.concatenate([channels[..., :2], rgb(channels[..., INTERP]), rgb(channels[..., 5:8])], -1)
        targets = rgb(targets)
    if config.data.flip:
        flip = jax.random.bernoulli(flip_rng, 0.5, (b,))[:, None, None, None]
        channels = jnp.where(flip, channels[:, :, ::-1], channels)
        targets = jnp.where(flip, targets[:, :, ::-1], targets)
    if config.data.dihedral:
        # also a vertical flip and a transpose, each with probability 1/2: with the horizontal flip,
        # all 8 symmetries of the square (the previews' grid is square at 256x256)
        vflip, turn = (jax.random.bernoulli(k, 0.5, (b,))[:, None, None, None] for k in jax.random.split(turn_rng))
        channels = jnp.where(vflip, channels[:, ::-1], channels)
        targets = jnp.where(vflip, targets[:, ::-1], targets)
        channels = jnp.where(turn, jnp.swapaxes(channels, 1, 2), channels)
        targets = jnp.where(turn, jnp.swapaxes(targets, 1, 2), targets)
    crop = config.data.crop
    if crop < h:
        # one offset per batch (static shapes), a multiple of 64 so the SpaceToDepth phases match
        # those of whole-image inference
        cells = (h - crop) // 64 + 1
        oy, ox = (64 * jax.random.randint(k, (), 0, cells) for k in jax.random.split(crop_rng))
        channels = jax.lax.dynamic_slice(channels, (0, oy, ox, 0), (b, crop, crop, channels.shape[-1]))
        targets = jax.lax.dynamic_slice(targets, (0, oy, ox, 0), (b, crop, crop, 3))
    return channels, targets


def render_batch(batch: dict) -> jax.Array:
    mesh = Mesh(*(batch[k] for k in MESH_KEYS))
    return raster.decoder_channels(mesh, SIZE, SIZE)


def make_task(config) -> Task:
    validate_config(config)
    model = make_model(config)
    decay = float(config.optim.ema)

    def init(rng, with_start: bool = True):
        x = jnp.zeros((1, SIZE, SIZE, len(CHANNEL_SETS[config.model.channels])))
        if with_start and config.model.init:
            v = start_variables(config)
        else:
            # jitted: one compiled program instead of one per initialiser shape (same values, seconds faster)
            v = jax.jit(lambda r: model.init(r, x, train=False, interp=jnp.zeros((1, SIZE, SIZE, 3))))(rng)
        tx = make_optimizer(config)
        ema = {"params": v["params"], "batch_stats": v["batch_stats"]} if decay else None
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=v["params"],
            batch_stats=v["batch_stats"],
            opt_state=tx.init(v["params"]),
            ema=jax.tree.map(jnp.copy, ema),
        )

    def train_step(state: TrainState, batch: dict, rng: jax.Array):
        tx = make_optimizer(config)
        channels = render_batch(batch)
        targets = batch["image"].astype(jnp.float32) / 255.0
        channels, targets = _augment(channels, targets, rng, config)
        u = apply_gradients(
            loss_fn, state.params, state.opt_state, tx, state.batch_stats, channels, targets, config, model
        )
        loss, gnorm, params, opt_state, (images, stats, losses) = u.loss, u.grad_norm, u.params, u.opt_state, u.aux
        ema = None
        if decay:
            ema = update_ema(state.ema, {"params": params, "batch_stats": stats}, ema_decay(state.step, decay))
        new = TrainState(step=state.step + 1, params=params, batch_stats=stats, opt_state=opt_state, ema=ema)
        interp = channels[..., INTERP]
        psnr = metrics.psnr(targets * 255.0, jnp.clip(images[-1], 0.0, 1.0) * 255.0)
        psnr_interp = metrics.psnr(targets * 255.0, interp * 255.0)
        out = {
            "loss": loss,
            "grad_norm": gnorm,
            "psnr": jnp.mean(psnr),
            "psnr_interp": jnp.mean(psnr_interp),
            "psnr_gain": jnp.mean(psnr - psnr_interp),  # neural minus interpolation, this batch (train mode)
            **{f"mse_{i}": v for i, v in enumerate(losses[: len(images)])},
            **({"lpips": losses[-1]} if config.loss.lpips else {}),
        }
        return guard_update(u.ok, new, state), out

    def dataset(process_index: int, process_count: int, local_batch: int):
        return preview_batches(
            config.data.dataset,
            batch_size=local_batch,
            seed=config.seed,
            pad_points=config.data.pad_points,
            pad_triangles=config.data.pad_triangles,
            shard_index=process_index,
            shard_count=process_count,
            threads=config.data.threads,
            workers=config.data.workers,
        )

    return Task(
        init=init,
        train_step=train_step,
        dataset=dataset,
        name=config.name,
        upgrade=upgrade_config,
        template=lambda rng: init(rng, with_start=False),
    )


def start_variables(config) -> dict:
    """The variables of the decoder named by ``config.model.init``, checked against this config's model
    (a model of the same settings has weights of the same shapes: :func:`trimesh_decode.models.load_model`
    checks an exported file's against its settings). A start that differs only in being narrower is
    widened to this config's width, computing the same function (:func:`trimesh_decode.hourglass.widen`)."""
    start = load_model(config.model.init)
    keys = ("width", "stacks", "depth", "channels", "output")
    want = {k: config.model[k] for k in keys}
    have = {k: start.settings[k] for k in keys}
    variables = start.variables
    if want["width"] > have["width"] and {**have, "width": want["width"]} == want:
        # a wider model of the same design: the start's function, widened (trimesh_decode.hourglass.widen)
        variables = widen(variables, have["width"], want["width"], seed=config.seed)
    elif want != have:
        diff = {k: (have[k], want[k]) for k in keys if have[k] != want[k]}
        raise ValueError(
            f"model.init {config.model.init!r} is another model: {diff} (its setting, this config's; "
            "only a wider width can be grown from a start)"
        )
    return {
        k: jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), dict(variables[k])) for k in ("params", "batch_stats")
    }
