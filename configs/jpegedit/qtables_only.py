"""jpegedit, Q-tables only: learn the two quantisation tables, no attention (A = 1).

Launch (one host, every local device; add ``:lam=0.005`` etc. to sweep lambda):

    python launch/train.py --config configs/jpegedit/qtables_only.py:lam=0.01 --workdir runs/qt_lam0.01

Expected: the table-rate term falls as the tables grow from their [1, 2] initialisation while the
MSE rises; the tables settle where lambda * MSE balances alpha * ||1/Q||_1 (not yet after 1500
steps at the paper's lr 1e-6: about 0.015 table units a step). The shipped models use the CPU
schedule of launch/jpegedit_cpu_sweep.sh: ``steps=3000,optim.lr=0.0003,optim.cosine=true`` (~2.5 min
on 2 cores). Measured on Kodak (24 images, real files, standard Huffman tables): lambda 0.001 ->
0.274 bpp / 23.18 dB, 0.01 -> 0.330 / 25.14, 0.1 -> 0.613 / 29.04, 1 -> 1.258 / 33.20; BD-rate
(PSNR) against libjpeg 4:4:4 -5.4% below 0.4 bpp, +2.9% over the whole range (results/kodak/).

With the file's estimated bits as the rate term (``:lam=0.001,rate=bits``; lambda then weighs MSE
against bpp, 0.0003 .. 0.03), same schedule: lambda 0.0003 -> 0.276 bpp / 23.78 dB, 0.001 -> 0.339 /
25.57, 0.01 -> 0.821 / 30.56; BD-rate -7.4% below 0.4 bpp (the shipped ``qtables_bits_lam*``).
"""

from jpegedit.settings import base_config, parse_overrides


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "qtables_only"
    c.model.attention = False
    c.model.finetune_backbone = False
    return parse_overrides(c, arg)
