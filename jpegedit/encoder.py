"""The learned JPEG encoder: from an image and a learned model to the bytes of an ordinary JPEG.

One path, used by ``jpegedit encode``, the evaluation, the figures, the demo and the benchmarks:
VGG16 features of the image (:func:`features`, computed once for every model tried) -> the model's
attention maps (:func:`attention`) -> coefficients ``Z = round(F * A / Q)`` under its integer
tables (:func:`coefficients`) -> a baseline JPEG file (:func:`jpegedit.jpegfile.write`). Rate
control picks among the shipped models and scales their tables (:func:`choose_models`,
:func:`encode_learned`). A training run's parameters encode through :func:`encode_run`.

Errors the caller can act on (no model for that lambda, a target no model reaches) are
:class:`EncodeError`, one line each.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jpegedit import codec, jpegfile
from jpegedit.models import Model, list_models, load_model
from jpegedit.network import AttentionNet, attention_head, coefficient_features, export_tables, pretrained_backbone

__all__ = [
    "EncodeError",
    "Encoded",
    "encode_for_file",
    "features",
    "attention",
    "coefficients",
    "encode_jpeg",
    "encode_run",
    "choose_models",
    "scaled_tables",
    "encode_learned",
]


class EncodeError(ValueError):
    """The encoder cannot do what was asked (the message says why, in one line)."""


class Encoded(NamedTuple):
    model: Model
    data: bytes  # the JPEG file
    coefficients: codec.Coefficients
    scale: float  # the factor the model's tables were scaled by (1: as trained)


def encode_for_file(
    image: np.ndarray, tables: np.ndarray, attention: tuple[jax.Array, jax.Array] | None = None
) -> codec.Coefficients:
    """Quantised coefficients for a real file: exported integer ``tables`` and, if given, the
    attention maps; exact rounding (``Z = round(F * A / Q)``)."""
    return codec.encode(jnp.asarray(image, jnp.float32), tables, rounding="hard", scales=attention)


@functools.cache
def _features_fn():
    backbone = pretrained_backbone("vgg16")
    return jax.jit(lambda x: AttentionNet().apply({"params": {"backbone": backbone}}, x, features_only=True))


def features(image: np.ndarray):
    """The frozen VGG16 backbone's 1/8-resolution features of ``image``: every shipped attention
    model reads the same ones, so a caller trying several models computes them once."""
    return _features_fn()(jnp.asarray(image, jnp.float32))


def attention(model: Model, image: np.ndarray, feats=None):
    """The attention maps ``(A_luma, A_chroma)`` of ``image`` (uint8 RGB) under ``model`` (from
    ``feats = features(image)`` when given)."""
    if model.head is None:
        raise ValueError(f"model {model.name} has no attention head")
    feats = features(image) if feats is None else feats
    as_jax = lambda d: {k: jnp.asarray(v) for k, v in d.items()}  # noqa: E731
    hidden = coeffs = None
    if "hidden" in model.head:  # the coeff head also reads the block's coefficients under the model's tables
        hidden = as_jax(model.head["hidden"])
        coeffs = coefficient_features(
            codec.encode(jnp.asarray(image, jnp.float32), model.tables, rounding="none").components
        )
    head = as_jax({"kernel": model.head["kernel"], "bias": model.head["bias"]})
    return attention_head(head, feats, hidden, coeffs)


def coefficients(model: Model, image: np.ndarray, return_attention: bool = False, feats=None):
    """``(quantised coefficients round(F * A / Q), tables)`` of ``image`` (uint8 RGB) under ``model``:
    what :func:`jpegedit.jpegfile.write` turns into a JPEG file any decoder reads; with
    ``return_attention`` also the attention maps (None for a Q-tables-only model). ``feats``: the
    image's :func:`features`, when already computed."""
    maps = attention(model, image, feats) if model.attention else None
    out = (encode_for_file(image, model.tables, maps), model.tables)
    return out + (maps,) if return_attention else out


def encode_jpeg(model: Model, image: np.ndarray, optimize_huffman: bool = False, progressive: bool = False) -> bytes:
    """A JPEG file of ``image`` under ``model``: baseline, or progressive (see :func:`jpegedit.jpegfile.write`)."""
    co, tables = coefficients(model, image)
    return jpegfile.write(co, tables, optimize_huffman=optimize_huffman, progressive=progressive)


