#!/usr/bin/env bash
# Everything a new machine needs before the suite can run, in this order:
#   packages  the Debian packages the chosen steps need (as root, from Debian's archive only)
#   venv      the project's virtual environment .venv (scripts/venv.sh: Debian's python3 -m venv,
#             pip install -e ".[dev]"); nothing goes into the system Python
#   report    the HTML report's tools: Java >= 17 (openjdk-17-jre-headless), Node/npm (nodejs,
#             npm), then Allure 2 installed once from npm (python -m harness.report.html --install-only)
#   images    the Docker engine (started if needed) and every image, built locally (nothing pulled)
#
#   scripts/setup.sh                 all steps
#   scripts/setup.sh venv [report]   only those steps (and the Debian packages they need)
#
# Idempotent: a second run only checks (a few seconds). Installing needs root on Debian (as the
# CI machines are); with everything present it runs as any user. Every step that fails names
# itself and what to do, and set-up exits non-zero: nothing is skipped silently.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s (%ss)\n' "$1" "$SECONDS" >&2; }
# fail WHAT WHY TODO [STATUS]
fail() {
  printf '[setup] FAILED: %s (%s) — %s\n' "$1" "$2" "$3" >&2
  exit "${4:-1}"
}
# step WHAT TODO CMD...: run CMD; if it fails, stop set-up naming WHAT, its exit status, TODO
step() {
  local what=$1 todo=$2 rc=0
  shift 2
  "$@" || rc=$?
  [ "$rc" = 0 ] || fail "$what" "${1##*/} exited $rc" "see the lines above; $todo" "$rc"
}

do_venv=0 do_report=0 do_images=0
[ $# -gt 0 ] || set -- venv report images
for s in "$@"; do
  case "$s" in
    venv) do_venv=1 ;;
    report) do_report=1 do_venv=1 ;;   # the report runs from the venv
    images) do_images=1 do_venv=1 ;;   # so does the image build
    *) echo "usage: scripts/setup.sh [venv] [report] [images]   (default: all)" >&2; exit 2 ;;
  esac
done

VENV=.venv
PY=$VENV/bin/python

# ------------------------------------------------------------------ Debian packages
java_major() {  # major version of the java on PATH ("1.8.0_x" -> 1, "17.0.15" -> 17), or 0
  local v
  v=$(java -version 2>&1 | sed -n 's/.* version "\([0-9][0-9]*\).*/\1/p' | head -n 1) || v=0
  echo "${v:-0}"
}

need_apt=()
if [ $do_venv = 1 ] && [ -z "${MC_PYTHON:-}" ]; then
  # Debian's interpreter, with venv support (scripts/venv.sh picks /usr/bin/python3)
  [ -x /usr/bin/python3 ] || need_apt+=(python3)
  { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; } \
    || need_apt+=(python3-venv)
  # the simulator's fast interpreter (docs/simulator.md; make test runs the simulator on it)
  command -v pypy3 >/dev/null 2>&1 || need_apt+=(pypy3)
fi
if [ $do_venv = 1 ] || [ $do_report = 1 ]; then
  # pip and npm fetch over HTTPS
  [ -s /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
fi
if [ $do_report = 1 ]; then
  if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
    need_apt+=(openjdk-17-jre-headless)
  fi
  command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
  command -v npm >/dev/null 2>&1 || need_apt+=(npm)
fi
if [ $do_images = 1 ]; then
  command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || need_apt+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
  # docker-compose 1.29 (Debian) for the operator procedures (fixtures/compose, marker procedures)
  command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
fi

stop_mariadb_service() {
  # the Debian mariadb-server package starts a system service that the suite does not use
  if [ -d /run/systemd/system ]; then
    if systemctl is-active --quiet mariadb; then
      step "stopping Debian's mariadb service" "stop it by hand: systemctl stop mariadb" \
        systemctl stop mariadb
    fi
  elif [ -x /etc/init.d/mariadb ] && /etc/init.d/mariadb status >/dev/null 2>&1; then
    step "stopping Debian's mariadb service" "stop it by hand: /etc/init.d/mariadb stop" \
      /etc/init.d/mariadb stop
  fi
}

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    fail "installing Debian packages: ${need_apt[*]}" "not root on Debian" \
         "install them (Debian: apt-get install -y ${need_apt[*]}) or run set-up as root on Debian"
  fi
  log=${TMPDIR:-/tmp}/mc-chaos-setup-apt.log
  say "installing Debian packages: ${need_apt[*]} (first time ≈ 1-2 min; apt's output: $log)"
  apt_step() {  # WHAT CMD...: apt's output goes to the log; its tail is shown on failure
    local what=$1 rc=0
    shift
    env DEBIAN_FRONTEND=noninteractive "$@" </dev/null >>"$log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
      tail -n 25 "$log" >&2
      fail "$what" "apt-get exited $rc" \
           "see the lines above (all of apt's output: $log); fix the cause (network to Debian's archive? dpkg interrupted: dpkg --configure -a) and run set-up again" \
           "$rc"
    fi
  }
  : >"$log"
  apt_step "apt-get update" apt-get update -q
  apt_step "installing Debian packages: ${need_apt[*]}" \
    apt-get install -y -q --no-install-recommends "${need_apt[@]}"
  case " ${need_apt[*]} " in *" mariadb-server "*) stop_mariadb_service ;; esac
  say "Debian packages installed"
fi

# ------------------------------------------------------------------ .venv
if [ $do_venv = 1 ]; then
  MC_SETUP_SECONDS=$SECONDS bash scripts/venv.sh --venv "$VENV"
  # what the suite needs from it: pytest with the harness plugin (pytest11 entry point),
  # the Docker SDK from PyPI (>= 7; not Debian's python3-docker, which the venv does not see)
  step "checking .venv (pytest, the harness's pytest11 plugin, docker >= 7)" \
       "remove .venv and run set-up again" \
       "$PY" -c '
import sys
from importlib.metadata import entry_points, version
import docker, pytest  # noqa: F401
plugin = [ep.value for ep in entry_points(group="pytest11") if ep.name == "multiconnect_chaos"]
if plugin != ["harness.pytest_plugin.plugin"]:
    sys.exit(f"the pytest11 entry point multiconnect_chaos is {plugin}, not [harness.pytest_plugin.plugin]")
v = version("docker")
if int(v.split(".")[0]) < 7:
    sys.exit(f"docker {v} from {docker.__file__}: need >= 7 (PyPI)")
if sys.prefix == sys.base_prefix:
    sys.exit("not a virtual environment")
'
fi

# ------------------------------------------------------------------ report tools
if [ $do_report = 1 ]; then
  say "report tools: Java $(java_major), Node $(node --version), npm $(npm --version); Allure from npm (first time ≈ 10 s)"
  step "installing the report's tools (Allure 2 via npm, Java >= 17)" \
       "the report cannot be made until this works; apt-get install -y openjdk-17-jre-headless nodejs npm (as root) if the message says one is missing" \
       "$PY" -m harness.report.html --install-only
fi

# ------------------------------------------------------------------ engine and images
if [ $do_images = 1 ]; then
  say "starting the Docker engine (if needed) and building images (first time ≈ 2-3 min)"
  step "starting the Docker engine and building the images" \
       "fix what the message says, then run set-up again (python -m harness doctor checks everything)" \
       "$PY" -m harness images
fi
say "ready"
