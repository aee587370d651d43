#!/usr/bin/env bash
# Everything a new machine needs before the suite can run: Debian packages, the Docker engine,
# the Python packages, and every image (built locally; nothing is pulled). Idempotent: a second
# run only checks. Needs root on Debian (as the CI machines are).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s (%ss)\n' "$1" "$SECONDS" >&2; }

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
# docker-compose 1.29 (Debian) for the operator procedures (fixtures/compose, marker procedures)
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "[setup] missing: ${need_apt[*]}. Install them (Debian: apt-get install ${need_apt[*]})," \
         "or run this script as root on Debian." >&2
    exit 1
  fi
  say "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # the Debian mariadb-server package starts a system service we do not use
  (systemctl stop mariadb 2>/dev/null || service mariadb stop 2>/dev/null || true) >/dev/null 2>&1
fi

say "installing Python packages"
python3 -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "Running pip as the 'root' user" || true

say "starting the Docker engine (if needed) and building images"
python3 -m harness images
say "ready"
