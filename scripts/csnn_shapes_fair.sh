#!/usr/bin/env bash
# Issue #17 protocol: CSNN vs PointNet on rotated ModelNet10 at equal epochs and at equal CPU
# time, with a validation-split search, 3 seeds, 5 test votes, the R x C ablation and the
# options beyond the reference. Resumable across sessions: a step whose summary JSON exists is
# skipped (and an interrupted run resumes from its checkpoint).
#
#   bash scripts/csnn_shapes_fair.sh [STEP ...]     # steps 1-5, default all, in order
#
# Step 1 fixes the budget: M = the mean training CPU minutes of PointNet's 12-epoch z-runs, and
# E_CSNN = the CSNN epochs that fit in M (its cosine schedule length); both are written to
# $O/budget.json and read by steps 2 and 3.
set -euo pipefail
PS=${POINTSYM:-pointsym}
O=${OUT:-results/csnn_shapes}
P="$PS csnn-shapes --threads 1 --quiet --train-per-class 120 --test-rot z,so3 --votes 5"
STEPS=${*:-1 2 3 4 5}
have() { [ -f "$1" ]; }
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

budget() {  # writes $O/budget.json from the step-1 runs
  python3 - "$O" <<'EOF'
import json, math, statistics, sys
from pathlib import Path
o = Path(sys.argv[1]) / "equal_epochs"
def cpu(run):
    vals = [json.loads((o / f"{run}_seed{s}.json").read_text())["budget"]["session_cpu_seconds"] for s in (0, 1, 2)]
    return statistics.mean(vals)
m = cpu("pointnet_z") / 60.0
per_epoch = cpu("csnn_z") / 12
e = max(1, math.floor(60.0 * m / per_epoch))
rec = {"max_minutes": round(m, 2), "csnn_epochs": e, "pointnet_cpu_s_12_epochs": round(60 * m, 1),
       "csnn_cpu_s_per_epoch": round(per_epoch, 1),
       "rule": "M = mean training CPU minutes of PointNet's three 12-epoch z-runs; E_CSNN = floor(M / CSNN CPU minutes per epoch)"}
(o.parent / "budget.json").write_text(json.dumps(rec, indent=1) + "\n")
print(json.dumps(rec))
EOF
}
bget() { python3 -c "import json,sys; print(json.load(open('$O/budget.json'))['$1'])"; }
best() {  # best setting of a search: "--lr X --<dropout flag> Y"
  python3 - "$1" "$2" <<'EOF'
import json, sys
rec = json.load(open(sys.argv[1]))
s = rec["best"]["setting"] if "setting" in rec.get("best", {}) else rec["best"]
flag = sys.argv[2]
print(f"--lr {s['lr']} --{flag.replace('_', '-')} {s[flag]}")
EOF
}

for STEP in $STEPS; do case $STEP in
1)  for M in csnn pointnet; do for T in z so3; do
      have $O/equal_epochs/${M}_${T}_seeds.json && continue
      log "step 1: $M $T"; $P --model $M --train-rot $T --epochs 12 --seeds 0,1,2 --out $O/equal_epochs
    done; done
    budget ;;
2)  MM=$(bget max_minutes); EC=$(bget csnn_epochs)
    have $O/search/csnn_z_search.json || { log "step 2: csnn search"; \
      $P --model csnn --train-rot z --epochs $EC --max-minutes $MM --search lr=1e-3,3e-3 dropout=0.1,0.3 --out $O/search; }
    have $O/search/pointnet_z_search.json || { log "step 2: pointnet search"; \
      $P --model pointnet --train-rot z --epochs 12 --max-minutes $MM --search lr=1e-3,3e-3 pointnet_dropout=0.1,0.3 --out $O/search; } ;;
3)  MM=$(bget max_minutes); EC=$(bget csnn_epochs)
    BC=$(best $O/search/csnn_z_search.json dropout); BP=$(best $O/search/pointnet_z_search.json pointnet_dropout)
    for T in z so3; do
      have $O/equal_time/csnn_${T}_time_seeds.json || { log "step 3: csnn $T ($BC)"; \
        $P --model csnn --train-rot $T --epochs $EC --max-minutes $MM $BC --seeds 0,1,2 --run-name csnn_${T}_time --out $O/equal_time; }
      have $O/equal_time/pointnet_${T}_time_seeds.json || { log "step 3: pointnet $T ($BP)"; \
        $P --model pointnet --train-rot $T --epochs 12 --max-minutes $MM $BP --seeds 0,1,2 --run-name pointnet_${T}_time --out $O/equal_time; }
    done ;;
4)  for R in 1 4 16; do for C in 1 4; do
      have $O/ablation/csnn_z_R${R}_C${C}.json && continue
      log "step 4: R=$R C=$C"; $P --model csnn --train-rot z --epochs 12 --n-shells $R --n-channels $C --run-name csnn_z_R${R}_C${C} --out $O/ablation
    done; done
    have $O/ablation/csnn_z_L3.json || { log "step 4: level 3"; $P --model csnn --train-rot z --epochs 12 --level 3 --run-name csnn_z_L3 --out $O/ablation; }
    have $O/ablation/runtime_vs_shells.json || $PS csnn-shapes --benchmark-shells 1,2,4,8,16 --threads 1 --train-per-class 120 --out $O/ablation ;;
5)  have $O/options/csnn_z_soft_seeds.json || { log "step 5: soft"; $P --model csnn --train-rot z --epochs 12 --radial soft --seeds 0,1,2 --run-name csnn_z_soft --out $O/options; }
    have $O/options/csnn_z_meanmax_seeds.json || { log "step 5: mean+max"; $P --model csnn --train-rot z --epochs 12 --global-pool mean+max --seeds 0,1,2 --run-name csnn_z_meanmax --out $O/options; } ;;
*)  echo "unknown step $STEP (1-5)" >&2; exit 2 ;;
esac; done
log "done: $STEPS"
