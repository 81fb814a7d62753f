#!/usr/bin/env bash
# The paper's studies on the CPU schedule of launch/jpegedit_cpu_sweep.sh (run that first: these
# start from its shipped models). Study models go to results/jpegedit/models/, not into the package.
#
#   bash launch/jpegedit_studies.sh gamma      # Fig. 7/8: LPIPS weight gamma in {50, 500, 5000} at lambda 0.03 (0: the shipped model)
#   bash launch/jpegedit_studies.sh refine     # Fig. 9: a shipped model refined on kodim13-24 (600 steps; the paper: 10000), tested on kodim01-12
#   bash launch/jpegedit_studies.sh single     # Fig. 9: 6 lambdas x 24 Kodak images, vmapped in one jit
#   bash launch/jpegedit_studies.sh evaluate   # the RD curves, BD-rates and figures of results/kodak*
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
RUNS=${RUNS:-runs}
KODAK=${KODAK:-../shared/data/kodak}
STUDY=results/jpegedit/models
STAGE2="steps=600,model.identity_head=true,data.crop=128,model.finetune_backbone=false,optim.lr=0.001,optim.head_lr=0.001,optim.table_lr=0.00003,optim.cosine=true,log_every=50,checkpoint_every=200"
REFINE_LAMS=${REFINE_LAMS:-0.3}
REFINE_STEPS=${REFINE_STEPS:-600}
SINGLE_STEPS=${SINGLE_STEPS:-50}

export_to() {  # RUN NAME CONFIG
  $PY -m jpegedit.models export "$1" "$2" --dir "$STUDY" \
    --command "python launch/train.py --config '$3' --workdir $1  # launch/jpegedit_studies.sh"
}

case "${1:-}" in
  gamma)
    for g in 50 500 5000; do
      cfg="configs/jpegedit/qtables_attention.py:lam=0.03,gamma=$g,model.init=qtables_lam0.03,$STAGE2"
      $PY launch/train.py --config "$cfg" --workdir "$RUNS/ja_g${g}_lam0.03"
      export_to "$RUNS/ja_g${g}_lam0.03" "attention_g${g}_lam0.03" "$cfg"
    done ;;
  refine)
    for lam in $REFINE_LAMS; do
      cfg="configs/jpegedit/refine_kodak.py:model.init=attention_lam$lam,lam=$lam,steps=$REFINE_STEPS,optim.table_lr=0.00003,optim.head_lr=0.0001,log_every=50,checkpoint_every=250"
      $PY launch/train.py --config "$cfg" --workdir "$RUNS/refine_lam$lam"
      export_to "$RUNS/refine_lam$lam" "refined_lam$lam" "$cfg"
    done ;;
  single)
    # 144 models (6 lambdas x 24 images, each from the shipped model of its lambda), one jit; the
    # tables at 1e-4 and the head at 1e-3 so that 50 CPU steps move them (the paper: 1e-5 / GPU)
    $PY -m jpegedit.single_image --data "$KODAK" -o results/kodak/single_image --force --steps "$SINGLE_STEPS" \
      --lr 0.0001 --head-lr 0.001 ;;
  evaluate)
    shipped=$($PY -c "from jpegedit.models import list_models; print(','.join(list_models()))")
    # the 4:2:0 references (libjpeg, jpegli) without LPIPS to save the CPU, then everything else
    jpegedit evaluate --data "$KODAK" -o results/kodak --force --codecs libjpeg-420,jpegli-420 --models none --no-lpips
    jpegedit evaluate --data "$KODAK" -o results/kodak --codecs libjpeg-444,libjpeg-444-opt,mozjpeg-444 --models "$shipped"
    # the studies' libjpeg curve: the one measured above (on their subset of the images)
    for d in results/kodak_gamma results/kodak_refine; do mkdir -p $d; [ -f $d/libjpeg-444.json ] || cp results/kodak/libjpeg-444.json $d/; done
    gammas=$(ls $STUDY/attention_g*_lam0.03.npz | tr '\n' ',')
    jpegedit evaluate --data "$KODAK" -o results/kodak_gamma --codecs libjpeg-444 --models "attention_lam0.03,${gammas%,}"
    # the first 12 images in name order: kodim01-12, never trained on by the refinement
    refined=$(for lam in $REFINE_LAMS; do printf "attention_lam%s,%s/refined_lam%s.npz," "$lam" "$STUDY" "$lam"; done)
    jpegedit evaluate --data "$KODAK" --limit 12 -o results/kodak_refine --codecs libjpeg-444 --models "${refined%,}"
    $PY -m jpegedit.figures --image "$KODAK/kodim23.png" -o results/kodak/figures --force ;;
  *)
    echo "usage: $0 gamma|refine|single|evaluate" >&2; exit 2 ;;
esac
