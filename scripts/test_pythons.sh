#!/usr/bin/env bash
# Run the unit tests (`pytest -m "not slow"`) under every CPython minor version the README
# claims (pyproject's requires-python), each in its own virtual environment `.venv-pyX.Y`.
# A claimed version that is not installed is reported and skipped; one that fails fails the run.
#   usage: scripts/test_pythons.sh [3.10 3.12 ...]      (default: every claimed version)
set -uo pipefail
cd "$(dirname "$0")/.."

claimed=("$@")
if [ ${#claimed[@]} -eq 0 ]; then
  # requires-python = ">=3.10,<3.13" -> 3.10 3.11 3.12
  spec=$(sed -n 's/^requires-python *= *"\(.*\)"/\1/p' pyproject.toml)
  lo=$(echo "$spec" | sed -n 's/.*>=3\.\([0-9]*\).*/\1/p')
  hi=$(echo "$spec" | sed -n 's/.*<3\.\([0-9]*\).*/\1/p')
  for ((m = lo; m < hi; m++)); do claimed+=("3.$m"); done
fi

find_python() {   # the newest installed CPython X.Y: pyenv's, else pythonX.Y on the PATH
  local v=$1 p
  if command -v pyenv >/dev/null 2>&1; then
    p=$(pyenv root)/versions/$(pyenv versions --bare 2>/dev/null | grep -E "^${v//./\\.}\.[0-9]+$" \
        | sort -t. -k3 -n | tail -1)/bin/python
    [ -x "$p" ] && { echo "$p"; return; }
  fi
  command -v "python$v" 2>/dev/null || true
}

ran=(); missing=(); failed=()
for v in "${claimed[@]}"; do
  py=$(find_python "$v")
  if [ -z "$py" ]; then missing+=("$v"); echo "python $v: not installed here, skipped"; continue; fi
  venv=".venv-py$v"
  # `make test` has already tested the version of `.venv`: reuse it rather than install twice
  if [ -x .venv/bin/python ] && [ -f .venv/.installed ] \
     && [ "$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$v" ]; then
    venv=".venv"
  fi
  if [ "$venv" = ".venv" ] && [ "${VITWATCH_VENV_TESTED:-0}" = "1" ]; then
    echo "python $v: unit tests already run by \`make test\` in .venv"; ran+=("$v"); continue
  fi
  stamp="$venv/.installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "python $v: installing into $venv ($py)"
    { "$py" -m venv "$venv" && "$venv/bin/python" -m pip install --quiet --upgrade pip \
      && "$venv/bin/python" -m pip install --quiet -e '.[test]' && touch "$stamp"; } \
      > "$venv.install.log" 2>&1 || { echo "python $v: install FAILED (see $venv.install.log)"
                                     failed+=("$v"); continue; }
  fi
  start=$(date +%s)
  if "$venv/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider > "$venv.test.log" 2>&1; then
    echo "python $v: unit tests passed ($(tail -1 "$venv.test.log" | tr -d '='), $(( $(date +%s) - start )) s)"
    ran+=("$v")
  else
    echo "python $v: unit tests FAILED ($(( $(date +%s) - start )) s); last lines of $venv.test.log:"
    tail -30 "$venv.test.log"
    failed+=("$v")
  fi
done
echo "python versions tested: ${ran[*]:-none}; failed: ${failed[*]:-none}; not installed: ${missing[*]:-none}"
[ ${#failed[@]} -eq 0 ]
