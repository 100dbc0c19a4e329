#!/usr/bin/env bash
# Makes the project runnable on a fresh Debian machine with Python 3.11, Java 17 and Maven:
# .venv with `pip install -e '.[test]'`, redis-server (apt), the Kafka jars (Maven Central).
# Idempotent; takes well under a second when everything is already in place.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/stack.sh
source "$ROOT/deploy/stack.sh"
cd "$ROOT"

VENV=$ROOT/.venv
STAMP=$VENV/.sanctiongate-pyproject.sha256

is_py311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }

if [[ ! -x $VENV/bin/python ]]; then
  py=
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && is_py311 "$candidate"; then py=$candidate; break; fi
  done
  [[ -n $py ]] || die "bootstrap: Python 3.11 not found (neither python3.11 nor python3 is 3.11)"
  # Debian ships venv/ensurepip separately.
  "$py" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3.11-venv
  say "bootstrap: creating .venv with $(command -v "$py")"
  "$py" -m venv "$VENV"
fi
is_py311 "$VENV/bin/python" || die "bootstrap: .venv is not Python 3.11: remove it and run again"

# The C record encoder (setup.py) wants a compiler and zlib's headers; without them the
# install goes on and records are encoded in Python (slower), so bring them if missing.
{ command -v cc >/dev/null && [[ -f /usr/include/zlib.h ]]; } || apt_install gcc libc6-dev zlib1g-dev
# ... and Python's headers (a pyenv or python.org build has them; Debian's python3.11 not).
"$VENV/bin/python" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
  apt_install python3.11-dev
# setup.py builds the C record encoder in place: its source changing means installing again.
want=$(cat pyproject.toml setup.py src/sanctiongate/index/_recordc.c | sha256sum | cut -d' ' -f1)
if [[ ! -f $STAMP || $(<"$STAMP") != "$want" ]]; then
  say "bootstrap: pip install -e '.[test]' (pyproject.toml, setup.py or the C encoder changed, or first run)"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q -e '.[test]'
  printf '%s\n' "$want" >"$STAMP"
fi

redis_install
command -v java >/dev/null || die "bootstrap: java not found (Kafka $KAFKA_VERSION needs Java 17+)"
kafka_fetch
say "bootstrap: ok (.venv, redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-), Kafka $KAFKA_VERSION jars in $KAFKA_LIBS)"
