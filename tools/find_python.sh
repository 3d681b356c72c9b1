#!/usr/bin/env bash
# Print the path of a Python >= 3.12 interpreter, or explain what to install and exit 1.
# Order: $POLYCRACK_PYTHON, python3.13/python3.12/python3 on PATH, then pyenv's versions folder.
set -u
ok() { "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
cands=()
[ -n "${POLYCRACK_PYTHON:-}" ] && cands+=("$POLYCRACK_PYTHON")
for n in python3.13 python3.12 python3 python; do
  p=$(command -v "$n" 2>/dev/null) && cands+=("$p")
done
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for p in "$root"/versions/3.1[2-9]*/bin/python3 "$root"/versions/3.[2-9][0-9]*/bin/python3; do
  [ -x "$p" ] && cands+=("$p")
done
for p in "${cands[@]}"; do
  # pyenv shims fail unless the version is selected; ok() filters them out.
  if ok "$p"; then echo "$p"; exit 0; fi
done
echo "polycrack needs Python >= 3.12 (the DOLFINx wheel has no 3.11 build) and found none." >&2
echo "Install one (e.g. 'pyenv install 3.12', 'apt install python3.12-venv' or from python.org)," >&2
echo "or point POLYCRACK_PYTHON at it: make test POLYCRACK_PYTHON=/path/to/python3.12" >&2
exit 1
