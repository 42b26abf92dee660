#!/usr/bin/env bash
# Times the local Scaleway (`ciel lab`) as a user meets it: start, first apply of dev and
# prod through the real provider, the re-plan after each, the cluster step, stop. Each
# environment gets a fresh lab (one project each: Queues activation and the Cockpit alert
# manager exist once per project). Run it a few times and quote the medians in
# bench/lab.md. Only 127.0.0.1 is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
ciel=".venv/bin/ciel"
step() {  # step NAME COMMAND...: prints "NAME seconds"
  local name="$1"; shift
  local start end
  start=$(date +%s.%N)
  "$@" >"$work/$name.log" 2>&1 || { echo "$name failed, see $work/$name.log" >&2; exit 1; }
  end=$(date +%s.%N)
  printf '%-28s %6.1f s\n' "$name" "$(echo "$end - $start" | bc)"
}
trap '$ciel lab down >/dev/null 2>&1 || true' EXIT
for env in dev prod; do
  export CIEL_WORK_DIR="$work/$env"
  step "lab up ($env)" $ciel lab up --api-port 46280 --s3-port 46281 --proxy-port 46282
  eval "$($ciel lab env)"
  step "state bootstrap ($env)" $ciel state bootstrap --env "$env"
  step "apply phase1 ($env)" $ciel deploy phase1 --env "$env" --yes
  step "re-plan phase1 ($env)" $ciel deploy phase1 --env "$env"
  if [ "$env" = dev ]; then
    step "apply cluster step (dev)" $ciel deploy phase2 --env dev --yes --cluster-only
    step "re-plan cluster step (dev)" $ciel deploy phase2 --env dev --yes --cluster-only
  fi
  step "lab down ($env)" $ciel lab down
done
rm -rf "$work"
