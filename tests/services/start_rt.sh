#!/usr/bin/env bash
# Adapted from the tested loopback recipe; ports default high to stay clear of other services.
# Start Request Tracker 5.0.3 (Debian bookworm packages, sqlite3 backend, rt-server/Starlet)
# on loopback only, with REST 2.0, an auth token for root and an "Incident key" ticket custom field.
#   usage: start_rt.sh [start|stop|status|reset]
#     reset = stop + restore the pristine (just-bootstrapped) database, then start
# Env knobs:
#   SHELLS_DIR   state root              (default /tmp/aims-services)
#   RT_PORT      HTTP port on 127.0.0.1  (default 18080)
#   RT_WORKERS   Starlet workers         (default 2; RT's default is 10 x ~210 MB RSS)
# Credentials: root / password (basic auth works on REST2);
#   token auth: "Authorization: token $(cat $SHELLS_DIR/rt/token)"
# Needs root for the first run (apt-get install, debconf preseed, config drop-in). Server runs as www-data.
set -euo pipefail
SHELLS_DIR=${SHELLS_DIR:-/tmp/aims-services}
RT_PORT=${RT_PORT:-18080}
RT_WORKERS=${RT_WORKERS:-2}
DIR=$SHELLS_DIR/rt
PIDFILE=$DIR/rt.pid
URL=http://127.0.0.1:$RT_PORT
RTLIB=/usr/share/request-tracker5/lib
DB=/var/lib/dbconfig-common/sqlite3/request-tracker5/rtdb
cmd=${1:-start}

alive() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
stop() {
  if alive; then kill "$(cat "$PIDFILE")"; for _ in $(seq 75); do alive || break; sleep 0.2; done; fi
  rm -f "$PIDFILE"
}
api_ok() { curl -fsS -u root:password "$URL/REST/2.0/queue/General" 2>/dev/null | grep -q '"Name" : "General"'; }

case $cmd in
  stop) stop; echo "rt stopped"; exit 0 ;;
  status) if alive && api_ok; then echo "rt running url=$URL"; exit 0; fi; echo "rt not running"; exit 1 ;;
  reset) stop; [ -f "$DIR/pristine.sqlite3" ] && install -o root -g www-data -m 660 "$DIR/pristine.sqlite3" "$DB" ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status|reset]" >&2; exit 2 ;;
esac
mkdir -p "$DIR"; chown www-data:www-data "$DIR"

# 1) install (once). RT's postinst creates + initialises the sqlite DB through dbconfig-common.
#    Note: request-tracker5 Depends on default-mta => exim4-daemon-light gets installed (not started).
if ! dpkg -s request-tracker5 rt5-db-sqlite rt5-standalone >/dev/null 2>&1; then
  debconf-set-selections <<'EOF'
request-tracker5 request-tracker5/dbconfig-install boolean true
request-tracker5 request-tracker5/database-type select sqlite3
request-tracker5 request-tracker5/initial-root-password password password
request-tracker5 request-tracker5/rtname string aims-tests
request-tracker5 request-tracker5/organization string aims-tests.local
request-tracker5 request-tracker5/correspondaddress string rt@localhost
request-tracker5 request-tracker5/commentaddress string rt-comment@localhost
request-tracker5 request-tracker5/webbaseurl string http://127.0.0.1:18080
request-tracker5 request-tracker5/install-cronjobs boolean false
request-tracker5 request-tracker5/handle-siteconfig-permissions boolean true
EOF
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2; DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends \
    request-tracker5 rt5-db-sqlite rt5-standalone curl >&2
fi

if alive && api_ok; then echo "READY rt url=$URL pid=$(cat "$PIDFILE") rest2=$URL/REST/2.0 (already running)"; exit 0; fi
stop

# 2) site config drop-in: serve at / on 127.0.0.1:$RT_PORT, never send real mail, log to stderr only
cat > /etc/request-tracker5/RT_SiteConfig.d/90-aims-tests.pm <<EOF
Set(\$WebPath, "");
Set(\$WebDomain, "127.0.0.1");
Set(\$WebPort, $RT_PORT);
Set(\$WebBaseURL, "http://127.0.0.1:$RT_PORT");
Set(\$MailCommand, "mbox");          # outgoing mail -> mbox files in /var/lib/request-tracker5
Set(\$LogToSyslog, undef);
Set(\$LogToSTDERR, "warning");
1;
EOF
chmod 644 /etc/request-tracker5/RT_SiteConfig.d/90-aims-tests.pm
# the (empty) main RT_SiteConfig.pm is root-only 0600; let www-data read it to avoid a startup warning
chgrp www-data /etc/request-tracker5/RT_SiteConfig.pm && chmod 640 /etc/request-tracker5/RT_SiteConfig.pm

as_www() { setpriv --reuid=www-data --regid=www-data --init-groups env HOME="$DIR" "$@"; }

# 3) bootstrap (once): auth token for root + global "Incident key" ticket custom field
if [ ! -s "$DIR/token" ]; then
  as_www perl -I"$RTLIB" -e '
    use strict; use warnings; use RT; RT::LoadConfig(); RT::Init();
    my $root = RT::User->new(RT->SystemUser); $root->Load("root") or die "no root user";
    my $tok = RT::AuthToken->new(RT::CurrentUser->new($root));
    my ($id, $msg, $auth) = $tok->Create(Owner => $root->Id, Description => "aims-agent tests");
    die "token: $msg" unless $id;
    my $cf = RT::CustomField->new(RT->SystemUser);
    $cf->LoadByName(Name => "Incident key", LookupType => "RT::Queue-RT::Ticket");
    unless ($cf->Id) {
      my ($ok, $m) = $cf->Create(Name => "Incident key", Type => "Freeform", MaxValues => 1,
                                 LookupType => "RT::Queue-RT::Ticket");
      die "cf: $m" unless $ok;
      my $global = RT::Queue->new(RT->SystemUser);          # Id 0 == apply globally
      ($ok, $m) = $cf->AddToObject($global); die "cf apply: $m" unless $ok;
    }
    open my $fh, ">", "'"$DIR"'/token" or die $!; print $fh $auth; close $fh;
    print STDERR "bootstrap ok: token for root, custom field id ", $cf->Id, "\n";
  ' >&2
  cp "$DB" "$DIR/pristine.sqlite3"
fi

# 4) serve: rt-server picks Starlet (preforking); --max-workers keeps it light on small boxes
cd "$DIR"
nohup setpriv --reuid=www-data --regid=www-data --init-groups env HOME="$DIR" \
  /usr/share/request-tracker5/libexec/rt-server --host 127.0.0.1 --port "$RT_PORT" --max-workers "$RT_WORKERS" \
  >"$DIR/rt.log" 2>&1 &
echo $! > "$PIDFILE"

for _ in $(seq 300); do
  if api_ok; then echo "READY rt url=$URL pid=$(cat "$PIDFILE") rest2=$URL/REST/2.0 login=root/password token_file=$DIR/token"; exit 0; fi
  alive || { echo "rt died, log:" >&2; tail -30 "$DIR/rt.log" >&2; exit 1; }
  sleep 0.2
done
echo "rt did not become ready in 60s; see $DIR/rt.log" >&2; exit 1
