#!/usr/bin/env bash
# Adapted from the tested loopback recipe; ports default high to stay clear of other services.
# Start a throw-away Prometheus Alertmanager 0.25 (Debian package) on loopback only.
#   usage: start_alertmanager.sh [start|stop|status]
# Env knobs:
#   SHELLS_DIR       state root            (default /tmp/aims-services)
#   AM_PORT          HTTP port             (default 19093, bound to 127.0.0.1)
#   AM_WEBHOOK_URL   if set, all alerts are routed to this webhook receiver
#                    (e.g. http://127.0.0.1:19094/hook); otherwise a null receiver
#   AM_INSTALL=0     do not apt-get install when the binary is missing
# Idempotent: a second "start" just re-checks readiness and prints the ready line.
set -euo pipefail
SHELLS_DIR=${SHELLS_DIR:-/tmp/aims-services}
AM_PORT=${AM_PORT:-19093}
DIR=$SHELLS_DIR/alertmanager
PIDFILE=$DIR/alertmanager.pid
URL=http://127.0.0.1:$AM_PORT
cmd=${1:-start}

alive() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case $cmd in
  stop)
    if alive; then kill "$(cat "$PIDFILE")"; for _ in $(seq 50); do alive || break; sleep 0.2; done; fi
    rm -f "$PIDFILE"; echo "alertmanager stopped"; exit 0 ;;
  status)
    if alive && curl -fsS "$URL/-/ready" >/dev/null 2>&1; then echo "alertmanager running pid=$(cat "$PIDFILE") url=$URL"; exit 0; fi
    echo "alertmanager not running"; exit 1 ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

if ! command -v prometheus-alertmanager >/dev/null; then
  [ "${AM_INSTALL:-1}" = 1 ] || { echo "prometheus-alertmanager not installed" >&2; exit 1; }
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2; DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends prometheus-alertmanager curl >&2
fi

mkdir -p "$DIR/data"
if alive && curl -fsS "$URL/-/ready" >/dev/null 2>&1; then
  echo "READY alertmanager url=$URL pid=$(cat "$PIDFILE") (already running)"; exit 0
fi

if [ -n "${AM_WEBHOOK_URL:-}" ]; then
  RECEIVER="  - name: webhook
    webhook_configs:
      - url: '$AM_WEBHOOK_URL'
        send_resolved: true"
  RNAME=webhook
else
  RECEIVER="  - name: 'null'"
  RNAME=null
fi
cat > "$DIR/alertmanager.yml" <<EOF
route:
  receiver: '$RNAME'
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
$RECEIVER
EOF

# --cluster.listen-address= (empty) disables HA gossip, which would otherwise bind 0.0.0.0:9094
nohup prometheus-alertmanager \
  --config.file="$DIR/alertmanager.yml" \
  --storage.path="$DIR/data" \
  --web.listen-address="127.0.0.1:$AM_PORT" \
  --cluster.listen-address= \
  --log.level=info >"$DIR/alertmanager.log" 2>&1 &
echo $! > "$PIDFILE"

for _ in $(seq 100); do
  if curl -fsS "$URL/-/ready" >/dev/null 2>&1; then
    echo "READY alertmanager url=$URL pid=$(cat "$PIDFILE") api=$URL/api/v2/alerts"; exit 0
  fi
  alive || { echo "alertmanager died, log:" >&2; tail -20 "$DIR/alertmanager.log" >&2; exit 1; }
  sleep 0.2
done
echo "alertmanager did not become ready; see $DIR/alertmanager.log" >&2; exit 1
