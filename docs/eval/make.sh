#!/bin/sh
# Regenerates every report in docs/eval from the recorded outcomes in ../shared/data.
# Run from the repository root:  sh docs/eval/make.sh
# Each report starts with the exact command that made it.
#
# - routellm-test: examples/routellm/gateway.yaml (rules + heuristics gate) on RouteLLM's
#   test split with the default, deployable gate: the route's evaluators judge the
#   recorded answer texts; rows without texts (MMLU, MT-Bench) cannot be judged and are
#   left out, counted. The perfect-judge column is the same route gated on the recorded
#   scores: an upper bound, not a result.
# - routellm-test-perfect-judge: the same command with --gate recorded, i.e. the upper
#   bound on every row of the split (what the old default reported as the policy).
# - routerbench-learned: examples/learned/routerbench.yaml (three tiers, the classifier
#   router, no gate) on RouterBench's test split: where the hull of the tiers (random at
#   equal cost) matters, because the middle tier is on it.
# - agreement-routerbench: docs/eval/agreement-routerbench.yaml (Mixtral first, the agreement
#   gate asking Yi-34B, GPT-4 on disagreement) on RouterBench's test split: the replay provider
#   plays the gate's second model from its recorded answers. agreement.md beside it has the
#   gate's precision and recall per source, from test/plugins/agreement-recorded.test.ts.
# - bandit-routellm-gsm8k: the bandit router (docs/eval/bandit-routellm.yaml) on the GSM8K
#   test rows, replayed in order and taught through the gateway's learning path; its
#   regret against the best fixed tier is in the report.
set -e
DATA=${DATA:-../shared/data}
if [ ! -f "$DATA/routellm_gpt4_vs_mixtral.jsonl" ] || [ ! -f "$DATA/routerbench_subset_11models.jsonl" ]; then
  echo "docs/eval/make.sh: the recorded data is not in $DATA (see $DATA/README.md)" >&2
  exit 1
fi
tg() { node bin/tiergate.js "$@" > /dev/null; }

tg eval -c examples/routellm/gateway.yaml -d "$DATA/routellm_gpt4_vs_mixtral.jsonl" --route qa --split test --no-progress \
  --markdown docs/eval/routellm-test.md --chart docs/eval/routellm-test.svg
tg eval -c examples/routellm/gateway.yaml -d "$DATA/routellm_gpt4_vs_mixtral.jsonl" --route qa --split test --gate recorded --no-progress \
  --markdown docs/eval/routellm-test-perfect-judge.md --chart docs/eval/routellm-test-perfect-judge.svg
tg eval -c examples/learned/routerbench.yaml -d "$DATA/routerbench_subset_11models.jsonl" --route bench --split test --sweep 41 --no-progress \
  --markdown docs/eval/routerbench-learned.md --chart docs/eval/routerbench-learned.svg
tg eval -c docs/eval/bandit-routellm.yaml -d "$DATA/routellm_gpt4_vs_mixtral.jsonl" --route qa --split test --where "source = 'gsm8k'" --no-progress \
  --markdown docs/eval/bandit-routellm-gsm8k.md --chart docs/eval/bandit-routellm-gsm8k.svg
tg eval -c docs/eval/agreement-routerbench.yaml -d "$DATA/routerbench_subset_11models.jsonl" --route bench --split test --no-progress \
  --markdown docs/eval/agreement-routerbench.md --chart docs/eval/agreement-routerbench.svg
