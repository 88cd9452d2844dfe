#!/usr/bin/env bash
# Our own Docker daemon (Debian's docker.io), never the host's: state under build/docker, started
# and stopped by its pid file.
#
#   images/dockerd.sh start|stop|status      (DOCKER_DIR overrides build/docker)
#
# No bridge and no iptables: builds and containers use the host network only, so nothing gets a
# private-range address. `stop` also unmounts what the daemon leaves under its exec root (the
# network namespace bind mounts), so a test run leaves no mount behind.
set -euo pipefail
DIR=${DOCKER_DIR:-$(cd "$(dirname "$0")/.." && pwd)/build/docker}
SOCK=$DIR/docker.sock
PID=$DIR/dockerd.pid
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-/usr/bin/docker}

alive() { [ -s "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; }
answers() { DOCKER_HOST=unix://$SOCK "$DOCKER" version >/dev/null 2>&1; }

case "${1:-}" in
start)
  if alive && answers; then exit 0; fi
  mkdir -p "$DIR/data" "$DIR/exec"
  "$DOCKERD" --host "unix://$SOCK" --pidfile "$PID" --data-root "$DIR/data" --exec-root "$DIR/exec" \
    --bridge none --iptables=false --ip-masq=false --ip6tables=false --userland-proxy=false \
    --storage-driver overlay2 >"$DIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 300); do answers && exit 0; sleep 0.2; done
  echo "dockerd did not answer on $SOCK within 60 s; see $DIR/dockerd.log" >&2
  exit 1
  ;;
stop)
  if alive; then
    pid=$(cat "$PID")
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$PID"
  # Whatever is still mounted under our own directories (netns files, overlay layers): deepest first.
  if [ -d "$DIR" ]; then
    awk -v d="$DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m"; done
  fi
  ;;
status)
  if alive && answers; then echo "dockerd running (pid $(cat "$PID"), unix://$SOCK)"; else echo "dockerd not running"; exit 3; fi
  ;;
*)
  echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
