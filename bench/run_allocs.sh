#!/usr/bin/env bash
# Heap allocations per proxied request: tollgate and nginx, each proxying to the same origin
# with the topology of bench/run_proxy.sh (one worker, keepalive pool of 32, access log off),
# run with bench/malloc_count.c preloaded. The counts per request barely depend on machine
# load, unlike req/s, so they compare builds on a busy machine.
#   BUILD_DIR=build REQUESTS=20000 CONNECTIONS=50 bash bench/run_allocs.sh
# Prints, per server: malloc (incl. calloc/new/aligned), realloc and free calls per request and
# bytes requested per request, over a wrk run after a warm-up.
# Every process is started here and stopped on exit (TERM, then KILL after a bounded wait).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
DURATION=${DURATION:-3}
CONNECTIONS=${CONNECTIONS:-50}
BASE_PORT=${BASE_PORT:-18511}
[ -x "$BUILD_DIR/tollgate" ] || { echo "run_allocs: no $BUILD_DIR/tollgate" >&2; exit 1; }

origin_port=$BASE_PORT
tg_port=$((BASE_PORT + 1))
ngx_port=$((BASE_PORT + 2))
work=$(mktemp -d /tmp/tollgate-bench-allocs.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/counts" "$work/origin/logs" "$work/tg/logs" "$work/ngx/logs"
chmod 1777 "$work/counts"   # workers may run as another user
cp "$BUILD_DIR/tollgate" "$work/tollgate"
cc -O2 -shared -fPIC -o "$work/malloc_count.so" bench/malloc_count.c
echo "tollgate: $BUILD_DIR/tollgate, built $(date -u -r "$BUILD_DIR/tollgate" '+%F %T UTC')"

pids=()
cleanup() {
    local p alive
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "run_allocs: $*" >&2; exit 1; }
for port in $origin_port $tg_port $ngx_port; do
    if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then die "port $port in use (set BASE_PORT)"; fi
done

body=$(python3 -c 'import string; s=(string.ascii_letters+string.digits)*20; print(s[:1024])')
cat > "$work/origin/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log logs/error.log error;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$origin_port backlog=4096;
        location / { default_type text/plain; return 200 "$body"; }
    }
}
CONF
cat > "$work/tg/tollgate.conf" <<CONF
worker_processes 1;
daemon off;
error_log logs/error.log error;
pid logs/tollgate.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream u { server 127.0.0.1:$origin_port; keepalive 32; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$tg_port backlog=4096;
        location / { proxy_pass http://u; }
    }
}
CONF
cat > "$work/ngx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log logs/error.log error;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream u { server 127.0.0.1:$origin_port; keepalive 32; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$ngx_port backlog=4096;
        location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF

/usr/sbin/nginx -p "$work/origin/" -c nginx.conf & pids+=($!)
env MALLOC_COUNT_DIR="$work/counts" LD_PRELOAD="$work/malloc_count.so" \
    "$work/tollgate" -p "$work/tg/" -c tollgate.conf & pids+=($!); tg_pid=$!
env MALLOC_COUNT_DIR="$work/counts" LD_PRELOAD="$work/malloc_count.so" \
    /usr/sbin/nginx -p "$work/ngx/" -c nginx.conf & pids+=($!); ngx_pid=$!
for port in $origin_port $tg_port $ngx_port; do
    up=0
    for _ in $(seq 50); do
        (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && { up=1; break; }
        sleep 0.1
    done
    ((up)) || die "nothing listening on $port after 5 s"
done
worker_of() { cat /proc/"$1"/task/*/children 2>/dev/null | awk '{print $1}'; }
tg_worker=$(worker_of $tg_pid)
ngx_worker=$(worker_of $ngx_pid)
[ -n "$tg_worker" ] && [ -n "$ngx_worker" ] || die "workers not found"

read_counts() { python3 -c '
import struct, sys
print(*struct.unpack("<4Q", open(sys.argv[1], "rb").read(32)))' "$work/counts/$1"; }

printf "%-9s %10s %12s %12s %12s %12s\n" server requests "malloc/req" "realloc/req" "free/req" \
    "bytes/req"
for s in tollgate nginx; do
    if [ $s = tollgate ]; then port=$tg_port; w=$tg_worker; else port=$ngx_port; w=$ngx_worker; fi
    curl -sS --max-time 5 -o /dev/null "http://127.0.0.1:$port/" || die "$s did not answer"
    wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1 || true  # warm-up
    sleep 0.5
    [ -f "$work/counts/$w" ] || die "no counters for $s worker $w"
    before=$(read_counts "$w")
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$port/" > "$work/out" 2>&1 || true
    sleep 0.5   # wrk's closes: counted, as they are part of serving
    after=$(read_counts "$w")
    reqs=$(grep -oE '[0-9]+ requests in' "$work/out" | awk '{print $1}')
    grep -q 'Non-2xx' "$work/out" && die "$s: non-2xx answers: $(cat "$work/out")"
    python3 - "$s" "$reqs" "$before" "$after" <<'PY'
import sys
s, reqs = sys.argv[1], int(sys.argv[2])
b = list(map(int, sys.argv[3].split())); a = list(map(int, sys.argv[4].split()))
d = [(y - x) / reqs for x, y in zip(b, a)]
print(f"{s:<9} {reqs:>10} {d[0]:>12.2f} {d[1]:>12.2f} {d[2]:>12.2f} {d[3]:>12.0f}")
PY
done
