"""jpegedit.rdoq: the trellis finds each block's exact optimum under its cost model, reduces to plain
rounding at zero rate weight, and buys PSNR at equal bytes; the encoder's rate ladder and
--target-bpp built on it."""

import itertools

import numpy as np
import pytest
from jpeg_helpers import photos

from jpegedit import codec, encoder, jpegfile, libjpeg, rdoq
from jpegedit.scoring import decode


def _psnr(x, data):
    err = np.mean((x.astype(np.float64) - decode(data).reshape(x.shape)) ** 2)
    return 10 * np.log10(255.0**2 / err)


def _cost(f, v, w2, lam, aclen, eob):
    """The trellis' objective for one block (zigzag, AC only), written out directly."""
    d = float(np.sum(w2[1:] * (f[1:] - v[1:]) ** 2))
    bits, run = 0.0, 0
    nz = np.nonzero(v[1:])[0]
    last = nz[-1] + 1 if len(nz) else 0
    for k in range(1, last + 1):
        if v[k] == 0:
            run += 1
            continue
        s = int(abs(v[k])).bit_length()
        bits += (run >> 4) * aclen[0xF0] + aclen[((run & 15) << 4) | s] + s
        run = 0
    if last < 63:
        bits += eob
    return d + lam * bits


def test_the_trellis_finds_the_exact_optimum_of_each_block():
    """Brute force over every combination of the candidate values (each coefficient: zero, the
    attention's rounding or plain rounding, each also one step towards zero) on blocks with six
    coefficients that can be nonzero."""
    rng = np.random.default_rng(0)
    aclen = rng.uniform(2, 16, 256)
    q = rng.uniform(2, 30, 64)
    w2 = 3.0 * q**2
    for trial in range(12):
        f = np.zeros(64)
        pos = np.sort(rng.choice(np.arange(1, 64), 6, replace=False))
        f[pos] = rng.normal(0, 2.5, 6)
        t = f * rng.uniform(0.6, 1.2, 64)
        f[0] = t[0] = 0.0
        lam = float(rng.uniform(1, 400))
        eob = float(rng.uniform(0.5, 6))
        out = np.zeros((1, 64), np.int64)
        rdoq._trellis(f[None], t[None], np.zeros(1, np.int64), q, np.full(64, 3.0), lam, aclen, eob, out)
        options = []
        for k in pos:
            vals = {0}
            for x in (t[k], f[k]):
                r = int(np.sign(x) * np.floor(abs(x) + 0.5))
                vals |= {r, r - int(np.sign(r))}
            options.append(sorted(vals))
        best = min(
            _cost(f, np.bincount(pos, weights=combo, minlength=64), q**2 * 3.0, lam, aclen, eob)
            for combo in itertools.product(*options)
        )
        assert _cost(f, out[0].astype(float), w2, lam, aclen, eob) == pytest.approx(best, rel=1e-9), trial


@pytest.fixture(scope="module")
def photo():
    return photos()["chelsea"]


def test_at_zero_rate_weight_the_trellis_is_plain_rounding_and_keeps_the_attentions_dc(photo):
    tables = codec.quality_to_tables(40)
    a = np.ones(codec.block_grid(*photo.shape[:2], "444")[0] + (8, 8)) * 0.8
    maps = (a, a)
    got = rdoq.quantise(photo, tables, 0.0, maps)
    plain = encoder.encode_for_file(photo, tables, None)
    edited = encoder.encode_for_file(photo, tables, maps)
    for g, p, e in zip(got.components, plain.components, edited.components):
        g, p, e = (np.asarray(z) for z in (g, p, e))
        np.testing.assert_array_equal(g[..., 0, 0], e[..., 0, 0])
        ac = np.ones((8, 8), bool)
        ac[0, 0] = False
        np.testing.assert_array_equal(g[..., ac], p[..., ac])


def test_the_trellis_buys_psnr_at_equal_bytes_and_a_larger_rate_weight_gives_smaller_files(photo):
    tables = codec.quality_to_tables(50)
    sizes = []
    for alpha in (0.0, 0.1, 0.4, 1.6):
        co = rdoq.quantise(photo, tables, rdoq.lam_for_tables(tables, alpha))
        sizes.append(len(jpegfile.write(co, tables, progressive=True)))
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < 0.8 * sizes[0]
    # (alpha 0.05 gained 0.36-0.78 dB on three photos at IJG qualities 20, 50 and 80)
    co = rdoq.quantise(photo, tables, rdoq.lam_for_tables(tables, 0.05))
    ours = jpegfile.write(co, tables, progressive=True)
    # plain rounding under coarser tables, at the largest scale whose file is no larger
    lo, hi = 1.0, 4.0
    for _ in range(14):
        mid = (lo + hi) / 2
        t = encoder.scaled_tables(tables, mid)
        if len(jpegfile.write(libjpeg.encode(photo, t), t, progressive=True)) <= len(ours):
            hi = mid
        else:
            lo = mid
    t = encoder.scaled_tables(tables, hi)
    rounded = jpegfile.write(libjpeg.encode(photo, t), t, progressive=True)
    assert len(rounded) <= len(ours)
    assert _psnr(photo, ours) > _psnr(photo, rounded) + 0.2


