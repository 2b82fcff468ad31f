#!/usr/bin/env bash
# Prometheus (Debian package) for the service tests, on 127.0.0.1 only.
#   prometheus.sh install                 install the package (prometheus + promtool) if missing
#   prometheus.sh start DIR TARGET [PORT] scrape TARGET (host:port of an agent) every second;
#                                         state, config and log in DIR; PORT default 19090
#   prometheus.sh stop DIR
set -euo pipefail
cmd=${1:-}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

case $cmd in
  install)
    if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
      if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
      fi
    fi
    # the package's service is not wanted: the tests start their own instance
    exit 0 ;;
  start)
    dir=${2:?state folder}; target=${3:?host:port}; port=${4:-19090}
    mkdir -p "$dir/data"
    cat > "$dir/prometheus.yml" <<EOC
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: aims-agent
    static_configs:
      - targets: ['$target']
EOC
    promtool check config "$dir/prometheus.yml" >/dev/null
    if alive "$dir/prometheus.pid"; then kill "$(cat "$dir/prometheus.pid")"; sleep 0.5; fi
    nohup prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
      --web.listen-address="127.0.0.1:$port" >"$dir/prometheus.log" 2>&1 &
    echo $! > "$dir/prometheus.pid"
    for _ in $(seq 150); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && \
         python3 -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:$port/-/ready').status!=200)" 2>/dev/null; then
        echo "READY prometheus url=http://127.0.0.1:$port pid=$(cat "$dir/prometheus.pid")"; exit 0
      fi
      alive "$dir/prometheus.pid" || { echo "prometheus died:" >&2; tail -20 "$dir/prometheus.log" >&2; exit 1; }
      sleep 0.2
    done
    echo "prometheus did not become ready; see $dir/prometheus.log" >&2; exit 1 ;;
  stop)
    dir=${2:?state folder}
    if alive "$dir/prometheus.pid"; then
      pid=$(cat "$dir/prometheus.pid"); kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$dir/prometheus.pid"; exit 0 ;;
  *) echo "usage: $0 install | start DIR TARGET [PORT] | stop DIR" >&2; exit 2 ;;
esac
