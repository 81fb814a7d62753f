"""trimesh_decode: neural decompression of ~200-byte triangle previews.

Baluja et al., 2019. ``bitstream`` (with ``coder``) is the preview format, ``triangulate`` its
deterministic Delaunay mesh, ``raster`` the batched barycentric renderer and the decoder network's
8 input channels, ``encoder`` the stochastic hill-climbing encoder that writes previews.
"""

# The neural decoder's input and output side, as the paper's (the training crops' too).
SIZE = 256

# Where the interpolated RGB image lies among the neural decoder's 8 input channels (edge, vertex,
# interpolated RGB, coloured vertices: trimesh_decode.raster.decoder_channels).
INTERP = slice(2, 5)

# How many symmetries of the square a neural decoding may be averaged over (test-time
# self-ensembling): each count is a subgroup of the 8, see :func:`trimesh_decode.symmetry.dihedral`.
SYMMETRIES = (1, 2, 4, 8)


def check_symmetries(symmetries: int) -> int:
    if symmetries not in SYMMETRIES:
        raise ValueError(f"symmetries must be one of {', '.join(map(str, SYMMETRIES))}, got {symmetries}")
    return symmetries
