#!/usr/bin/env bash
# A second Docker engine on this machine, to run the suite across two engines (issue 18):
# its own socket, data root, exec root, pid file and address pool, and no default bridge, so
# nothing of it collides with the first engine (the one the harness starts).
#
#   scripts/second-engine.sh start    start it (if not running) and wait until it answers
#   scripts/second-engine.sh stop     stop it (SIGTERM, then SIGKILL after 20 s); its
#                                     containers go with it, its data root stays (images)
#   scripts/second-engine.sh status   running or not; exits 0 when it answers
#   scripts/second-engine.sh url      print its URL, for --mc-docker-host / MC_DOCKER_HOSTS
#
# Its networks come from 10.213.0.0/16 (/24 each) and the first engine's from Docker's
# default pools (172.17-31.x, 192.168.x): a run's bridges on the two engines never share a
# subnet, so the host routes to both.
#
# iptables: two dockerds managing the same chains undo each other (a second dockerd starting
# with iptables on removed the first one's rules: measured), so this one runs with
# --iptables=false and its isolation is one chain of ours, MC-ENGINE2, first in FORWARD:
# traffic bridged inside one of its networks passes; anything else from or to its pool is
# dropped (no egress, no traffic between its networks). The host reaches its containers
# directly (INPUT/OUTPUT, not FORWARD). stop removes the chain.
#
# Needs root and dockerd (the first engine's set-up installs it). Environment:
# MC_ENGINE2_NAME (default mc-docker2) names every path, MC_ENGINE2_POOL the address pool.
set -euo pipefail

NAME=${MC_ENGINE2_NAME:-mc-docker2}
RUN=/run/$NAME
SOCK=$RUN/docker.sock
PIDFILE=$RUN/docker.pid
DATA=/var/lib/$NAME
LOG=/var/log/$NAME.log
POOL=${MC_ENGINE2_POOL:-10.213.0.0/16}
URL=unix://$SOCK

TAG=engine2
# shellcheck source=scripts/lib/dockerd.sh
. "$(dirname "$0")/lib/dockerd.sh"

CHAIN=MC-ENGINE2
ipt() { iptables -w 5 "$@"; }

isolate() {
  ipt -N "$CHAIN" 2>/dev/null || ipt -F "$CHAIN"
  ipt -A "$CHAIN" -s "$POOL" -d "$POOL" -m physdev --physdev-is-bridged -j ACCEPT
  ipt -A "$CHAIN" -s "$POOL" -j DROP
  ipt -A "$CHAIN" -d "$POOL" -j DROP
  ipt -C FORWARD -j "$CHAIN" 2>/dev/null || ipt -I FORWARD 1 -j "$CHAIN"
}

unisolate() {
  while ipt -D FORWARD -j "$CHAIN" 2>/dev/null; do :; done
  ipt -F "$CHAIN" 2>/dev/null || true
  ipt -X "$CHAIN" 2>/dev/null || true
}

answers() {
  curl -fsS --max-time 3 --unix-socket "$SOCK" http://engine/_ping >/dev/null 2>&1
}

start() {
  [ "$(id -u)" = 0 ] || die "needs root (it starts dockerd)" 2
  command -v dockerd >/dev/null || die "dockerd is not installed: run scripts/setup.sh images first (it installs and starts the first engine)" 2
  if answers; then say "already running: $URL (pid $(pid))"; return 0; fi
  [ -z "$(pid)" ] || die "dockerd $(pid) holds $PIDFILE but does not answer on $SOCK; stop it: $0 stop"
  mkdir -p "$RUN" "$DATA" "$RUN/exec"
  command -v iptables >/dev/null || die "iptables is not installed (it isolates the engine's networks)" 2
  isolate
  say "starting dockerd: socket $SOCK, data root $DATA, address pool $POOL, log $LOG"
  setsid dockerd --host "$URL" --data-root "$DATA" --exec-root "$RUN/exec" \
    --pidfile "$PIDFILE" --bridge none --default-address-pool "base=$POOL,size=24" \
    --iptables=false --ip-forward=false </dev/null >>"$LOG" 2>&1 &
  wait_answer "$URL" "$LOG"
}

stop() {
  stop_dockerd
  unisolate
}

main "$@"
