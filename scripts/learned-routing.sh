#!/usr/bin/env bash
# Regenerates the learned-routing proof (docs/learned-routing.md): trains the classifier
# router on the train splits of ../shared/data and evaluates it with `tiergate eval` on the
# test splits (RouteLLM without the contaminated rows; RouterBench with recorded costs),
# then measures the decision time. Hyperparameters (L2) are chosen by 5-fold
# cross-validation on the train split; the test split is only read by eval.
# Takes about 6 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data
OUT=docs/learned-routing
mkdir -p "$OUT"
tg() { node bin/tiergate.js "$@"; }
plain() { sed 's/\x1b\[[0-9;]*m//g'; }
ROUTELLM=(-d $DATA/routellm_gpt4_vs_mixtral.jsonl --split train
  --tier small=mistralai/Mixtral-8x7B-Instruct-v0.1 --tier large=gpt-4-1106-preview
  --target retention:0.98 --l2 1e-4,3e-4,1e-3 --no-progress)
CLEAN="meta.routellm_contaminated != true"

# One model per route: multiple-choice questions (with a group prior over the MMLU subject,
# a training-only label) and maths word problems; and one joint model for both.
tg train "${ROUTELLM[@]}" --where "source = 'mmlu' and $CLEAN" --group subset -o examples/learned/routellm-mmlu.json | plain > $OUT/train-routellm-mmlu.txt
tg train "${ROUTELLM[@]}" --where "source = 'gsm8k' and $CLEAN" -o examples/learned/routellm-gsm8k.json | plain > $OUT/train-routellm-gsm8k.txt
tg train "${ROUTELLM[@]}" --where "source in ['mmlu','gsm8k'] and $CLEAN" -o examples/learned/routellm.json | plain > $OUT/train-routellm.txt

evaluate() { # route source output-name
  tg eval -c examples/learned/gateway.yaml -d $DATA/routellm_gpt4_vs_mixtral.jsonl --route "$1" --split test \
    --where "source = '$2' and $CLEAN" --sweep 101 --no-progress \
    --markdown $OUT/$3.md --json $OUT/$3.json > /dev/null
}
evaluate mcq mmlu routellm-mmlu
evaluate math gsm8k routellm-gsm8k
evaluate qa mmlu routellm-joint-mmlu
evaluate qa gsm8k routellm-joint-gsm8k

tg train -d $DATA/routerbench_subset_11models.jsonl --split train --config examples/learned/routerbench.yaml --route bench \
  --target retention:0.98 --l2 1e-4,3e-4,1e-3 -o examples/learned/routerbench.json --no-progress | plain > $OUT/train-routerbench.txt
tg eval -c examples/learned/routerbench.yaml -d $DATA/routerbench_subset_11models.jsonl --route bench --split test \
  --sweep 41 --no-progress --markdown $OUT/routerbench.md --json $OUT/routerbench.json > /dev/null

{
  for m in routellm-mmlu routellm-gsm8k routellm; do node --import tsx scripts/bench-classifier.ts examples/learned/$m.json; done
} > $OUT/bench.txt
cat $OUT/bench.txt
