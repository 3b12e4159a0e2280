#!/usr/bin/env bash
# Starts a throwaway single-node Ceph (one monitor, one memstore OSD) and RGW on
# 127.0.0.1:$RGW_PORT, creates an S3 user and the test bucket, and writes $CEPH_DIR/env with the
# variables the S3 tests read (source it). Idempotent: if this cluster is already up it only makes
# sure the bucket exists. Fails loudly: any step that does not work prints the logs and exits 1.
#
#   RGW_PORT (7480)  CEPH_DIR (${TMPDIR:-/tmp}/mstore-rgw)  MSTORE_S3_BUCKET (mstore-test)
#   AWS_ACCESS_KEY_ID (testkey)  AWS_SECRET_ACCESS_KEY (testsecret)  RGW_MEM_GIB (8: memstore cap)
#
# Needs: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd (and curl).
# The monitor listens on the fixed ports 6789/3300, so one such cluster runs per machine.
set -euo pipefail
D=${CEPH_DIR:-${TMPDIR:-/tmp}/mstore-rgw}
PORT=${RGW_PORT:-7480}
AK=${AWS_ACCESS_KEY_ID:-testkey}
SK=${AWS_SECRET_ACCESS_KEY:-testsecret}
BUCKET=${MSTORE_S3_BUCKET:-mstore-test}
MEM_GIB=${RGW_MEM_GIB:-8}
ENDPOINT="http://127.0.0.1:$PORT"
export CEPH_CONF="$D/ceph.conf"

die() {
  echo "rgw-start: $*" >&2
  for f in mon osd rgw; do
    [ -s "$D/log/$f.out" ] && { echo "--- $D/log/$f.out (last lines)" >&2; tail -n 15 "$D/log/$f.out" >&2 || true; }
  done
  exit 1
}

for tool in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph curl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd curl)"
done

alive() { [ -f "$D/$1.pid" ] && kill -0 "$(cat "$D/$1.pid")" 2>/dev/null; }

# S3 request signed with SigV4; RGW wants the payload hash header with curl's signer.
s3curl() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

make_bucket() {
  local code
  code=$(s3curl -I "$ENDPOINT/$BUCKET") || true
  [ "$code" = 200 ] && return 0
  code=$(s3curl -X PUT "$ENDPOINT/$BUCKET") || true
  [ "$code" = 200 ] || die "creating bucket $BUCKET at $ENDPOINT answered HTTP $code"
}

write_env() {
  cat >"$D/env" <<ENV
export AWS_ENDPOINT_URL=$ENDPOINT
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$AK
export AWS_SECRET_ACCESS_KEY=$SK
export MSTORE_S3_BUCKET=$BUCKET
export MSTORE_TEST_S3=1
ENV
}

if alive mon && alive osd && alive rgw && curl -fs -o /dev/null --max-time 5 "$ENDPOINT/"; then
  make_bucket
  write_env
  echo "RGW already up on $ENDPOINT (bucket $BUCKET; env in $D/env)"
  exit 0
fi

# Half-dead leftovers of an earlier run: stop what is left, start fresh (the data is disposable).
if [ -d "$D" ]; then
  "$(dirname "$0")/rgw-stop.sh" >/dev/null || die "could not stop the leftovers in $D"
fi
if (exec 3<>/dev/tcp/127.0.0.1/6789) 2>/dev/null; then
  die "port 6789 is in use: another Ceph monitor runs on this machine (stop it first; only one can run)"
fi
if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then
  die "port $PORT is in use (set RGW_PORT)"
fi

mkdir -p "$D"/{mon,osd,log,run}
cat >"$CEPH_CONF" <<CONF
[global]
fsid = $(cat /proc/sys/kernel/random/uuid)
mon host = 127.0.0.1
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms bind ipv6 = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail crit = 0
paxos propose interval = 0.01
paxos min wait = 0.001
mon osd prime pg temp = false
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
keyring = /dev/null
[mon.a]
mon data = $D/mon
[osd.0]
osd data = $D/osd
osd objectstore = memstore
memstore device bytes = $((MEM_GIB * 1024 * 1024 * 1024))
osd class load list = *
osd class default list = *
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw dns name = localhost
rgw thread pool size = 64
rgw exit timeout secs = 2
# memstore keeps objects in RAM: let deleted test prefixes free it within seconds, not hours
rgw gc obj min wait = 1
rgw gc processor period = 5
CONF

FSID=$(awk '/^fsid/{print $3}' "$CEPH_CONF")
monmaptool --create --clobber --fsid "$FSID" --add a 127.0.0.1 "$D/monmap" >"$D/log/monmaptool.out" 2>&1 || die "monmaptool failed"
ceph-mon -c "$CEPH_CONF" -i a --mkfs --monmap "$D/monmap" --keyring /dev/null >"$D/log/mon-mkfs.out" 2>&1 || die "ceph-mon --mkfs failed"
touch "$D/mon/keyring"
ceph-mon -c "$CEPH_CONF" -i a -f >"$D/log/mon.out" 2>&1 &
echo $! >"$D/mon.pid"
OSD_ID=$(timeout 60 ceph -c "$CEPH_CONF" osd create 2>>"$D/log/mon.out") || die "the monitor did not answer 'osd create'"
timeout 60 ceph -c "$CEPH_CONF" osd crush add "osd.$OSD_ID" 1 root=default >/dev/null 2>&1 || die "osd crush add failed"
ceph-osd -c "$CEPH_CONF" -i "$OSD_ID" --mkfs >"$D/log/osd-mkfs.out" 2>&1 || die "ceph-osd --mkfs failed"
# memstore keeps objects in RAM; a fixed mmap threshold makes glibc hand freed object memory back
# to the system (with the default sliding threshold the OSD kept its peak, ~2x the data, after deletes)
MALLOC_MMAP_THRESHOLD_=131072 ceph-osd -c "$CEPH_CONF" -i "$OSD_ID" -f >"$D/log/osd.out" 2>&1 &
echo $! >"$D/osd.pid"
radosgw -c "$CEPH_CONF" -n client.rgw -f >"$D/log/rgw.out" 2>&1 &
echo $! >"$D/rgw.pid"

up=
for _ in $(seq 1 240); do
  for p in mon osd rgw; do alive "$p" || die "$p exited during start"; done
  if curl -fs -o /dev/null --max-time 2 "$ENDPOINT/"; then up=1; break; fi
  sleep 0.25
done
[ -n "$up" ] || die "RGW did not answer on $ENDPOINT within 60 s"

timeout 60 radosgw-admin -c "$CEPH_CONF" user create --uid=test --display-name=test \
  --access-key="$AK" --secret="$SK" >"$D/log/user.out" 2>&1 || die "radosgw-admin user create failed: $(tail -n 3 "$D/log/user.out")"
make_bucket
write_env
echo "RGW up on $ENDPOINT (bucket $BUCKET; env in $D/env; pids: mon $(cat "$D/mon.pid") osd $(cat "$D/osd.pid") rgw $(cat "$D/rgw.pid"))"
