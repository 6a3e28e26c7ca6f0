#!/usr/bin/env bash
# Architecture comparison on one fixed wall-clock budget: build a fresh bank, train the
# configs side by side on one device (each scales its curriculum to the budget), export
# each run's model. Writes, under $DEST: summary.txt and, per config, weights_<config>.safetensors
# and model_<config>.tgz (the model's config and card, its training log, the fit summary).
#
#   N=500000 WORKERS=16 BUDGET=330 DEST=outputs/compare bash scripts/train_compare.sh base p25 p50d6 peaks
#
# PREFIX picks the config family (configs/$PREFIX_<name>.toml); on the 2-core CPU both runs
# share the machine with one thread each:
#
#   PREFIX=cpu BANK=banks/cmp N=40000 WORKERS=2 SEED=20261206 THREADS=1 BUDGET=3000 \
#       DEST=outputs/stem_compare bash scripts/train_compare.sh conv strided
set -euo pipefail
N=${N:-500000}
WORKERS=${WORKERS:-16}
DEADLINE=${DEADLINE:-0}   # if > 0: seconds from the start by which everything is written
BUDGET=${BUDGET:-330}     # training seconds per run (with DEADLINE: what is left after the bank)
RESERVE=${RESERVE:-100}   # with DEADLINE: seconds kept for reading the bank and exporting
DEST=${DEST:-outputs/compare}
BANK=${BANK:-banks/gpu500k}
THREADS=${THREADS:-4}
PREFIX=${PREFIX:-gpu}
SEED=${SEED:-20261204}
configs=("$@")
field() { python -c "from training.config import FitConfig; print(FitConfig.from_toml('configs/${PREFIX}_$1.toml').$2)"; }
out_dir() { field "$1" out_dir; }
for c in "${configs[@]}"; do  # the bank built here must be the one each config trains on
    bank=$(field "$c" bank_dir)
    if [[ "$(realpath -m "$bank")" != "$(realpath -m "$BANK")" ]]; then
        echo "configs/${PREFIX}_$c.toml trains on bank_dir = \"$bank\", not BANK=$BANK" >&2
        exit 2
    fi
done
mkdir -p "$DEST"
summary="$DEST/summary.txt"
{ date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"; nproc; } > "$summary"
start=$(date +%s)
python -m training bank "$BANK" --n "$N" --workers "$WORKERS" --seed "$SEED" 2> "$DEST/bank.err" | tail -1 >> "$summary"
echo "bank: $(( $(date +%s) - start )) s" >> "$summary"
if (( DEADLINE > 0 )); then
    BUDGET=$(( DEADLINE - ($(date +%s) - start) - RESERVE ))
fi
echo "training budget: $BUDGET s per run" >> "$summary"
for c in "${configs[@]}"; do
    out=$(out_dir "$c")
    rm -rf "$out"
    OMP_NUM_THREADS=$THREADS python -m training fit "configs/${PREFIX}_$c.toml" --time-budget "$BUDGET" \
        > "$DEST/fit_$c.json" 2> "$DEST/fit_$c.err" &
done
wait
for c in "${configs[@]}"; do
    out=$(out_dir "$c")
    python -m training export "$out" >> "$summary" 2>&1 || echo "export $c failed" >> "$summary"
    cp "$DEST/fit_$c.json" "$DEST/fit_$c.err" "$out/"
    tail -c 2000 "$DEST/fit_$c.err" | tr '\r' '\n' | tail -3 >> "$summary"
    # the weights travel beside the small files (a tarball of both can pass 16 MiB)
    cp "$out/model/model.safetensors" "$DEST/weights_$c.safetensors"
    tar czf "$DEST/model_$c.tgz" -C "$out" model/config.json model/MODEL_CARD.md train_log.jsonl \
        "fit_$c.json" "fit_$c.err"
    echo "$c: $(cat "$DEST/fit_$c.json" | tr -d '\n ')" >> "$summary"
done
echo "total: $(( $(date +%s) - start )) s" >> "$summary"
rm -f "$DEST"/fit_*.json "$DEST"/fit_*.err "$DEST"/bank.err
