#!/usr/bin/env bash
# Side-by-side benchmark: tollgate vs nginx, both answering `return 200 "ok"` with one worker and
# no access log, loaded by wrk in interleaved rounds (tollgate, nginx, tollgate, nginx, ...), so
# drift on the machine hits both alike. Prints req/s and p99 per server and the ratios.
#   ROUNDS=3 DURATION=10 CONNECTIONS=50 bash bench/run_core.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
BUILD_TARGET=tollgate bash scripts/setup.sh bench >/dev/null

work=$(mktemp -d /tmp/tollgate-bench.XXXXXX)
chmod 755 "$work"
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
tg_port=18481
ngx_port=18482
mkdir -p "$work/tg/logs" "$work/ngx/logs"

cat > "$work/tg/tollgate.conf" <<CONF
worker_processes 1;
daemon off;
error_log logs/error.log error;
pid logs/tollgate.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$tg_port;
        location / { return 200 "ok"; }
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
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$ngx_port reuseport;
        location / { return 200 "ok"; }
    }
}
CONF

build/tollgate -p "$work/tg/" -c tollgate.conf & echo $! > "$work/tollgate.pid"
/usr/sbin/nginx -p "$work/ngx/" -c nginx.conf & echo $! > "$work/nginx.pid"
for port in $tg_port $ngx_port; do
    for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

# wrk prints "Requests/sec: N" and, with --latency, "99% Xms|us|s".
run() {
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$1/" > "$work/out" 2>&1
    python3 - "$work/out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", text)
scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", text)
print(f"{rps:.0f} {float(m.group(1)) * scale:.3f} {'errors' if errors else 'ok'}")
PY
}

declare -a tg_rps tg_p99 ngx_rps ngx_p99
echo "round  server    req/s      p99(ms)  status"
for r in $(seq "$ROUNDS"); do
    read -r a b s <<<"$(run $tg_port)"; tg_rps+=("$a"); tg_p99+=("$b")
    printf "%-6s %-9s %-10s %-8s %s\n" "$r" tollgate "$a" "$b" "$s"
    read -r a b s <<<"$(run $ngx_port)"; ngx_rps+=("$a"); ngx_p99+=("$b")
    printf "%-6s %-9s %-10s %-8s %s\n" "$r" nginx "$a" "$b" "$s"
done
python3 - "${tg_rps[*]}" "${tg_p99[*]}" "${ngx_rps[*]}" "${ngx_p99[*]}" <<'PY'
import statistics, sys
tg_rps, tg_p99, ngx_rps, ngx_p99 = ([float(x) for x in a.split()] for a in sys.argv[1:5])
med = statistics.median
print(f"median  tollgate  {med(tg_rps):.0f} req/s  p99 {med(tg_p99):.3f} ms")
print(f"median  nginx     {med(ngx_rps):.0f} req/s  p99 {med(ngx_p99):.3f} ms")
print(f"ratio tollgate/nginx: req/s {med(tg_rps) / med(ngx_rps):.3f}  p99 {med(tg_p99) / med(ngx_p99):.3f}")
PY
