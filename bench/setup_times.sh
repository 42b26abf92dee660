#!/usr/bin/env bash
# Measures setup on a fresh clone with empty caches (cold) and again (warm), then the
# synth and offline plan of dev. Cold means every cache is empty: ours, Go's module and
# build caches, npm's and pip's. Prints one line per measurement; results go to
# bench/setup.md by hand, with the date and machine.
#
#   bench/setup_times.sh [WORKDIR]     (default: a new temporary folder)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/ciel-bench.XXXXXX)}"
mkdir -p "$work"
export CIEL_CACHE_DIR="$work/cache/ciel" GOMODCACHE="$work/cache/gomod" GOCACHE="$work/cache/gobuild" \
       npm_config_cache="$work/cache/npm" PIP_CACHE_DIR="$work/cache/pip"
git clone -q "$repo" "$work/clone"
cd "$work/clone"

measure() {  # label, command...
  local label="$1"; shift
  local start end
  start=$(date +%s.%N)
  "$@" > "$work/$label.log" 2>&1
  end=$(date +%s.%N)
  printf '%-28s %8.1f s\n' "$label" "$(echo "$end - $start" | bc)"
}

measure "setup cold"                 ./setup.sh
measure "setup cold (+OpenTofu)"     ./setup.sh --all-engines
measure "setup warm"                 ./setup.sh --all-engines
measure "deploy phase1 dev (1st)"    .venv/bin/ciel deploy phase1 --env dev
measure "deploy phase1 dev (again)"  .venv/bin/ciel deploy phase1 --env dev
measure "synth dev"                  .venv/bin/ciel synth --env dev
grep -E "synthesized stack" "$work/deploy phase1 dev (again).log" || true
# Go caches are written read-only; make the folder removable.
chmod -R u+w "$work/cache" 2>/dev/null || true
echo "logs and caches in $work"