def test_weighting_by_step_keeps_the_coefficients_under_fine_steps_and_drops_those_under_coarse_ones(photo):
    tables = codec.quality_to_tables(90)
    lam = rdoq.lam_for_tables(tables, 0.4)
    pre = [rdoq.transform(photo)] * 2
    plain = rdoq.quantise_transformed(*pre, tables, lam, *photo.shape[:2], 2)
    weighted = rdoq.quantise_transformed(*pre, tables, lam, *photo.shape[:2], 2, step_power=2.0)
    q = np.asarray(tables).reshape(2, 8, 8)
    for c, (p, w) in enumerate(zip(plain.components, weighted.components)):
        qc = q[min(c, 1)]
        fine, coarse = qc <= np.percentile(qc[1:], 25), qc >= np.percentile(qc, 75)  # the finest and coarsest steps
        fine[0, 0] = False
        nz = lambda z, m: int(np.count_nonzero(np.asarray(z)[..., m]))  # noqa: E731
        assert nz(w, fine) > 1.5 * nz(p, fine)
        assert nz(w, coarse) < nz(p, coarse) if c == 0 else nz(w, coarse) <= nz(p, coarse)
        np.testing.assert_array_equal(np.asarray(w)[..., 0, 0], np.asarray(p)[..., 0, 0])  # DC as it was


def test_target_bpp_gives_the_best_file_within_the_target_and_more_bytes_never_a_worse_one(photo):
    x = photo[:160, :224]
    models = encoder.choose_models()
    h, w = x.shape[:2]
    # libjpeg 4:4:4 with optimised Huffman tables at every quality: (bytes, PSNR)
    lib = []
    for q in range(1, 101):
        t = codec.quality_to_tables(q)
        data = jpegfile.write(libjpeg.encode(x, t), t, optimize_huffman=True)
        lib.append((len(data), _psnr(x, data)))
    last = -np.inf
    for target in (0.25, 0.5, 1.0, 2.4):
        e = encoder.encode_learned(x, models, target)
        assert 8 * len(e.data) / (h * w) <= target
        p = _psnr(x, e.data)
        assert p >= last
        last = p
        # never worse than libjpeg at the same bytes
        assert p >= max((s for n, s in lib if n <= len(e.data)), default=-np.inf)
    with pytest.raises(encoder.EncodeError, match="the smallest is"):
        encoder.encode_learned(x, models, 0.01)


def test_the_quality_dial_is_monotone_in_bytes_along_the_ladder(photo):
    x = photo[:128, :128]
    models = encoder.choose_models()
    steps = encoder.ladder(models)
    assert (
        len({(m.name, s) for m, s in steps}) == len(steps) and steps[0][1] > 1 and steps[-1][1] < 1
    )  # scaled beyond both ends
    sizes = [len(encoder.encode_learned(x, models, quality=q).data) for q in (1, 25, 50, 75, 100)]
    assert sizes == sorted(sizes) and sizes[-1] > 4 * sizes[0]


def test_tune_ms_ssim_ladder_grows_in_bytes_and_more_bytes_never_give_a_lower_ms_ssim(photo):
    from jpegedit.scoring import score

    x = photo[:176, :224]  # MS-SSIM's five scales need 161 px
    models = encoder.choose_models(tune="ms-ssim")
    assert {m.name.rsplit("_", 1)[1][0] for m in models} == {"l", "q"}  # trained (lam) and fitted (q) tables
    trellis = encoder.TRELLIS_BY_TUNE["ms-ssim"]
    sizes = [
        len(encoder.encode_learned(x, models, quality=q, trellis=trellis, tune="ms-ssim").data)
        for q in (1, 30, 50, 70, 100)
    ]
    assert sizes == sorted(sizes) and sizes[-1] > 4 * sizes[0]
    last = -np.inf
    for target in (0.3, 0.6, 1.2):
        e = encoder.encode_learned(x, models, target, trellis=trellis, tune="ms-ssim")
        assert 8 * len(e.data) / (x.shape[0] * x.shape[1]) <= target
        value = score(x, e.data)["ms_ssim"]
        assert value >= last
        last = value
