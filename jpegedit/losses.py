"""The training objective of Strümpler et al. 2020 (Eq. 8-10).

    L = lambda * (MSE + gamma * LPIPS_alex)                      distortion (Eq. 9)
      + alpha * (||1 / Q_L||_1 + ||1 / Q_C||_1)                   rate proxy of the tables (Eq. 10)
      + beta * (mean A_L + mean A_C)                              rate proxy of the attention

MSE on the 0..255 scale; LPIPS from :func:`compat.metrics.lpips` (AlexNet). Smaller tables and larger
attention keep more of each coefficient - more bits - so the two rate terms push the other way from
the distortion. Every term is returned separately for logging.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from compat import metrics

__all__ = ["table_rate", "attention_rate", "distortion", "objective"]


def table_rate(tables: jax.Array) -> jax.Array:
    """``||1/Q_L||_1 + ||1/Q_C||_1`` of ``(2, 8, 8)`` tables in JPEG units."""
    return jnp.sum(1.0 / tables)


def attention_rate(a_luma: jax.Array | None, a_chroma: jax.Array | None) -> jax.Array:
    """``mean A_L + mean A_C`` (0 without attention)."""
    if a_luma is None:
        return jnp.float32(0.0)
    return jnp.mean(a_luma) + jnp.mean(a_chroma)


def distortion(original: jax.Array, decoded: jax.Array, gamma: float) -> dict[str, jax.Array]:
    """``{"mse", "lpips"}`` over a batch; LPIPS is only computed when ``gamma > 0`` (a static number)."""
    out = {"mse": jnp.mean((original - decoded) ** 2)}
    out["lpips"] = jnp.mean(metrics.lpips(original, decoded, "alex")) if gamma > 0 else jnp.float32(0.0)
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
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(L, terms)``: ``terms`` holds mse, lpips, table_rate, attention_rate, the mean attention per
    map (1 without attention) and the weighted parts."""
    d = distortion(original, decoded, gamma)
    a_l, a_c = attention if attention is not None else (None, None)
    terms = {
        **d,
        "table_rate": table_rate(tables),
        "attention_rate": attention_rate(a_l, a_c),
        "mean_attention_luma": jnp.mean(a_l) if a_l is not None else jnp.float32(1.0),
        "mean_attention_chroma": jnp.mean(a_c) if a_c is not None else jnp.float32(1.0),
    }
    terms["distortion_term"] = lam * (d["mse"] + gamma * d["lpips"])
    terms["rate_term"] = alpha * terms["table_rate"] + beta * terms["attention_rate"]
    return terms["distortion_term"] + terms["rate_term"], terms
