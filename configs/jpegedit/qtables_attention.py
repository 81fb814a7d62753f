"""jpegedit, Q-tables + attention (the paper's full method): VGG16 backbone (fine-tuned), a 1x1
attention head, learned tables; loss weights lambda, alpha, beta, gamma from the command line.

Launch, e.g. the paper's lambda sweep point 0.01 with LPIPS weight gamma = 50:

    python launch/train.py --config configs/jpegedit/qtables_attention.py:lam=0.01,gamma=50 --workdir runs/att_lam0.01_g50

or with ml_collections flags: ``--config.loss.lam=0.01 --config.loss.gamma=50``. Multi-host: see README.

Expected: the loss falls; the mean attention drops from ~0.47 per map where detail can go and the
tables grow. Measured on the 2-core CPU with a shortened setting (frozen backbone, 128x128 crops,
``optim.lr=1e-5,optim.head_lr=1e-3``, 1200 steps, lambda 0.01, gamma 0): loss 123 -> 23.8; real
files on kodim01-04 at 0.47 bpp gain +0.14 dB PSNR over libjpeg at equal bytes (MS-SSIM -0.008).
The paper's setting (fine-tuned backbone, 20000 steps of batch 8 at 256x256) takes about 18 s a
step on that CPU (benchmarks/train_jpegedit.py): use a GPU.
"""

from jpegedit.task import base_config, parse_overrides


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "qtables_attention"
    c.model.attention = True
    c.model.finetune_backbone = True
    return parse_overrides(c, arg)
