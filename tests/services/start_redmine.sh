#!/usr/bin/env bash
# Adapted from the tested loopback recipe; ports default high to stay clear of other services.
# Start Redmine 5.0 (Debian bookworm package, sqlite3 backend, thin) on loopback only,
# with the REST API enabled and a fixed admin API key.
#   usage: start_redmine.sh [start|stop|status|reset]
#     reset = stop + restore the pristine (just-bootstrapped) database, then start
# Env knobs:
#   SHELLS_DIR       state root                   (default /tmp/aims-services)
#   REDMINE_PORT     HTTP port on 127.0.0.1       (default 13000)
#   REDMINE_API_KEY  admin API key to install     (default 40 hex chars below)
# Needs root for the first run (apt-get install, debconf preseed). The server runs as www-data.
# Credentials: admin / admin (web login); REST: header X-Redmine-API-Key: $REDMINE_API_KEY
set -euo pipefail
SHELLS_DIR=${SHELLS_DIR:-/tmp/aims-services}
REDMINE_PORT=${REDMINE_PORT:-13000}
REDMINE_API_KEY=${REDMINE_API_KEY:-0123456789abcdef0123456789abcdef01234567}
DIR=$SHELLS_DIR/redmine
PIDFILE=$DIR/redmine.pid
URL=http://127.0.0.1:$REDMINE_PORT
RM=/usr/share/redmine
DB=/var/lib/dbconfig-common/sqlite3/redmine/instances/default/redmine_default
cmd=${1:-start}

alive() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
stop() {
  if alive; then kill "$(cat "$PIDFILE")"; for _ in $(seq 75); do alive || break; sleep 0.2; done; fi
  rm -f "$PIDFILE"
}
api_ok() { curl -fsS -H "X-Redmine-API-Key: $REDMINE_API_KEY" "$URL/users/current.json" 2>/dev/null | grep -q '"login":"admin"'; }

case $cmd in
  stop) stop; echo "redmine stopped"; exit 0 ;;
  status) if alive && api_ok; then echo "redmine running url=$URL"; exit 0; fi; echo "redmine not running"; exit 1 ;;
  reset) stop; [ -f "$DIR/pristine.sqlite3" ] && install -o root -g www-data -m 660 "$DIR/pristine.sqlite3" "$DB" ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status|reset]" >&2; exit 2 ;;
esac
mkdir -p "$DIR"; chown www-data:www-data "$DIR"

# 1) install (once): preseed dbconfig-common for sqlite3, no recommends (=> no passenger/apache).
#    `thin` is needed: Debian's Redmine Gemfile loads thin "if available", and bundler hides
#    ruby-webrick, so without it `rails server` fails with: Could not find server "".
if [ ! -x "$RM/bin/rails" ] || ! dpkg -s redmine-sqlite thin >/dev/null 2>&1; then
  debconf-set-selections <<'EOF'
redmine redmine/instances/default/dbconfig-install boolean true
redmine redmine/instances/default/database-type select sqlite3
redmine redmine/default-language select en
EOF
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2; DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends redmine redmine-sqlite thin curl >&2
fi

if alive && api_ok; then echo "READY redmine url=$URL pid=$(cat "$PIDFILE") api_key=$REDMINE_API_KEY (already running)"; exit 0; fi
stop

# setpriv execs in place (no wrapper process), so $! below is the ruby server itself
as_www() { setpriv --reuid=www-data --regid=www-data --init-groups env HOME="$DIR" RAILS_ENV=production "$@"; }

# 2) bootstrap (once per API key): REST API on, admin usable without password change, fixed API key,
#    plus an "Incident key" issue custom field (its id is written to $DIR/incident_key_cf_id)
if [ "$(cat "$DIR/bootstrapped" 2>/dev/null)" != "v2:$REDMINE_API_KEY" ]; then
  (cd "$RM" && as_www bin/rails runner "
    Setting.rest_api_enabled = '1'
    Setting.default_language = 'en'
    u = User.find_by_login('admin')
    u.update_columns(must_change_passwd: false)
    Token.where(user_id: u.id, action: 'api').delete_all
    t = Token.create!(user: u, action: 'api')
    t.update_column(:value, '$REDMINE_API_KEY')
    # custom field usable as a dedup key: GET /issues.json?cf_<id>=<key>&status_id=open
    cf = IssueCustomField.find_by(name: 'Incident key') ||
         IssueCustomField.create!(name: 'Incident key', field_format: 'string', is_for_all: true,
                                  is_filter: true, searchable: true, tracker_ids: Tracker.pluck(:id))
    File.write('$DIR/incident_key_cf_id', cf.id.to_s)
    puts 'bootstrap ok: api key set for ' + u.login + ', Incident key custom field id=' + cf.id.to_s
  ") >&2
  cp "$DB" "$DIR/pristine.sqlite3"
  echo "v2:$REDMINE_API_KEY" > "$DIR/bootstrapped"
fi

# 3) serve with thin, bound to 127.0.0.1 only
cd "$RM"
# (`bin/rails server` is not used: it insists on creating /usr/share/redmine/tmp, not writable by www-data)
nohup setpriv --reuid=www-data --regid=www-data --init-groups env HOME="$DIR" RAILS_ENV=production \
  thin start -c "$RM" -R config.ru -e production -a 127.0.0.1 -p "$REDMINE_PORT" \
  >"$DIR/redmine.log" 2>&1 &
echo $! > "$PIDFILE"
chmod 644 "$PIDFILE"

for _ in $(seq 300); do
  if api_ok; then echo "READY redmine url=$URL pid=$(cat "$PIDFILE") login=admin/admin api_key=$REDMINE_API_KEY incident_key_cf=cf_$(cat "$DIR/incident_key_cf_id")"; exit 0; fi
  alive || { echo "redmine died, log:" >&2; tail -30 "$DIR/redmine.log" >&2; exit 1; }
  sleep 0.2
done
echo "redmine did not become ready in 60s; see $DIR/redmine.log" >&2; exit 1
