#!/bin/sh
# Regenerates every report in docs/eval, and the models the deployable examples load, from
# the recorded outcomes in ../shared/data. Run from the repository root:  sh docs/eval/make.sh
# Each report starts with the exact command that made it; frontier.md puts them side by side.
#
# Models (train split only; the test split is read by eval alone):
# - examples/routellm/gate.json: the learned gate, `tiergate train --gate` on the recorded
#   answers of Mixtral and GPT-4 (GSM8K: the only RouteLLM rows with answer texts).
# - examples/routellm/router.json: the classifier router on MMLU and GSM8K prompts, the
#   command of scripts/learned-routing.sh for examples/learned/routellm.json.
#
# Reports:
# - routellm-gsm8k: examples/routellm/gateway.yaml (classifier prior + learned gate, cascade)
#   on the GSM8K test rows: the deployable configuration of issue 16's RouteLLM bar.
# - routellm-gsm8k-gate-only: examples/routellm/gate-only.yaml, the learned gate alone.
# - routellm-gsm8k-classifier: examples/learned/gateway.yaml route math, the classifier alone.
# - routerbench: examples/routerbench/gateway.yaml (Yi-34B checked by Llama-2-70B, code to
#   GPT-3.5, GPT-4 on disagreement) on RouterBench's test split: the RouterBench bar.
# - routerbench-learned: examples/learned/routerbench.yaml (three tiers, the classifier
#   router, no gate): where the hull of the tiers (random at equal cost) matters.
# - agreement-routerbench: docs/eval/agreement-routerbench.yaml (Mixtral first, the agreement
#   gate asking Yi-34B, GPT-4 on disagreement): the agreement gate alone. agreement.md beside
#   it has the gate's precision and recall per source (test/plugins/agreement-recorded.test.ts).
# - bandit-routellm-gsm8k: the bandit router (docs/eval/bandit-routellm.yaml) on the GSM8K
#   test rows, replayed in order and taught through the gateway's learning path; its
#   regret against the best fixed tier is in the report.
# Every eval also writes its JSON to docs/eval/json/, from which scripts/eval-frontier.ts
# writes frontier.md.
set -e
DATA=${DATA:-../shared/data}
if [ ! -f "$DATA/routellm_gpt4_vs_mixtral.jsonl" ] || [ ! -f "$DATA/routerbench_subset_11models.jsonl" ]; then
  echo "docs/eval/make.sh: the recorded data is not in $DATA (see $DATA/README.md)" >&2
  exit 1
fi
ROUTELLM="$DATA/routellm_gpt4_vs_mixtral.jsonl"
ROUTERBENCH="$DATA/routerbench_subset_11models.jsonl"
mkdir -p docs/eval/json
tg() { node bin/tiergate.js "$@"; }
# eval NAME CONFIG DATA [flags…]: the Markdown report, its chart and its JSON.
report() {
  name=$1 config=$2 data=$3
  shift 3
  tg eval -c "$config" -d "$data" --split test --no-progress "$@" \
    --markdown "docs/eval/$name.md" --chart "docs/eval/$name.svg" --json "docs/eval/json/$name.json" > /dev/null
}

tg train --gate -d "$ROUTELLM" --split train --tier small=mistralai/Mixtral-8x7B-Instruct-v0.1 --tier large=gpt-4-1106-preview \
  -o examples/routellm/gate.json > docs/eval/train-routellm-gate.txt
tg train -d "$ROUTELLM" --split train --tier small=mistralai/Mixtral-8x7B-Instruct-v0.1 --tier large=gpt-4-1106-preview \
  --target retention:0.98 --l2 1e-4,3e-4,1e-3 --no-progress --where "source in ['mmlu','gsm8k'] and meta.routellm_contaminated != true" \
  -o examples/routellm/router.json > /dev/null

# The learned gate on RouterBench, for its held-out figures only (one-letter answers leave it little to read).
tg train --gate -d "$ROUTERBENCH" --split train --tier small=mistralai/mixtral-8x7b-chat --tier large=gpt-4-1106-preview \
  -o "${TMPDIR:-/tmp}/tiergate-routerbench-gate.json" > docs/eval/train-routerbench-gate.txt

report routellm-gsm8k examples/routellm/gateway.yaml "$ROUTELLM" --route qa --where "source = 'gsm8k'" --sweep 11
report routellm-gsm8k-gate-only examples/routellm/gate-only.yaml "$ROUTELLM" --route qa --where "source = 'gsm8k'" --sweep 11
report routellm-gsm8k-classifier examples/learned/gateway.yaml "$ROUTELLM" --route math --where "source = 'gsm8k'" --sweep 41
report bandit-routellm-gsm8k docs/eval/bandit-routellm.yaml "$ROUTELLM" --route qa --where "source = 'gsm8k'"
report routerbench examples/routerbench/gateway.yaml "$ROUTERBENCH" --route bench --sweep 11
report routerbench-learned examples/learned/routerbench.yaml "$ROUTERBENCH" --route bench --sweep 41
report agreement-routerbench docs/eval/agreement-routerbench.yaml "$ROUTERBENCH" --route bench --sweep 11
node --import tsx scripts/eval-frontier.ts
