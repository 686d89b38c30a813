#!/usr/bin/env bash
# Regenerates the learned-routing proof (docs/learned-routing.md): trains the classifier
# router on the train splits of ../shared/data and evaluates it with `tiergate eval` on the
# test splits (RouteLLM without the contaminated rows; RouterBench with recorded costs),
# then measures the decision time. Takes a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data
OUT=docs/learned-routing
mkdir -p "$OUT"
tg() { node bin/tiergate.js "$@"; }

tg train -d $DATA/routellm_gpt4_vs_mixtral.jsonl --split train \
  --where "source in ['mmlu','gsm8k'] and meta.routellm_contaminated != true" \
  --tier small=mistralai/Mixtral-8x7B-Instruct-v0.1 --tier large=gpt-4-1106-preview \
  --target retention:0.98 -o examples/learned/routellm.json --no-progress | sed 's/\x1b\[[0-9;]*m//g' > $OUT/train-routellm.txt
for source in mmlu gsm8k; do
  tg eval -c examples/learned/gateway.yaml -d $DATA/routellm_gpt4_vs_mixtral.jsonl --route qa --split test \
    --where "source = '$source' and meta.routellm_contaminated != true" --sweep 101 --no-progress \
    --markdown $OUT/routellm-$source.md --json $OUT/routellm-$source.json > /dev/null
done

tg train -d $DATA/routerbench_subset_11models.jsonl --split train --config examples/learned/routerbench.yaml --route bench \
  --target retention:0.98 -o examples/learned/routerbench.json --no-progress | sed 's/\x1b\[[0-9;]*m//g' > $OUT/train-routerbench.txt
tg eval -c examples/learned/routerbench.yaml -d $DATA/routerbench_subset_11models.jsonl --route bench --split test \
  --sweep 41 --no-progress --markdown $OUT/routerbench.md --json $OUT/routerbench.json > /dev/null

node --import tsx scripts/bench-classifier.ts examples/learned/routellm.json > $OUT/bench.txt
cat $OUT/bench.txt