def encode_run(
    image: np.ndarray, params: dict, backbone: str = "vgg16", head: str = "linear", hidden: int = 128
) -> tuple[bytes, np.ndarray]:
    """A training run's JPEG file for ``image`` (its parameters ``params``: tables ``q`` and, with
    attention, the network ``net``) and its exported integer tables."""
    tables = export_tables(params["q"])
    maps = None
    if "net" in params:
        x = jnp.asarray(image, jnp.float32)
        coeffs = coefficient_features(codec.encode(x, tables, rounding="none").components) if head == "coeff" else None
        net = AttentionNet(backbone=backbone, head=head, hidden=hidden)
        maps = jax.jit(net.apply)({"params": params["net"]}, x, coeffs=coeffs)
    co = encode_for_file(image, tables, maps)
    return jpegfile.write(co, tables), tables


# -- rate control ---------------------------------------------------------------------------------


def choose_models(*, model: str | None = None, lam: float | None = None, rate_term: str = "bits") -> list[Model]:
    """The learned model(s) a request names: ``model`` (a shipped name or a path), or among the
    shipped models of ``rate_term`` the attention model trained at ``lam``, or (neither given) every
    Q-tables + attention model - every model of that rate term when none has attention - for
    :func:`encode_learned` to choose from by size."""
    try:
        if model is not None:
            return [load_model(model)]
        models = [m for m in (load_model(n) for n in list_models()) if m.rate == rate_term]
    except (FileNotFoundError, ValueError) as e:
        raise EncodeError(str(e)) from None
    if not models:
        raise EncodeError(f"this install ships no learned jpegedit models trained with rate term {rate_term!r}")
    if lam is not None:
        match = [m for m in models if m.lam is not None and abs(m.lam - lam) <= 1e-9 * max(1.0, abs(lam))]
        match.sort(key=lambda m: not m.attention)  # Q-tables + attention when there is one
        if not match:
            have = sorted({m.lam for m in models if m.lam is not None})
            raise EncodeError(
                f"no shipped model for lambda {lam} (rate term {rate_term}); its lambdas: "
                f"{', '.join(map(str, have)) or 'none'}"
            )
        return match[:1]
    return [m for m in models if m.attention] or models


def scaled_tables(tables: np.ndarray, scale: float) -> np.ndarray:
    """A model's integer tables, each step multiplied by ``scale`` (>= 1: coarser), kept in 1..255."""
    return np.clip(np.round(np.asarray(tables, np.float64) * scale), 1, 255).astype(np.int32)


def encode_learned(
    image: np.ndarray,
    models: Sequence[Model],
    target_bpp: float | None = None,
    optimize: bool = True,
    progressive: bool = True,
) -> Encoded:
    """The only candidate at scale 1, or for ``target_bpp`` the largest file not exceeding the
    target among (a) every model as trained and (b) the model just above the target with its tables
    scaled up (bisection on the scale), which fills the gaps between the trained lambdas.
    :class:`EncodeError` when no file fits. Files are progressive (:mod:`jpegedit.progressive`)
    unless ``progressive=False``: then baseline, with optimised Huffman tables if ``optimize``."""
    h, w = image.shape[:2]
    limit = None if target_bpp is None else int(target_bpp * h * w / 8)
    feats = features(image) if any(m.attention for m in models) else None  # one backbone pass for every model

    def encode(m, maps, scale):
        tables = scaled_tables(m.tables, scale)
        co = encode_for_file(image, tables, maps)
        return jpegfile.write(co, tables, optimize_huffman=optimize, progressive=progressive), co

    tried = []  # (model, maps, bytes, coefficients)
    for m in models:
        maps = attention(m, image, feats) if m.attention else None
        data, co = encode(m, maps, 1.0)
        if limit is None:
            return Encoded(m, data, co, 1.0)
        tried.append((m, maps, data, co))
    fits = [t for t in tried if len(t[2]) <= limit]
    best = max(fits, key=lambda t: len(t[2])) if fits else None
    best = Encoded(best[0], best[2], best[3], 1.0) if best else None
    above = [t for t in tried if len(t[2]) > limit]
    if above:
        m, maps, _, _ = min(above, key=lambda t: len(t[2]))
        lo, hi = 1.0, 255.0 / max(1, int(np.min(m.tables)))  # at hi every step is 255: the smallest file
        data, co = encode(m, maps, hi)
        if len(data) <= limit:
            found = (data, co, hi)
            for _ in range(12):
                mid = (lo * hi) ** 0.5
                data, co = encode(m, maps, mid)
                if len(data) <= limit:
                    hi, found = mid, (data, co, mid)
                else:
                    lo = mid
            if best is None or len(found[0]) > len(best.data):
                best = Encoded(m, *found)
    if best is None:
        smallest = min(tried, key=lambda t: len(t[2]))
        raise EncodeError(
            f"no shipped model reaches {target_bpp} bpp: the smallest file is "
            f"{8 * len(smallest[2]) / (h * w):.3f} bpp ({smallest[0].name})"
        )
    return best
