# Shared by scripts/second-engine.sh and scripts/remote-engine.sh: the lifecycle of one extra
# dockerd that such a script starts. The caller sets TAG (the log prefix), PIDFILE, URL,
# answers() (exits 0 when the engine answers _ping), start() and stop(), then runs
# main "$@".

say() { printf '[%s] %s\n' "$TAG" "$1" >&2; }
die() { printf '[%s] FAILED: %s\n' "$TAG" "$1" >&2; exit "${2:-1}"; }

pid() {  # the live dockerd of this engine, or nothing
  local p
  p=$(cat "$PIDFILE" 2>/dev/null) || return 0
  if [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = dockerd ]; then echo "$p"; fi
}

wait_answer() {  # wait_answer URL LOG: up to 60 s for the engine started in the background
  for _ in $(seq 1 120); do
    if answers; then say "ready: $1 (pid $(pid))"; return 0; fi
    sleep 0.5
  done
  tail -n 20 "$2" >&2 || true
  die "no answer at $1 within 60 s (its log's tail is above: $2)"
}

stop_dockerd() {  # SIGTERM, then SIGKILL after 20 s; returns at once when none runs
  local p
  p=$(pid)
  if [ -z "$p" ]; then say "not running"; return 0; fi
  say "stopping dockerd $p"
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 40); do
    [ -d "/proc/$p" ] || break
    sleep 0.5
  done
  if [ -d "/proc/$p" ]; then say "still running after 20 s: SIGKILL"; kill -KILL "$p" 2>/dev/null || true; fi
  say "stopped"
}

main() {  # the scripts' commands: start|stop|status|url
  case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if answers; then echo "running: $URL (pid $(pid))"; else echo "not running"; exit 1; fi ;;
    url) echo "$URL" ;;
    *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
  esac
}
