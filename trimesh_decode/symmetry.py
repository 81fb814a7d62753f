"""Symmetries of the square for test-time self-ensembling, on NumPy and JAX arrays alike (this
module imports no JAX, so the onnxruntime decoder averages the same way as the JAX one)."""

from __future__ import annotations

from trimesh_decode import INTERP, check_symmetries

__all__ = ["dihedral", "averaged"]


def dihedral(x, k: int, inverse: bool = False):
    """Symmetry ``k`` (0..7) of the square applied to (B, H, W, C) images: a transpose if bit 4 is
    set, then a horizontal flip (bit 1), then a vertical flip (bit 2); ``inverse=True`` undoes it.
    The first 1, 2, 4 and 8 symmetries are subgroups (:data:`trimesh_decode.SYMMETRIES`): the
    identity; with horizontal flips; with vertical flips too; with transposes too."""
    steps = [(4, lambda a: a.swapaxes(1, 2)), (1, lambda a: a[:, :, ::-1]), (2, lambda a: a[:, ::-1])]
    for bit, f in reversed(steps) if inverse else steps:
        if k & bit:
            x = f(x)
    return x


def averaged(apply, channels, symmetries: int, concatenate):
    """``apply(x, interp)``'s decoding of the rendered channels (B, H, W, 8), clipped to [0, 1] and
    averaged over the first ``symmetries`` symmetries of the square: each transformed input decoded,
    the decodings turned back and averaged, in one batch of ``symmetries * B`` (the 8 need a square
    input). ``concatenate``: ``jnp.concatenate`` or ``np.concatenate``, by the arrays' kind. The
    average over a subgroup is exactly equivariant to it, whatever the network learnt."""
    check_symmetries(symmetries)
    b = channels.shape[0]
    x = concatenate([dihedral(channels, k) for k in range(symmetries)]) if symmetries > 1 else channels
    y = apply(x, x[..., INTERP]).clip(0.0, 1.0)
    if symmetries == 1:
        return y
    return sum(dihedral(y[k * b : (k + 1) * b], k, inverse=True) for k in range(symmetries)) / symmetries
