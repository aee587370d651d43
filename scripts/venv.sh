#!/usr/bin/env bash
# The project's virtual environment (set-up's Python step): create it with Debian's python3
# and install the project with its dev extras into it. Nothing is installed into the system
# interpreter (Debian's refuses that anyway: PEP 668, externally-managed-environment).
#
#   scripts/venv.sh [--venv DIR] [--project DIR] [--python PY] [--extras LIST]
#
# DIR defaults to the project's .venv (the Makefile, tox and .ci/run use that one). PY: $MC_PYTHON
# if set, else Debian's /usr/bin/python3 when present (the same interpreter on every machine),
# else the first python3 on PATH; it must be 3.11 or newer and have venv support (Debian
# package python3-venv). A venv made by another interpreter is made again. A second run with
# the same interpreter and an unchanged pyproject.toml only checks. Every failure names its
# step and what to do; exit status 1, or pip's.
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
venv=
python=${MC_PYTHON:-}
extras=dev
usage() { sed -n '6p' "$0" | sed 's/^# *//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) [ $# -ge 2 ] || usage; venv=$2; shift 2 ;;
    --project) [ $# -ge 2 ] || usage; project=$2; shift 2 ;;
    --python) [ $# -ge 2 ] || usage; python=$2; shift 2 ;;
    --extras) [ $# -ge 2 ] || usage; extras=$2; shift 2 ;;
    *) usage ;;
  esac
done
if [ -z "$venv" ]; then venv=$project/.venv; name=.venv; else name=$venv; fi

SECONDS=${MC_SETUP_SECONDS:-0}  # scripts/setup.sh passes its clock on
say() { printf '[setup] %s (%ss)\n' "$1" "$SECONDS" >&2; }
# fail WHAT WHY TODO [STATUS]
fail() {
  printf '[setup] FAILED: %s (%s) — %s\n' "$1" "$2" "$3" >&2
  exit "${4:-1}"
}

# -- the interpreter
if [ -z "$python" ]; then
  if [ -x /usr/bin/python3 ]; then
    python=/usr/bin/python3
  elif python=$(command -v python3); then
    say "no /usr/bin/python3 (Debian's); using $python"
  else
    fail "choosing the Python interpreter" "no python3 found" \
         "as root: apt-get install -y python3 python3-venv (make setup does this), then run it again"
  fi
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  fail "choosing the Python interpreter" "$python is older than 3.11 or does not run" \
       "the project needs Python >= 3.11 (Debian 12's python3 is 3.11); set MC_PYTHON to one"
fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  fail "creating $name with $python" "it has no venv support: Debian package python3-venv missing" \
       "as root: apt-get install -y python3-venv (make setup does this), then run it again"
fi
want=$("$python" -c 'import os, sys; print(os.path.realpath(sys.executable), sys.version.split()[0])')

# -- the environment: reuse it only if this interpreter made it
if [ -e "$venv" ] || [ -L "$venv" ]; then
  if [ ! -f "$venv/pyvenv.cfg" ]; then
    fail "using $name" "$venv exists and is not a virtual environment (no pyvenv.cfg)" \
         "move it away, then run set-up again"
  fi
  have=$("$venv/bin/python" -c 'import os, sys; print(os.path.realpath(sys._base_executable), sys.version.split()[0])' 2>/dev/null) || have="(does not run)"
  if [ "$have" != "$want" ]; then
    say "$name was made by $have, not $want: making it again"
    rm -rf -- "$venv"
  fi
fi
if [ ! -e "$venv" ]; then
  say "creating $name with $python ($("$python" -V 2>&1))"
  rc=0; "$python" -m venv "$venv" || rc=$?
  if [ "$rc" != 0 ] || [ ! -x "$venv/bin/python" ]; then
    fail "creating $name with $python -m venv" "exited $rc" \
         "see the lines above; on Debian install python3-venv, check free disk, then run set-up again" 1
  fi
fi

# -- the packages: the project, editable, with its extras
stamp=$venv/.mc-chaos-installed
want_stamp="$want|$extras|$(cd "$project" && sha256sum pyproject.toml | cut -d' ' -f1)|$project"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ] \
   && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  say "$name up to date (same interpreter, pyproject.toml unchanged)"
  exit 0
fi
rm -f "$stamp"
say "installing the project and its Python packages into $name: pip install -e \".[$extras]\" (first time ≈ 1 min)"
rc=0
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
  -e "$project[$extras]" || rc=$?
if [ "$rc" != 0 ]; then
  fail "installing Python packages into $name" "pip exited $rc" \
       "see the lines above; fix the cause (no access to PyPI? a package that does not build?) and run set-up again. Nothing was installed into the system Python" \
       "$rc"
fi
printf '%s\n' "$want_stamp" >"$stamp"
say "$name ready ($("$venv/bin/python" -V 2>&1), from $python)"
