#!/usr/bin/env bash
# Make sure the services the integration tests use are up, bound to 127.0.0.1 only.
# PostgreSQL and MariaDB come with the machine; start them if they are installed but stopped.
set -uo pipefail

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
maria_up() { (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; }

if ! pg_up && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! maria_up && [ -x /usr/sbin/mariadbd ]; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
for _ in $(seq 50); do pg_up && break; sleep 0.2; done
pg_up || echo "provision: PostgreSQL is not reachable on 127.0.0.1:5432; its tests will fail" >&2
bash "$(dirname "$0")/install_chromium.sh" || echo "provision: chromium could not be installed; the report rendering tests will fail" >&2
bash "$(dirname "$0")/incident_tools.sh" start >&2 || echo "provision: Alertmanager/Redmine/RT did not start; the sink tests will fail" >&2
bash "$(dirname "$0")/prometheus.sh" install || echo "provision: Prometheus (promtool) could not be installed; its tests will fail" >&2
exit 0
