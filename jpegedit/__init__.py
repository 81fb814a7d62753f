"""jpegedit: learning to improve JPEG compression without changing the standard decoder.

Strümpler et al., 2020. ``codec`` is the differentiable JPEG the models train through, ``libjpeg``
its bit-exact twin (libjpeg-turbo's integer arithmetic), ``jpegfile`` turns coefficients into real
JPEG files and back.
"""
