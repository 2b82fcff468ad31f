#!/usr/bin/env bash
# Start (or stop) the real incident tools the sink tests talk to, all on 127.0.0.1:
# Alertmanager :19093, Redmine :13000, Request Tracker :18080 (installed from Debian packages on first use).
#   usage: incident_tools.sh [start|stop|status]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-start}
rc=0
for tool in alertmanager redmine rt; do
  bash "$here/start_$tool.sh" "$cmd" || rc=1
done
exit "$rc"
