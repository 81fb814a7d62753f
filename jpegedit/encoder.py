"""The learned JPEG encoder: from an image and a learned model to the bytes of an ordinary JPEG.

One path, used by ``jpegedit encode``, the evaluation, the figures, the demo and the benchmarks:
backbone features of the image (:func:`features`, the model's backbone - EfficientNet-Lite0 or VGG16 -
computed once for every model tried) -> the model's
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

from jpegedit import codec, jpegfile, libjpeg, rdoq, scoring
from jpegedit.models import SHIPPED_BACKBONES, Model, list_models, load_model
from jpegedit.network import AttentionNet, attention_head, coefficient_features, export_tables, pretrained_backbone
from jpegedit.scoring import decode

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
    "ladder",
    "Quantiser",
    "Trellis",
    "TRELLIS_ALPHA",
    "tuned_value",
]


# The backbone whose attention models the encoder uses unless told (--backbone). Lite0's family
# encodes a Kodak image 3.7x faster than VGG16's at the same rate-distortion (PSNR BD-rate against
# mozjpeg 4:4:4, the ladder: -6.4 / -5.8 / -23.3% below 0.4 / 0.4-1 / 1-2 bpp against VGG16's -7.4 /
# -4.1 / -22.4%): results/README.md, "A fast backbone".
DEFAULT_BACKBONE = "lite0"


class EncodeError(ValueError):
    """The encoder cannot do what was asked (the message says why, in one line)."""


class Encoded(NamedTuple):
    model: Model | None  # None: libjpeg's quantisation won (see ``fallback``)
    data: bytes  # the JPEG file
    coefficients: codec.Coefficients
    scale: float  # the factor the model's tables were scaled by (1: as trained)
    fallback: str | None = None  # what was used instead of a learned model, e.g. "libjpeg quality 43"


def encode_for_file(
    image: np.ndarray, tables: np.ndarray, attention: tuple[jax.Array, jax.Array] | None = None
) -> codec.Coefficients:
    """Quantised coefficients for a real file: exported integer ``tables`` and, if given, the
    attention maps; exact rounding (``Z = round(F * A / Q)``)."""
    return codec.encode(jnp.asarray(image, jnp.float32), tables, rounding="hard", scales=attention)


@functools.cache
def _features_fn(backbone: str):
    params = pretrained_backbone(backbone)
    net = AttentionNet(backbone=backbone)
    return jax.jit(lambda x: net.apply({"params": {"backbone": params}}, x, features_only=True))


def features(image: np.ndarray, backbone: str = "vgg16"):
    """The frozen ``backbone``'s 1/8-resolution features of ``image`` (:mod:`jpegedit.network`): every
    shipped attention model of that backbone reads the same ones, so a caller trying several models
    computes them once."""
    return _features_fn(backbone)(jnp.asarray(image, jnp.float32))


def attention(model: Model, image: np.ndarray, feats=None):
    """The attention maps ``(A_luma, A_chroma)`` of ``image`` (uint8 RGB) under ``model`` (from
    ``feats = features(image, model.backbone)`` when given)."""
    if model.head is None:
        raise ValueError(f"model {model.name} has no attention head")
    feats = features(image, model.backbone) if feats is None else feats
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


TUNES = {"psnr": "mse", "ms-ssim": "ms_ssim", "lpips": "lpips"}  # --tune -> the distortion its models were trained on


def tune_of(model: Model) -> str:
    """The ``--tune`` a model serves (:data:`TUNES`): the metric its distortion term was."""
    return next(t for t, d in TUNES.items() if d == model.distortion)


def choose_models(
    *,
    model: str | None = None,
    lam: float | None = None,
    rate_term: str = "bits",
    tune: str = "psnr",
    backbone: str | None = None,
) -> list[Model]:
    """The learned model(s) a request names: ``model`` (a shipped name or a path), or among the
    shipped models of ``rate_term`` trained for ``tune`` (:data:`TUNES`) - their attention models
    those on ``backbone`` (default :data:`DEFAULT_BACKBONE` where that rate term has a family on it,
    else VGG16) - the attention model trained at
    ``lam``, or (neither given) every Q-tables + attention model - every model of that rate term and
    tune when none has attention - for :func:`encode_learned` to choose from by size."""
    if tune not in TUNES:
        raise EncodeError(f"--tune must be one of {', '.join(TUNES)}, got {tune!r}")
    if backbone is not None and backbone not in SHIPPED_BACKBONES:
        raise EncodeError(f"--backbone must be one of {', '.join(SHIPPED_BACKBONES)}, got {backbone!r}")
    try:
        if model is not None:
            return [load_model(model)]
        models = [m for m in (load_model(n) for n in list_models()) if m.rate == rate_term]
    except (FileNotFoundError, ValueError) as e:
        raise EncodeError(str(e)) from None
    if backbone is None:  # the default backbone's family where there is one (not for the paper's rate proxies)
        backbone = DEFAULT_BACKBONE if any(m.attention and m.backbone == DEFAULT_BACKBONE for m in models) else "vgg16"
    models = [m for m in models if not m.attention or m.backbone == backbone]
    models = [m for m in models if m.distortion == TUNES[tune]]
    if not models:
        raise EncodeError(
            f"this install ships no learned jpegedit models trained with rate term {rate_term!r} for --tune {tune}"
        )
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


# The trellis' rate weight (rdoq.lam_for_tables' alpha): on training photos (8 McMaster, 6 Wikipedia
# crops; never Kodak) against mozjpeg 4:4:4, PSNR BD-rate below 0.4 bpp went -3.4% (rounding,
# progressive) -> -5.4 / -6.3 / -5.9% at alpha 0.1 / 0.2 / 0.3 on McMaster and +3.0 -> -3.0 / -3.6%
# at 0.1 / 0.15 on Wikipedia; one trellis pass did as well as two.
TRELLIS_ALPHA = 0.2
TRELLIS_PASSES = 1


class Trellis(NamedTuple):
    """The trellis a tune runs: rate weight ``alpha`` (:func:`jpegedit.rdoq.lam_for_tables`) and the
    squared-error weighting by step size ``step_power`` (:func:`jpegedit.rdoq.quantise_transformed`)."""

    alpha: float = TRELLIS_ALPHA
    step_power: float = 0.0


# --tune ms-ssim weighs each coefficient's error by (mean step / step)^2: on 9 training photos
# (3 CBSD68, 3 McMaster, 3 Wikipedia crops; never Kodak) its family's MS-SSIM BD-rate against
# mozjpeg 4:4:4 below 0.4 / 0.4-1 / 1-2 bpp went +4.5 / +23.7 / +13.6% (rounding) -> -0.4 / +14.8 /
# +6.7% (step power 2, alpha 0.2; power 1 at alpha 0.1: +0.7 / +13.6 / +8.4%). The plain trellis
# (power 0) cost MS-SSIM instead: +50.5% at 0.4-1 bpp against rounding's +24.0%. It removes the
# coefficients MS-SSIM's coarse scales see; weighted by step it spends its zeros where the tables
# are coarse already.
# --tune lpips writes its tables' rounding: on the same photos any trellis cost LPIPS (its family's
# LPIPS BD-rate against mozjpeg: rounding -4.4 / -4.2 / -15.6%, the trellis of --tune psnr +19.2 /
# +43.9% / n/a, of --tune ms-ssim +3.0 / +4.4 / +0.2%).
# Its rate weight, 0.3, is what launch/fit_msssim_tables.py's search chose with the fitted tables
# (qtables_msssim_q*: MS-SSIM BD-rate against mozjpeg on those 9 photos, 0.2-0.4 / 0.4-1 bpp: -6.1 /
# -5.8% at 0.3, -4.2 / -4.9% at 0.2).
TRELLIS_BY_TUNE = {"psnr": Trellis(), "ms-ssim": Trellis(0.3, 2.0), "lpips": None}

# The rate ladder of a family (coarse -> fine): the coarsest model's tables scaled up (rates below
# it), each model as trained with its tables scaled up twice (between it and the next coarser one),
# the finest model's tables scaled down (rates above it, past 2 bpp). --target-bpp picks the best
# file of this fixed set under the target, --quality steps along it.
LADDER_COARSE = (4.0, 3.0, 2.4, 2.0, 1.68, 1.41, 1.19)
LADDER_BETWEEN = (1.41, 1.19)
LADDER_FINE = (0.84, 0.71, 0.59, 0.5, 0.42, 0.35, 0.3, 0.25)
# --target-bpp stops climbing after this many steps in a row whose files exceed the target by 25%
# (on Kodak no later step's file is more than 9.2% smaller than an earlier one's)
LADDER_STOP = 3


def ladder(models: Sequence[Model]) -> list[tuple[Model, float]]:
    """The (model, table scale) steps of :data:`LADDER_COARSE` etc. for ``models``, coarse to fine
    (models ordered by their mean quantisation step, largest first)."""
    ms = sorted(models, key=lambda m: -float(np.mean(m.tables)))
    steps = [(ms[0], s) for s in LADDER_COARSE] + [(ms[0], 1.0)]
    for m in ms[1:]:
        steps += [(m, s) for s in LADDER_BETWEEN] + [(m, 1.0)]
    return steps + [(ms[-1], s) for s in LADDER_FINE]


def _psnr(image: np.ndarray, data: bytes) -> float:
    err = np.mean((image.astype(np.float64) - decode(data).reshape(image.shape)) ** 2)  # as viewers show it
    return float(10 * np.log10(255.0**2 / err)) if err > 0 else float("inf")


def tuned_value(tune: str, scores: dict) -> float:
    """The value ``--tune`` maximises, from a :func:`jpegedit.scoring.score` dict (or a results point):
    its metric, negated for LPIPS (lower is better)."""
    key = tune.replace("-", "_")
    return -scores[key] if key == "lpips" else scores[key]


def _ms_ssim(image: np.ndarray, data: bytes) -> float:
    return tuned_value("ms-ssim", scoring.score(image, data))


def _lpips(image: np.ndarray, data: bytes) -> float:
    return tuned_value("lpips", scoring.score(image, data, lpips=True, ms_ssim=False))


SCORES = {"psnr": _psnr, "ms-ssim": _ms_ssim, "lpips": _lpips}  # --tune -> the score --target-bpp maximises
MIN_SIDE = {"ms-ssim": scoring.MS_SSIM_MIN_SIDE, "lpips": scoring.LPIPS_MIN_SIDE}  # of an image that score measures


class Quantiser:
    """The coefficients of one image under any (model, table scale) of a family: the backbone
    features, each model's attention maps and the image's transforms computed once."""

    def __init__(self, image: np.ndarray, models: Sequence[Model], trellis: Trellis | None = Trellis()):
        self.image, self.trellis = image, trellis
        self.feats = {b: features(image, b) for b in sorted({m.backbone for m in models if m.attention})}
        self.plain = rdoq.transform(image) if trellis is not None else None
        self.maps, self.edited = {}, {}

    def __call__(self, m: Model, scale: float = 1.0) -> tuple[codec.Coefficients, np.ndarray]:
        """``(coefficients, integer tables)`` of the model with its tables scaled by ``scale``."""
        x = self.image
        if m.name not in self.maps:
            self.maps[m.name] = attention(m, x, self.feats.get(m.backbone)) if m.attention else None
            if self.trellis is not None:
                self.edited[m.name] = rdoq.transform(x, self.maps[m.name]) if m.attention else self.plain
        tables = scaled_tables(m.tables, scale)
        if self.trellis is None:
            return encode_for_file(x, tables, self.maps[m.name]), tables
        lam, power = rdoq.lam_for_tables(tables, self.trellis.alpha), self.trellis.step_power
        co = rdoq.quantise_transformed(
            self.plain, self.edited[m.name], tables, lam, *x.shape[:2], TRELLIS_PASSES, step_power=power
        )
        return co, tables


def encode_learned(
    image: np.ndarray,
    models: Sequence[Model],
    target_bpp: float | None = None,
    optimize: bool = True,
    progressive: bool = True,
    trellis: Trellis | None = Trellis(),
    quality: int | None = None,
    tune: str = "psnr",
) -> Encoded:
    """A learned JPEG file of ``image`` (uint8 RGB):

    * neither ``target_bpp`` nor ``quality``: the first model as trained;
    * ``quality`` 1..100: that point of the family's :func:`ladder` (1: coarsest, 100: finest);
    * ``target_bpp``: of every ladder step whose file fits the target (and three sub-steps between
      the last step that fits and the first that does not), the one with the highest PSNR
      (``tune="ms-ssim"``: MS-SSIM), measured on the decoded file; and if libjpeg's own quantisation
      at the largest IJG quality that fits scores higher, that file instead (the learned path is
      never worse than libjpeg 4:4:4 at the same bytes). The ladder does not depend on the
      target, so a larger target does not give a lower PSNR (the sub-steps make this hold in
      practice rather than by construction; the tests check it). :class:`EncodeError` when
      nothing fits.

    Coefficients: the trellis (:mod:`jpegedit.rdoq`, set by ``trellis``: :class:`Trellis`) over the attention's
    proposals, or with ``trellis=None`` the paper's ``round(F * A / Q)``. Files are progressive
    (:mod:`jpegedit.progressive`) unless ``progressive=False``: then baseline, with optimised
    Huffman tables if ``optimize``."""
    h, w = image.shape[:2]
    if tune not in SCORES:
        raise EncodeError(f"--tune must be one of {', '.join(SCORES)}, got {tune!r}")
    if target_bpp is not None and min(h, w) < MIN_SIDE.get(tune, 0):
        raise EncodeError(
            f"--tune {tune} --target-bpp scores files by {tune.upper()}, which needs an image of at least "
            f"{MIN_SIDE[tune]} pixels on its short side, got {w}x{h}"
        )
    limit = None if target_bpp is None else int(target_bpp * h * w / 8)
    coefficients_of = Quantiser(image, models, trellis)
    score = SCORES[tune]

    def write(co, tables, quick=False):
        return jpegfile.write(co, tables, optimize_huffman=optimize, progressive=progressive, quick=quick)

    if limit is None:
        if quality is None:
            m, scale = models[0], 1.0
        else:
            steps = ladder(models)
            m, scale = steps[round((quality - 1) / 99 * (len(steps) - 1))]
        co, tables = coefficients_of(m, scale)
        return Encoded(m, write(co, tables), co, scale)

    best = None  # (score, model, scale, coefficients, tables)
    smallest, over, boundary = None, 0, None
    steps = ladder(models)

    def consider(m, scale):
        nonlocal best, smallest
        co, tables = coefficients_of(m, scale)
        data = write(co, tables, quick=True)  # the searched scans only make it smaller
        smallest = min(smallest or len(data), len(data))
        if len(data) <= limit:
            value = score(image, data)
            if best is None or value > best[0]:
                best = (value, m, scale, co, tables)
        return len(data)

    for i, (m, scale) in enumerate(steps):
        if over == LADDER_STOP:  # the ladder's files grow along it: the finer steps are larger still
            break
        size = consider(m, scale)
        if size > limit and boundary is None:
            boundary = i  # the first step that does not fit
        over = over + 1 if size > 1.25 * limit else 0
    if boundary is not None and boundary > 0:
        # three sub-steps of the first step that does not fit, between it and the step below (when
        # that is another model: coarser scales of this one), fill the ladder's ~20% rate gap there
        (m0, s0), (m1, s1) = steps[boundary - 1], steps[boundary]
        top = s0 if m0.name == m1.name else s1 * LADDER_BETWEEN[-1]
        for k in (3, 2, 1):
            consider(m1, s1 * (top / s1) ** (k / 4))
    # libjpeg's quantisation at the largest IJG quality whose file fits (bisection)
    lo, hi, fit = 1, 100, None
    while lo <= hi:
        q = (lo + hi) // 2
        tables = codec.quality_to_tables(q)
        co = libjpeg.encode(image, tables, chroma="444")
        data = write(co, tables, quick=True)
        if len(data) <= limit:
            fit, lo = (q, co, tables, data), q + 1
        else:
            hi = q - 1
    if fit is not None and (best is None or score(image, fit[3]) > best[0]):
        q, co, tables, _ = fit
        return Encoded(None, write(co, tables), co, 1.0, f"libjpeg quality {q}")
    if best is None:
        raise EncodeError(
            f"no learned or libjpeg file reaches {target_bpp} bpp: the smallest is {8 * smallest / (h * w):.3f} bpp"
        )
    _, m, scale, co, tables = best
    return Encoded(m, write(co, tables), co, scale)
