"""jpegedit, Q-tables + attention (the paper's full method): VGG16 backbone (fine-tuned), a 1x1
attention head, learned tables; loss weights lambda, alpha, beta, gamma from the command line.

Launch, e.g. the paper's lambda sweep point 0.01 with LPIPS weight gamma = 50:

    python launch/train.py --config configs/jpegedit/qtables_attention.py:lam=0.01,gamma=50 --workdir runs/att_lam0.01_g50

or with ml_collections flags: ``--config.loss.lam=0.01 --config.loss.gamma=50``. Multi-host: see README.

Expected: the loss falls while the mean attention drops where detail can go and the tables grow.
The shipped attention models use the CPU schedule of launch/jpegedit_cpu_sweep.sh (frozen
backbone, 128x128 crops, start from the Q-tables model of the same lambda with an identity head,
head lr 1e-3, table lr 3e-5, cosine, 600 steps: ~6 min on 2 cores). Measured on Kodak (24 images,
real files, standard Huffman tables): lambda 0.003 -> 0.276 bpp / 23.64 dB, 0.03 -> 0.419 / 26.87,
0.3 -> 0.874 / 30.93; BD-rate (PSNR) against libjpeg 4:4:4 -7.8% below 0.4 bpp (results/README.md).
With ``rate=bits`` (the file's estimated bits as the rate term, starting from ``qtables_bits_lam*``;
the shipped ``attention_bits_lam*``): lambda 0.0006 -> 0.266 bpp / 23.62 dB, 0.002 -> 0.326 / 25.62,
0.004 -> 0.400 / 26.97; BD-rate -11.6% below 0.4 bpp, -15.5% with optimised Huffman tables against
libjpeg with optimised tables.
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
