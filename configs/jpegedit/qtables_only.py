"""jpegedit, Q-tables only: learn the two quantisation tables, no attention (A = 1).

Launch (one host, every local device; add ``:lam=0.005`` etc. to sweep lambda):

    python launch/train.py --config configs/jpegedit/qtables_only.py:lam=0.01 --workdir runs/qt_lam0.01

Expected: the table-rate term falls as the tables grow from their [1, 2] initialisation while the
MSE rises; the tables settle where lambda * MSE balances alpha * ||1/Q||_1. Exported as integer
tables, the files beat libjpeg's standard tables at equal bytes on Kodak only modestly (the paper's
Q-tables-only row); on the CPU this runs at about 4 steps/s (benchmarks/train_jpegedit.py).
"""

from jpegedit.task import base_config, parse_overrides


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "qtables_only"
    c.model.attention = False
    c.model.finetune_backbone = False
    return parse_overrides(c, arg)
