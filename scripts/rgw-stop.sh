#!/usr/bin/env bash
# Stops the throwaway cluster that scripts/rgw-start.sh started (only the processes named in its
# pid files) and deletes its data. Idempotent: nothing running is not an error. Exits 1 if a
# process would not die.
set -uo pipefail
D=${CEPH_DIR:-${TMPDIR:-/tmp}/mstore-rgw}
[ -d "$D" ] || exit 0
failed=
for f in rgw osd mon; do
  [ -f "$D/$f.pid" ] || continue
  P=$(cat "$D/$f.pid")
  # only our own daemon: the pid must still belong to the program we started
  if kill -0 "$P" 2>/dev/null && grep -qE "(ceph-mon|ceph-osd|radosgw)" "/proc/$P/cmdline" 2>/dev/null; then
    kill "$P" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$P" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$P" 2>/dev/null; then
      kill -9 "$P" 2>/dev/null
      sleep 0.2
      kill -0 "$P" 2>/dev/null && { echo "rgw-stop: $f (pid $P) would not die" >&2; failed=1; }
    fi
  fi
  rm -f "$D/$f.pid"
done
# daemons of this cluster whose pid file is gone (a start that died half-way) still name its config
for P in $(pgrep -f -- "-c $D/ceph.conf" 2>/dev/null); do
  grep -qE "(ceph-mon|ceph-osd|radosgw)" "/proc/$P/cmdline" 2>/dev/null || continue
  kill -9 "$P" 2>/dev/null
done
[ -n "$failed" ] && exit 1
rm -rf "$D"
echo "RGW stopped"
