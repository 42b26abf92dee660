#!/usr/bin/env bash
# One idempotent setup step for a fresh clone: the project venv, then `ciel setup`
# (engine, provider mirror, Node + cdktn, Scaleway bindings), all cached per machine.
# A second run takes seconds. Arguments are passed to `ciel setup` (e.g. --engine tofu),
# except --test-tools: the Debian packages the test suite runs for real (cloud-init's
# schema validator, haproxy for the lab's load balancers, shellcheck for the workflows),
# installed with apt-get when missing, and the lab's tools, the secret scanner and the
# workflow linter, built from the Go module proxy (`ciel setup --lab-tools`).
set -euo pipefail
cd "$(dirname "$0")"

args=()
test_tools=0
for arg in "$@"; do
  if [ "$arg" = "--test-tools" ]; then test_tools=1; else args+=("$arg"); fi
done

# A Debian package, installed with apt-get when its command is missing (a stale package
# index is refreshed once, on failure).
install_package() {  # package command [another place the command may be]
  if command -v "$2" >/dev/null 2>&1 || { [ -n "${3:-}" ] && [ -x "$3" ]; }; then return; fi
  echo "installing Debian package $1 ..." >&2
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get install -y -q "$1" >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$1" >/dev/null
  }
}

if [ "$test_tools" = 1 ]; then
  install_package cloud-init cloud-init  # its schema validator checks our user data
  install_package haproxy haproxy /usr/sbin/haproxy  # the lab's load balancers (Debian: /usr/sbin)
  install_package shellcheck shellcheck  # actionlint checks the workflows' run scripts with it
  args+=("--lab-tools")  # kube-apiserver, etcd, vegeta, gitleaks and actionlint, built from the Go module proxy
fi

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python >= 3.11 is required (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi

# Reinstall only when the declared dependencies change.
stamp=".venv/.ciel-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing Python dependencies into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
fi

exec .venv/bin/ciel setup ${args[@]+"${args[@]}"}
