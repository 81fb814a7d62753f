"""jpegedit, Q-tables + attention (the paper's full method): VGG16 backbone (fine-tuned), a 1x1
attention head, learned tables; loss weights lambda, alpha, beta, gamma from the command line.

Launch, e.g. the paper's lambda sweep point 0.01 with LPIPS weight gamma = 50:

    python launch/train.py --config configs/jpegedit/qtables_attention.py:lam=0.01,gamma=50 \\
        --workdir runs/att_lam0.01_g50

or with ml_collections flags: ``--config.loss.lam=0.01 --config.loss.gamma=50``. Multi-host: docs/distributed.md.

Expected: the loss falls while the mean attention drops where detail can go and the tables grow.
The shipped attention models (``attention_lam*``, and ``attention_bits_lam*`` with ``rate=bits``)
use the CPU schedule of launch/jpegedit_cpu_sweep.sh (frozen backbone, 128x128 crops, started
from the Q-tables model of the same lambda with an identity head; ~6 min each on 2 cores). On Kodak
they beat libjpeg 4:4:4 below 0.4 bpp. Their measured curves and BD-rates are in results/README.md.
The paper's setting (fine-tuned backbone, 20000 steps of batch 8 at 256x256) takes about 18 s a
step on that CPU (benchmarks/README.md): use a GPU.
"""

from jpegedit.settings import base_config, parse_overrides


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "qtables_attention"
    c.model.attention = True
    c.model.finetune_backbone = True
    return parse_overrides(c, arg)
