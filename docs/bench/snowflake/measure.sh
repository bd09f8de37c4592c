#!/bin/bash
# Memory of sparse 64-bit (snowflake-style) audiences: bytes per ID in the
# Redis snapshot and in the near-cache, and the resident memory of a serving
# process that holds them.
#
#   cargo build --release
#   docs/bench/snowflake/measure.sh 1000000 10000000 | tee docs/bench/snowflake/results.txt
#
# For each size it starts a private redis-server (loopback, no persistence,
# temp dir), uploads the IDs through a writer instance (near-cache off), then
# starts a separate reader instance with the near-cache on and reads, once it
# holds the audience: guestlist_cache_bytes, and the reader's VmRSS and VmHWM
# from /proc. The reader never parsed an upload, so its memory is what
# serving the audience costs.
set -euo pipefail
BIN=${GUESTLIST_BIN:-./target/release/guestlist}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export GUESTLIST_ADMIN_TOKEN=snowflake-measure-token-0123
AUTH="authorization: Bearer $GUESTLIST_ADMIN_TOKEN"
wait_ready() { for _ in $(seq 300); do curl -sf "localhost:$1/readyz" >/dev/null && return; sleep 0.1; done; echo "instance on $1 never ready" >&2; exit 1; }
metric() { curl -s "localhost:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }

echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) $(redis-server --version | cut -d' ' -f3)"
printf '%-10s %14s %12s %14s %12s %12s %12s\n' ids snapshot_B B_per_id cache_B B_per_id reader_rss reader_hwm
for N in "$@"; do
  RPORT=$(free_port)
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --daemonize yes --logfile "$WORK/redis.log" >/dev/null
  python3 - "$N" > "$WORK/ids.txt" <<'PY'
import random, sys
n = int(sys.argv[1]); rng = random.Random(42); ids = set()
# A millisecond timestamp over one year above 22 bits of worker and sequence.
while len(ids) < n:
    ids.add(((1_700_000_000_000 + rng.randrange(31_536_000_000)) << 22) | rng.randrange(1 << 22))
sys.stdout.write("\n".join(map(str, ids)) + "\n")
PY
  WPORT=$(free_port)
  "$BIN" serve --store "redis://127.0.0.1:$RPORT" --near-cache off --listen "127.0.0.1:$WPORT" \
    --max-upload-bytes 1000000000 > "$WORK/writer.log" 2>&1 &
  WRITER=$!
  wait_ready "$WPORT"
  curl -sf -H "$AUTH" -H 'content-type: application/json' "localhost:$WPORT/v1/campaigns" \
    -d '{"id":"snow","name":"snowflakes","starts_at":"2020-01-01T00:00:00Z","ends_at":"2099-01-01T00:00:00Z"}' >/dev/null
  curl -sf -H "$AUTH" -H 'content-type: text/plain' -X PUT --data-binary "@$WORK/ids.txt" \
    "localhost:$WPORT/v1/campaigns/snow/audience" >/dev/null
  kill "$WRITER"; wait "$WRITER" 2>/dev/null || true
  KEY=$(redis-cli -p "$RPORT" --scan --pattern '*:snapshot:*' | head -1)
  SNAP=$(redis-cli -p "$RPORT" STRLEN "$KEY")
  RDPORT=$(free_port)
  "$BIN" serve --store "redis://127.0.0.1:$RPORT" --near-cache on --near-cache-max-bytes 1000000000 \
    --listen "127.0.0.1:$RDPORT" > "$WORK/reader.log" 2>&1 &
  READER=$!
  wait_ready "$RDPORT"
  for _ in $(seq 600); do [ "$(metric "$RDPORT" guestlist_cache_ids)" = "$N" ] && break; sleep 0.1; done
  CACHE=$(metric "$RDPORT" guestlist_cache_bytes)
  RSS=$(awk '/VmRSS/ {print $2 " kB"}' "/proc/$READER/status")
  HWM=$(awk '/VmHWM/ {print $2 " kB"}' "/proc/$READER/status")
  printf '%-10s %14s %12.2f %14s %12.2f %12s %12s\n' "$N" "$SNAP" "$(echo "$SNAP/$N" | bc -l)" \
    "$CACHE" "$(echo "$CACHE/$N" | bc -l)" "$RSS" "$HWM"
  kill "$READER"; wait "$READER" 2>/dev/null || true
  redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
done
