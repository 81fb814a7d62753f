"""jpegedit's training task: ``init`` / ``train_step`` / ``dataset`` for :func:`compat.trainer.train`.

A batch of 256x256 crops travels: attention net -> codec (float path, ``cubic_ste`` rounding,
``Z = round(F * A / Q)``) -> standard decoder -> objective (Eq. 8-10) -> Adam -> table projection.

Parameters: ``{"q": (2, 8, 8) scaled tables, "net": {"backbone": VGG16 conv1_1..conv3_3, "head": 1x1
conv}}`` (``"net"`` absent in Q-tables-only mode, where A = 1). With ``config.model.finetune_backbone``
False the backbone receives no updates (the paper refines it: True).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from compat import data as datalib
from compat import metrics
from compat.trainer import Task, apply_gradients, guard_update
from jpegedit import codec, losses
from jpegedit.models import load_model
from jpegedit.network import (
    TABLE_SCALE,
    AttentionNet,
    coefficient_features,
    init_tables,
    pretrained_backbone,
    project_tables,
    tables_from_params,
)
from jpegedit.settings import (
    CONFIG_RULES,
    DEFAULT_PHOTOS,
    base_config,
    parse_overrides,
    standard_start,
    upgrade_config,
    validate_config,
)

__all__ = [
    "TrainState",
    "base_config",
    "parse_overrides",
    "validate_config",
    "CONFIG_RULES",
    "make_task",
    "make_optimizer",
    "loss_fn",
    "DEFAULT_PHOTOS",
]

IDENTITY_BIAS = 5.0  # sigmoid(5) = 0.993


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: dict
    opt_state: optax.OptState


def _labels(params: dict, finetune_backbone: bool) -> dict:
    labels = {"q": "table"}
    if "net" in params:
        labels["net"] = {k: jax.tree.map(lambda _: "head", v) for k, v in params["net"].items()}  # head (and hidden)
        labels["net"]["backbone"] = jax.tree.map(
            lambda _: "train" if finetune_backbone else "frozen", params["net"]["backbone"]
        )
    return labels


def make_optimizer(config, params: dict) -> optax.GradientTransformation:
    """Adam at ``config.optim.lr`` on what trains (the attention head at ``config.optim.head_lr``
    and the tables at ``config.optim.table_lr`` when set; every rate cosine-decayed to 10% over
    ``config.steps`` when ``config.optim.cosine``), nothing on a frozen backbone, then the table
    projection onto [1 s, 255 s]."""

    def adam(lr):
        if config.optim.cosine:
            lr = optax.cosine_decay_schedule(lr, max(int(config.steps), 1), alpha=0.1)
        return optax.adam(lr, b1=config.optim.b1, b2=config.optim.b2)

    head_lr = config.optim.head_lr or config.optim.lr
    table_lr = config.optim.table_lr or config.optim.lr
    labelled = optax.multi_transform(
        {"train": adam(config.optim.lr), "table": adam(table_lr), "head": adam(head_lr), "frozen": optax.set_to_zero()},
        _labels(params, config.model.finetune_backbone),
    )
    return optax.chain(labelled, project_tables())


def loss_fn(params: dict, images: jax.Array, config, model: AttentionNet | None, key: jax.Array | None = None):
    """``(L, (terms, decoded))`` for a batch of float images in 0..255; ``key`` draws the noise of
    ``rounding='noise'`` (the other roundings are deterministic)."""
    tables = tables_from_params(params["q"])
    chroma, rounding = config.chroma, config.rounding
    # codec.roundtrip in steps, so that the coeff head and the rate estimate can read the coefficients
    # before rounding: F / Q, then F * A / Q, then rounded and decoded
    unrounded = codec.encode(images, tables, chroma=chroma, rounding="none")
    attention = None
    if model is not None:
        net = params["net"]
        if not config.model.finetune_backbone:
            # frozen: no gradient is wanted, so none is computed (XLA drops the backbone's backward pass)
            net = {**net, "backbone": jax.lax.stop_gradient(net["backbone"])}
        coeffs = coefficient_features(unrounded.components) if model.head == "coeff" else None
        attention = model.apply({"params": net}, images, coeffs=coeffs)
        unrounded = codec.scale(unrounded, attention)
    leaves, treedef = jax.tree.flatten(unrounded)
    keys = [None] * len(leaves) if key is None else list(jax.random.split(key, len(leaves)))
    rounded = jax.tree.unflatten(treedef, [codec.round_with(c, rounding, k) for c, k in zip(leaves, keys)])
    decoded = codec.decode(rounded, tables)
    total, terms = losses.objective(
        images,
        decoded,
        tables,
        attention,
        lam=config.loss.lam,
        alpha=config.loss.alpha,
        beta=config.loss.beta,
        gamma=config.loss.gamma,
        rate=config.loss.rate,
        unrounded=unrounded.components,
        distortion_kind=config.loss.distortion,
    )
    return total, (terms, decoded)


def _attention_net(config) -> AttentionNet:
    return AttentionNet(
        backbone=config.model.backbone,
        head=config.model.head,
        hidden=config.model.hidden,
    )


def init_params(config, rng: jax.Array, with_start: bool = True) -> tuple[dict, AttentionNet | None]:
    """Fresh parameters; with ``with_start`` (and ``config.model.init``), the start model's tables and head."""
    q_rng, net_rng = jax.random.split(rng)
    params = {"q": init_tables(q_rng)}
    model = None
    if config.model.attention:
        model = _attention_net(config)
        s = config.data.crop
        coeffs = jnp.zeros((1, -(-s // 8), -(-s // 8), 192), jnp.float32) if model.head == "coeff" else None
        # jitted: one compiled program instead of one per initialiser shape (same values, seconds faster)
        net = jax.jit(lambda r: model.init(r, jnp.zeros((1, s, s, 3), jnp.float32), coeffs=coeffs))(net_rng)["params"]
        if config.model.pretrained:
            net = {**net, "backbone": pretrained_backbone(model.backbone, config.model.backbone_weights)}
        params["net"] = jax.tree.map(jnp.asarray, dict(net))
    if "net" in params and config.model.identity_head:
        head = params["net"]["head"]
        params["net"]["head"] = {
            "kernel": jnp.zeros_like(head["kernel"]),
            "bias": jnp.full_like(head["bias"], IDENTITY_BIAS),
        }
    if with_start and config.model.init:
        standard = standard_start(config.model.init)
        if standard is not None:  # a standard encoder's tables: "mozjpeg:40", "ijg:75"
            base, quality = standard
            params["q"] = jnp.asarray(codec.quality_to_tables(quality, base=base), jnp.float32) * TABLE_SCALE
            return params, model
        start = load_model(config.model.init)
        params["q"] = jnp.asarray(start.tables, jnp.float32) * TABLE_SCALE
        if "net" in params and start.head is not None:
            # a Q-tables-only start gives the tables; the head keeps its fresh (or identity) initialisation
            params["net"]["head"] = {
                "kernel": jnp.asarray(start.head["kernel"]),
                "bias": jnp.asarray(start.head["bias"]),
            }
    return params, model


def make_task(config) -> Task:
    validate_config(config)
    model = _attention_net(config) if config.model.attention else None

    def init(rng, with_start: bool = True):
        params, _ = init_params(config, rng, with_start)
        tx = make_optimizer(config, params)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    def train_step(state: TrainState, batch: dict, rng: jax.Array):
        images = batch["image"].astype(jnp.float32)
        tx = make_optimizer(config, state.params)
        u = apply_gradients(loss_fn, state.params, state.opt_state, tx, images, config, model, rng)
        terms, decoded = u.aux
        new = TrainState(step=state.step + 1, params=u.params, opt_state=u.opt_state)
        tables = tables_from_params(new.params["q"])  # after this step's update
        out = {
            "loss": u.loss,
            "grad_norm": u.grad_norm,
            "psnr": jnp.mean(metrics.psnr(images, jnp.round(decoded))),
            "mean_q_luma": jnp.mean(tables[0]),
            "mean_q_chroma": jnp.mean(tables[1]),
            **terms,
        }
        return guard_update(u.ok, new, state), out

    def dataset(process_index: int, process_count: int, local_batch: int):
        paths = datalib.training_images(
            list(config.data.roots), min_side=config.data.crop, include=list(config.data.include)
        )
        return datalib.crop_batches(
            paths,
            crop=config.data.crop,
            batch_size=local_batch,
            seed=config.seed,
            flip=config.data.flip,
            shard_index=process_index,
            shard_count=process_count,
        )

    def describe(state: TrainState) -> dict:
        tables = np.asarray(tables_from_params(jax.device_get(state.params["q"])))
        return {"q_min": float(tables.min()), "q_max": float(tables.max())}

    return Task(
        init=init,
        train_step=train_step,
        dataset=dataset,
        name=config.name,
        upgrade=upgrade_config,
        describe=describe,
        template=lambda rng: init(rng, with_start=False),
    )
