"""The preview format: exact round trips, the cost model, and clear errors on every malformed input."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from preview_helpers import random_preview

from trimesh_decode.bitstream import (
    MAGIC,
    Preview,
    PreviewFormatError,
    bit_cost,
    estimate_bits,
    from_bytes,
    rgb_to_ycocg6,
    to_bytes,
    ycocg6_to_rgb,
)


def test_round_trip_is_exact_for_random_previews():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = random_preview(rng)
        data = to_bytes(p)
        assert from_bytes(data) == p
        assert to_bytes(from_bytes(data)) == data


@pytest.mark.parametrize(
    "gw,gh,k,n", [(2, 2, 0, 2), (256, 256, 1024, 32), (2, 256, 252, 5), (64, 64, 4092 - 3000, 2), (3, 3, 5, 32)]
)
def test_round_trip_at_the_limits(gw, gh, k, n):
    p = random_preview(np.random.default_rng(1), gw, gh, k, n)
    assert from_bytes(to_bytes(p)) == p


def test_a_full_grid_codes_its_occupancy_in_no_bits():
    # every non-corner point occupied: the enumerative code is certain of each bit
    rng = np.random.default_rng(2)
    full = random_preview(rng, 16, 16, 252, 2)
    assert len(full.vertices) == 252
    assert from_bytes(to_bytes(full)) == full


def test_size_matches_the_cost_model():
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = random_preview(rng)
        size = 8 * len(to_bytes(p))
        exact = bit_cost(p)
        fast = estimate_bits(
            p.grid_w,
            p.grid_h,
            p.palette.astype(np.int64),
            p.num_colours,
            p.corner_indices.astype(np.int64),
            p.indices.astype(np.int64),
            len(p.indices),
        )
        assert exact - 8 <= size <= exact + 16  # the tail: dropped zero bytes, at most two bytes of flush
        assert abs(fast - exact) <= 0.01 * exact + 2


def test_colour_conversion_follows_the_spec():
    rgb = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [12, 200, 77]])
    ycc = rgb_to_ycocg6(rgb)
    r, g, b = rgb.T
    np.testing.assert_array_equal(ycc[:, 0], (1 + 2 * g + r + b) >> 4)
    np.testing.assert_array_equal(ycc[:, 1], (256 + r - b) >> 3)
    np.testing.assert_array_equal(ycc[:, 2], (512 + 2 * g - r - b) >> 4)
    back = ycocg6_to_rgb(ycc).astype(int)
    assert np.abs(back - rgb).max() <= 12  # 6-bit channels: a few levels of 0..255
    every = np.stack(np.meshgrid(*[np.arange(64)] * 3, indexing="ij"), -1).reshape(-1, 3)
    out = ycocg6_to_rgb(every)
    assert out.dtype == np.uint8 and out.min() >= 0 and out.max() <= 255


def test_create_sorts_the_palette_and_remaps_indices():
    pal = [[40, 10, 50], [3, 3, 3], [40, 10, 50]]  # unsorted, with a duplicate
    p = Preview.create(8, 8, pal, [0, 1, 2, 0], [[3, 0], [1, 1]], [2, 1])
    np.testing.assert_array_equal(p.palette, [[3, 3, 3], [40, 10, 50]])
    np.testing.assert_array_equal(p.corner_indices, [1, 0, 1, 1])
    np.testing.assert_array_equal(p.vertices, [[3, 0], [1, 1]])
    np.testing.assert_array_equal(p.indices, [1, 0])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(grid_w=1), "grid"),
        (dict(grid_h=257), "grid"),
        (dict(palette=[[1, 1, 1]]), "colours"),
        (dict(palette=[[2, 2, 2], [1, 1, 1]]), "sorted"),
        (dict(palette=[[1, 1, 1], [64, 1, 1]]), "6-bit"),
        (dict(corner_indices=[0, 0, 0, 2]), "outside"),
        (dict(vertices=[[0, 0]], indices=[0]), "corners are implicit"),
        (dict(vertices=[[2, 1], [1, 1]], indices=[0, 0]), "raster order"),
        (dict(vertices=[[8, 1]], indices=[0]), "outside the"),
        (dict(vertices=[[1, 1]], indices=[]), "indices"),
    ],
)
def test_bad_previews_are_refused_with_a_reason(kwargs, message):
    base = dict(
        grid_w=8,
        grid_h=8,
        palette=[[1, 1, 1], [2, 2, 2]],
        corner_indices=[0, 1, 0, 1],
        vertices=np.zeros((0, 2)),
        indices=[],
    )
    base.update(kwargs)
    with pytest.raises(PreviewFormatError, match=message):
        Preview(**base)


def test_too_many_vertices_for_the_grid_is_refused():
    with pytest.raises(PreviewFormatError, match="at most"):
        Preview(3, 2, [[1, 1, 1], [2, 2, 2]], [0, 0, 0, 0], [[1, 0], [1, 1], [1, 1]], [0, 0, 0])


@pytest.fixture(scope="module")
def valid():
    return to_bytes(random_preview(np.random.default_rng(7), 64, 64, 170, 8))


def test_empty_foreign_and_oversized_inputs(valid):
    for data, msg in [
        (b"", "empty"),
        (b"\x00" + valid[1:], "not a triangle preview"),
        (bytes([MAGIC]), "truncated"),
        (bytes([MAGIC]) * 5000, "longer than any preview"),
        (b"\x89PNG\r\n\x1a\n", "not a triangle preview"),
    ]:
        with pytest.raises(PreviewFormatError, match=msg):
            from_bytes(data)
    with pytest.raises(TypeError):
        from_bytes("text")


def test_trailing_bytes_are_refused(valid):
    for extra in (b"\x00", b"\x01", valid):
        with pytest.raises(PreviewFormatError):
            from_bytes(valid + extra)


def test_truncations_are_refused_but_for_the_check_bytes_residual():
    """An arithmetic code has no end marker: a prefix can be the exact code of another preview.
    The check byte leaves that at ~1/256 of prefixes; every other prefix is refused."""
    rng = np.random.default_rng(8)
    accepted = total = 0
    for _ in range(10):
        data = to_bytes(random_preview(rng, 64, 64, 170, 8))
        for n in range(len(data)):
            total += 1
            try:
                p = from_bytes(data[:n])
            except PreviewFormatError:
                continue
            accepted += 1
            assert to_bytes(p) == data[:n] and p != from_bytes(data)
    assert accepted / total < 0.01, (accepted, total)


def test_single_bit_flips_are_refused(valid):
    for i in range(len(valid)):
        for bit in range(8):
            bad = bytearray(valid)
            bad[i] ^= 1 << bit
            with pytest.raises(PreviewFormatError):
                from_bytes(bytes(bad))


def _parse_or_error(data: bytes) -> None:
    try:
        p = from_bytes(data)
    except PreviewFormatError as e:
        assert str(e)
        return
    assert to_bytes(p) == data  # anything accepted is exactly what the encoder writes


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_random_bytes_after_the_format_byte(body):
    _parse_or_error(bytes([MAGIC]) + body)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32 - 1),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(-3, 3),
)
def test_fuzz_mutated_previews(seed, edits, resize):
    """10^4 inputs in all (with the test above): mutations of real previews reach deep into the layout."""
    data = bytearray(to_bytes(random_preview(np.random.default_rng(seed))))
    for pos, val in edits:
        data[pos % len(data)] = val
    if resize > 0:
        data += bytes(resize)
    elif resize < 0:
        data = data[:resize]
    _parse_or_error(bytes(data))
