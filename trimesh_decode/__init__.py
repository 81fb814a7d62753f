"""trimesh_decode: neural decompression of ~200-byte triangle previews.

Baluja et al., 2019. ``bitstream`` (with ``coder``) is the preview format, ``triangulate`` its
deterministic Delaunay mesh, ``raster`` the batched barycentric renderer and the decoder network's
8 input channels, ``encoder`` the stochastic hill-climbing encoder that writes previews.
"""
