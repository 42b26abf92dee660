#!/usr/bin/env bash
# The migration rehearsal on this machine (bench/rehearsal.md): `ciel lab rehearse` of dev
# and prod at 200 req/s (both scenarios), prod's image rollout, the faults, then a ramp of
# the cutover scenario of dev at rising rates to find where failures first appear (~35 min). Every run is bounded (the rehearsal
# caps its rate at 1000 req/s and its traffic at an hour) and sends traffic to loopback
# only. Results: one JSON report per run in bench/results/rehearsal-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out="bench/results"
mkdir -p "$out"
ciel=".venv/bin/ciel"
run() {  # run NAME ARGS...: one rehearsal; its JSON report kept, its one-line summary printed
  local name="$1"; shift
  local start end
  start=$(date +%s)
  $ciel lab rehearse --json "$@" >"$out/rehearsal-$name.json" 2>"$out/rehearsal-$name.log" || true
  end=$(date +%s)
  python3 - "$out/rehearsal-$name.json" "$name" "$((end - start))" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
keys = ("requests", "failed", "failures", "switch_seconds", "rollback_seconds", "replan_changes", "final_backend")
print(f"{sys.argv[2]:<16} {sys.argv[3]:>5} s  " + "  ".join(f"{k}={report.get(k)}" for k in keys))
PY
}
run dev-200 --env dev --rps 200
run prod-200 --env prod --rps 200
run prod-rollout-200 --env prod --rps 200 --scenario rollout
run dev-rotate-secret-200 --env dev --rps 200 --scenario rotate-secret
run dev-fault-cluster-health --env dev --rps 200 --fault cluster-health
run dev-fault-lb-api-errors-kill --env dev --rps 200 --fault lb-api-errors --fault kill-after-switch
for rps in ${RAMP:-400 700 1000}; do
  run "ramp-dev-$rps" --env dev --rps "$rps" --scenario cutover
done
