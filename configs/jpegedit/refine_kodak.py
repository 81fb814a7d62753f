"""The paper's Kodak refinement (Sec. 4.4, Fig. 9): start from a trained model and train 10000 more
steps on kodim13-24, then test on kodim01-12 (never seen).

    python launch/train.py --config configs/jpegedit/refine_kodak.py:model.init=attention_lam0.01 --workdir runs/refine
    python -m jpegedit.models export runs/refine refined_lam0.01 --command "..."
    jpegedit evaluate --data DIR_WITH_kodim01-12 -o results/kodak_refine --models attention_lam0.01,refined_lam0.01

Expected (paper): refinement helps above ~0.4 bpp. The starting model's lambda, frozen backbone and
crop size are kept (override them with the same ``key=value`` arguments as the model was trained with).
"""

from pathlib import Path

from jpegedit.settings import base_config, parse_overrides

KODAK = str(Path(__file__).resolve().parents[2].parent / "shared" / "data" / "kodak")


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "refine_kodak"
    c.steps = 10000
    c.data.roots = [KODAK]
    c.data.include = [f"kodim{i:02d}.png" for i in range(13, 25)]
    c.data.crop = 128
    c.model.init = "attention_lam0.01"
    c.model.finetune_backbone = False
    c.optim.lr = 1e-5
    c.optim.head_lr = 1e-4
    return parse_overrides(c, arg)
