"""jpegedit, Q-tables + attention (the paper's full method): VGG16 backbone (fine-tuned), a 1x1
attention head, learned tables; loss weights lambda, alpha, beta, gamma from the command line.

Launch, e.g. the paper's lambda sweep point 0.01 with LPIPS weight gamma = 50:

    python launch/train.py --config configs/jpegedit/qtables_attention.py:lam=0.01,gamma=50 --workdir runs/att_lam0.01_g50

or with ml_collections flags: ``--config.loss.lam=0.01 --config.loss.gamma=50``. Multi-host: see README.

Expected: the loss falls; the mean attention drops below its initial ~0.5 where detail can go; at
equal bytes the exported JPEGs beat libjpeg's standard tables on Kodak (the paper reports about
-10% BD-rate in MS-SSIM with attention). 20000 steps of batch 8 take hours on a CPU: use a GPU.
"""

from jpegedit.task import base_config, parse_overrides


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "qtables_attention"
    c.model.attention = True
    c.model.finetune_backbone = True
    return parse_overrides(c, arg)
