"""The training objective of Strümpler et al. 2020 (Eq. 8-10).

    L = lambda * (MSE + gamma * LPIPS_alex)                      distortion (Eq. 9)
      + alpha * (||1 / Q_L||_1 + ||1 / Q_C||_1)                   rate proxy of the tables (Eq. 10)
      + beta * (mean A_L + mean A_C)                              rate proxy of the attention

MSE on the 0..255 scale (or, ``loss.distortion="ms_ssim"``, ours, ``MS_SSIM_SCALE * (1 - MS-SSIM)``);
LPIPS from :func:`compat.metrics.lpips` (AlexNet). Smaller tables and larger
attention keep more of each coefficient - more bits - so the two rate terms push the other way from
the distortion. Every term is returned separately for logging.

``rate="bits"`` (an option of ours; ``"paper"`` is the default) replaces the two rate terms with an
estimate of the file's bits per pixel, read from the coefficients themselves (:func:`estimated_bits`):

    L = lambda * (MSE + gamma * LPIPS_alex) + estimated bpp

The paper's proxies do not see the image: ``||1/Q||_1`` charges a fine step as much where the
coefficients are all zero as where they are large, and ``mean A`` charges every attention value
alike, whether it keeps a coefficient or scales one that rounds to zero anyway. The estimate charges
what standard Huffman coding charges: a code per nonzero AC coefficient, its magnitude bits, the DC
differences, a per-block cost (end of block) and the headers, with weights fitted by least squares to real files
(``launch/fit_bits_estimate.py``, ``results/kodak/bits_estimate_fit.json``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from compat import metrics
from jpegedit.codec import round_half_away

__all__ = ["RATE_MODES", "BITS_WEIGHTS", "table_rate", "attention_rate", "estimated_bits", "distortion", "objective"]

RATE_MODES = ("paper", "bits")
# Bits of a baseline JPEG with the standard Huffman tables (Annex K) as
#   nonzero * (number of nonzero AC coefficients) + log * sum log2(1 + |AC|)
#   + dc_log * sum log2(1 + |DC difference|) + block * (number of blocks) + file (headers, measured),
# least relative squares over 504 Kodak files (12 quality levels, 9 shipped tables; mean error 1.4%):
# launch/fit_bits_estimate.py
# (which prints these numbers and the fit's error; results/kodak/bits_estimate_fit.json).
BITS_WEIGHTS = {"nonzero": 4.098, "log": 0.835, "dc_log": 0.726, "block": 4.833, "file": 5016.0}
# width of the smooth step that stands in for "this coefficient is nonzero" in the gradient
NONZERO_TAU = 0.15


def table_rate(tables: jax.Array) -> jax.Array:
    """``||1/Q_L||_1 + ||1/Q_C||_1`` of ``(2, 8, 8)`` tables in JPEG units."""
    return jnp.sum(1.0 / tables)


def attention_rate(a_luma: jax.Array | None, a_chroma: jax.Array | None) -> jax.Array:
    """``mean A_L + mean A_C`` (0 without attention)."""
    if a_luma is None:
        return jnp.float32(0.0)
    return jnp.mean(a_luma) + jnp.mean(a_chroma)


def estimated_bits(components, weights: dict | None = None, tau: float = NONZERO_TAU) -> jax.Array:
    """Estimated bits of a baseline JPEG with standard Huffman tables, per image (the leading axes).

    ``components``: each component's *unrounded* quantised coefficients ``F * A / Q``, shaped
    ``(..., rows, cols, 8, 8)`` (``codec.encode(..., rounding="none").components``).

    The value is that of the rounded coefficients (what the file holds). The gradient is that of a
    smooth stand-in: a sigmoid of width ``tau`` at the rounding threshold 1/2 for "nonzero", and
    ``log2(1 + |y|)`` for the magnitude bits of the coefficients that survive rounding, so a
    coefficient that rounds to zero costs nothing and is barely pushed unless it sits near 1/2.
    DC differences follow the blocks' row-major order, as a single-scan file codes them.
    """
    w = {**BITS_WEIGHTS, **(weights or {})}
    total = jnp.float32(0.0)
    for c in components:
        flat = c.reshape(*c.shape[:-4], -1, 64)
        r = jax.lax.stop_gradient(round_half_away(flat))
        ac, r_ac = flat[..., 1:], r[..., 1:]
        kept = r_ac != 0
        hard = w["nonzero"] * jnp.sum(kept, axis=(-2, -1)) + w["log"] * jnp.sum(
            jnp.log2(1.0 + jnp.abs(r_ac)), axis=(-2, -1)
        )
        soft = w["nonzero"] * jnp.sum(jax.nn.sigmoid((jnp.abs(ac) - 0.5) / tau), axis=(-2, -1)) + w["log"] * jnp.sum(
            jnp.where(kept, jnp.log2(1.0 + jnp.abs(ac)), 0.0), axis=(-2, -1)
        )
        diff = lambda dc: jnp.diff(dc, axis=-1, prepend=jnp.zeros_like(dc[..., :1]))  # noqa: E731
        hard = hard + w["dc_log"] * jnp.sum(jnp.log2(1.0 + jnp.abs(diff(r[..., 0]))), axis=-1)
        soft = soft + w["dc_log"] * jnp.sum(jnp.log2(1.0 + jnp.abs(diff(flat[..., 0]))), axis=-1)
        total = total + soft + jax.lax.stop_gradient(hard - soft) + w["block"] * flat.shape[-2]
    return total + w["file"]


# (1 - MS-SSIM) times this is on MSE's scale: on the shipped models' Kodak files MSE / (1 - MS-SSIM)
# is 1250-1370 from 0.2 to 1 bpp, so the same lambdas serve both distortions.
MS_SSIM_SCALE = 1300.0


def distortion(original: jax.Array, decoded: jax.Array, gamma: float, kind: str = "mse") -> dict[str, jax.Array]:
    """``{"mse", "lpips", "main"}`` over a batch: ``main`` is the distortion the loss weighs, MSE or
    ``MS_SSIM_SCALE * (1 - MS-SSIM)`` (``kind="ms_ssim"``, then also ``"ms_ssim"``); LPIPS is only
    computed when ``gamma > 0`` (a static number)."""
    out = {"mse": jnp.mean((original - decoded) ** 2)}
    out["lpips"] = jnp.mean(metrics.lpips(original, decoded, "alex")) if gamma > 0 else jnp.float32(0.0)
    if kind == "ms_ssim":
        out["ms_ssim"] = jnp.mean(metrics.ms_ssim(original, jnp.clip(decoded, 0.0, 255.0)))
        out["main"] = MS_SSIM_SCALE * (1.0 - out["ms_ssim"])
    elif kind == "mse":
        out["main"] = out["mse"]
    else:
        raise ValueError(f"distortion must be 'mse' or 'ms_ssim', got {kind!r}")
    return out


def objective(
    original: jax.Array,
    decoded: jax.Array,
    tables: jax.Array,
    attention: tuple[jax.Array, jax.Array] | None,
    *,
    lam: float,
    alpha: float = 10.0,
    beta: float = 1.0,
    gamma: float = 0.0,
    rate: str = "paper",
    unrounded=None,
    distortion_kind: str = "mse",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(L, terms)``: ``terms`` holds mse, lpips, table_rate, attention_rate, the mean attention per
    map (1 without attention), the estimated bpp (when ``unrounded`` coefficients are given) and the
    weighted parts. ``rate="bits"`` needs ``unrounded`` (the components before rounding) and makes
    the estimated bpp the rate term; alpha and beta then play no part."""
    if rate not in RATE_MODES:
        raise ValueError(f"rate must be one of {RATE_MODES}, got {rate!r}")
    if rate == "bits" and unrounded is None:
        raise ValueError("rate='bits' needs the unrounded coefficients")
    d = distortion(original, decoded, gamma, distortion_kind)
    main = d.pop("main")
    a_l, a_c = attention if attention is not None else (None, None)
    terms = {
        **d,
        "table_rate": table_rate(tables),
        "attention_rate": attention_rate(a_l, a_c),
        "mean_attention_luma": jnp.mean(a_l) if a_l is not None else jnp.float32(1.0),
        "mean_attention_chroma": jnp.mean(a_c) if a_c is not None else jnp.float32(1.0),
    }
    if unrounded is not None:
        pixels = original.shape[-3] * original.shape[-2]
        terms["bpp_estimate"] = jnp.mean(estimated_bits(unrounded)) / pixels
    terms["distortion_term"] = lam * (main + gamma * d["lpips"])
    if rate == "bits":
        terms["rate_term"] = terms["bpp_estimate"]
    else:
        terms["rate_term"] = alpha * terms["table_rate"] + beta * terms["attention_rate"]
    return terms["distortion_term"] + terms["rate_term"], terms
