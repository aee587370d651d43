#!/usr/bin/env bash
# An engine that is "elsewhere" as far as the network goes (issue 18): a dockerd in its own
# network namespace, reached only over TCP through a veth pair, as a build host or CI runner
# on another machine is. Its containers' addresses are routed only inside that namespace, so
# the harness must reach them through the run's access container (harness/cluster/access.py),
# never directly; a direct dial fails at once (the host has an unreachable route for the
# engine's pool), so a harness that still dials addresses fails loudly and sends nothing
# off this machine.
#
#   scripts/remote-engine.sh start    start it (if not running) and wait until it answers
#   scripts/remote-engine.sh stop     stop it, then remove its namespace, link and route;
#                                     its data root stays (images)
#   scripts/remote-engine.sh status   running or not; exits 0 when it answers
#   scripts/remote-engine.sh url      print its URL, for --mc-docker-host / MC_DOCKER_HOSTS
#
# The namespace has its own iptables tables, so this dockerd runs with iptables on (its
# --internal networks, its published ports) without touching the host's rules. It shares
# the host's processes and files: faults that need the engine's host (engine freeze, lost
# close, soak) are skipped or refused for it, as for any tcp:// engine that is not an address
# of this machine. Plain TCP without TLS, on a link only this host reaches.
#
# Needs root, dockerd and iproute2. Environment: MC_REMOTE_NAME (default mc-remote) names
# every path, MC_REMOTE_LINK the /30 of the veth pair (default 10.214.0.0/30: the host is
# .1, the engine .2), MC_REMOTE_POOL its address pool (default 10.215.0.0/16).
set -euo pipefail

NAME=${MC_REMOTE_NAME:-mc-remote}
NETNS=$NAME
RUN=/run/$NAME
PIDFILE=$RUN/docker.pid
DATA=/var/lib/$NAME
LOG=/var/log/$NAME.log
LINK=${MC_REMOTE_LINK:-10.214.0.0/30}
POOL=${MC_REMOTE_POOL:-10.215.0.0/16}
PREFIX=${LINK%.*/*}
HOST_IP=$PREFIX.1
ENGINE_IP=$PREFIX.2
URL=tcp://$ENGINE_IP:2375
VETH_HOST=${NAME:0:10}-h
VETH_ENGINE=${NAME:0:10}-e

TAG=remote-engine
# shellcheck source=scripts/lib/dockerd.sh
. "$(dirname "$0")/lib/dockerd.sh"

answers() {
  curl -fsS --max-time 3 "http://$ENGINE_IP:2375/_ping" >/dev/null 2>&1
}

plumb() {  # the namespace, the veth pair, and the host's unreachable route for the pool
  ip netns list | grep -qw "^$NETNS" || ip netns add "$NETNS"
  if ! ip link show "$VETH_HOST" >/dev/null 2>&1; then
    ip link add "$VETH_HOST" type veth peer name "$VETH_ENGINE"
    ip link set "$VETH_ENGINE" netns "$NETNS"
    ip addr add "$HOST_IP/30" dev "$VETH_HOST"
    ip netns exec "$NETNS" ip addr add "$ENGINE_IP/30" dev "$VETH_ENGINE"
  fi
  ip link set "$VETH_HOST" up
  ip netns exec "$NETNS" ip link set "$VETH_ENGINE" up
  ip netns exec "$NETNS" ip link set lo up
  ip route replace unreachable "$POOL"
}

unplumb() {
  ip route del unreachable "$POOL" 2>/dev/null || true
  ip link del "$VETH_HOST" 2>/dev/null || true
  ip netns del "$NETNS" 2>/dev/null || true
}

start() {
  [ "$(id -u)" = 0 ] || die "needs root (it starts dockerd)" 2
  command -v dockerd >/dev/null || die "dockerd is not installed: run scripts/setup.sh images first (it installs and starts the first engine)" 2
  command -v ip >/dev/null || die "ip (iproute2) is not installed" 2
  if answers; then say "already running: $URL (pid $(pid))"; return 0; fi
  [ -z "$(pid)" ] || die "dockerd $(pid) holds $PIDFILE but does not answer at $URL; stop it: $0 stop"
  mkdir -p "$RUN/exec" "$DATA"
  plumb
  say "starting dockerd in network namespace $NETNS: $URL, data root $DATA, address pool $POOL, log $LOG"
  # nsenter, not 'ip netns exec': the latter remounts /sys in a new mount namespace, where
  # dockerd finds no cgroup hierarchy ("Devices cgroup isn't mounted": measured)
  nsenter --net="/run/netns/$NETNS" setsid dockerd --host "$URL" --tls=false \
    --data-root "$DATA" --exec-root "$RUN/exec" --pidfile "$PIDFILE" --bridge none \
    --default-address-pool "base=$POOL,size=24" </dev/null >>"$LOG" 2>&1 &
  wait_answer "$URL" "$LOG"
}

stop() {
  stop_dockerd
  unplumb
}

main "$@"
