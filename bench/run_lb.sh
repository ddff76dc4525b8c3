#!/usr/bin/env bash
# Load-balancing benchmark: what least_conn, hash, the circuit breaker and active health checks
# cost against plain (smooth weighted) round robin, side by side in one tollgate.
#
# Topology:
#   wrk -t1 -cN  ->  tollgate (WORKERS workers, access log off), one location per method:
#                      /rr  round robin                 /lc  least_conn
#                      /hash hash $remote_port consistent /hc  round robin + health_check 1s
#                      /cb  round robin + circuit_breaker
#                ->  keepalive pool (32 idle connections per upstream and worker)
#                ->  three origins (one nginx process, one worker, three ports, keepalive)
#                    answering `return 200 "<1024-byte body>"` (the health probes too)
# Rounds are interleaved (rr, lc, hash, hc, cb, repeat) so drift on the machine hits all alike.
# Prints req/s, p50, p99 and the tollgate workers' CPU per request for each method and round,
# then the medians and each method's paired per-round ratio to round robin.
#
#   ROUNDS=3 DURATION=10 CONNECTIONS=50 WARMUP=2 WORKERS=1 bash bench/run_lb.sh
#   ROUNDS=0 bash bench/run_lb.sh     # only start everything and check the bytes (no load)
# Every process is started here and stopped on exit (TERM, then KILL after a bounded wait).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-2}
WORKERS=${WORKERS:-1}
BASE_PORT=${BASE_PORT:-18591}
BUILD_TARGET=tollgate bash scripts/setup.sh bench >/dev/null

o1=$BASE_PORT
o2=$((BASE_PORT + 1))
o3=$((BASE_PORT + 2))
tg_port=$((BASE_PORT + 3))

work=$(mktemp -d /tmp/tollgate-bench-lb.XXXXXX)
chmod 755 "$work"
tg_bin=${TOLLGATE_BIN:-${BUILD_DIR:-build}/tollgate}
cp "$tg_bin" "$work/tollgate"
echo "tollgate: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain \
    -- core worker master modules 2>/dev/null | grep -q . && echo ' + uncommitted changes'), built" \
    "$(date -u -r "$tg_bin" '+%F %T UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
start_of() { awk '{print $22}' /proc/"$1"/stat 2>/dev/null; }
pids=()
child_pids=()
cleanup() {
    local p alive entry
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for entry in "${child_pids[@]}"; do
        p=${entry%%:*}
        [ "$(start_of "$p")" = "${entry#*:}" ] && kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "run_lb: $*" >&2; exit 1; }

for port in $o1 $o2 $o3 $tg_port; do
    if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        die "port $port is already in use (set BASE_PORT)"
    fi
done

body=$(python3 -c 'import string; s=(string.ascii_letters+string.digits)*20; print(s[:1024])')
[ ${#body} -eq 1024 ] || die "body is ${#body} bytes"
mkdir -p "$work/origin/logs" "$work/tg/logs"

cat > "$work/origin/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log logs/error.log error;
pid logs/nginx.pid;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$o1 backlog=4096;
        listen 127.0.0.1:$o2 backlog=4096;
        listen 127.0.0.1:$o3 backlog=4096;
        location / { default_type text/plain; return 200 "$body"; }
    }
}
CONF

servers="server 127.0.0.1:$o1; server 127.0.0.1:$o2; server 127.0.0.1:$o3;"
pool="keepalive 32; keepalive_requests 1000000;"
cat > "$work/tg/tollgate.conf" <<CONF
worker_processes $WORKERS;
daemon off;
error_log logs/error.log notice;
pid logs/tollgate.pid;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream rr   { $servers $pool }
    upstream lc   { least_conn; $servers $pool }
    upstream hash { hash \$remote_port consistent; $servers $pool }
    upstream hc   { $servers $pool health_check uri=/health interval=1s timeout=1s; }
    upstream cb   { $servers $pool circuit_breaker failures=5 cooldown=30s; }
    server {
        listen 127.0.0.1:$tg_port backlog=4096;
        location /rr   { proxy_pass http://rr; }
        location /lc   { proxy_pass http://lc; }
        location /hash { proxy_pass http://hash; }
        location /hc   { proxy_pass http://hc; }
        location /cb   { proxy_pass http://cb; }
    }
}
CONF

/usr/sbin/nginx -p "$work/origin/" -c nginx.conf & pids+=($!); origin_pid=$!
"$work/tollgate" -p "$work/tg/" -c tollgate.conf & pids+=($!); tg_pid=$!
for port in $o1 $o2 $o3 $tg_port; do
    up=0
    for _ in $(seq 50); do
        (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && { up=1; break; }
        sleep 0.1
    done
    ((up)) || die "nothing listening on $port after 5 s (see $work/*/logs/error.log)"
done
sleep 0.5
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || die "process $p exited at start"; done
tg_workers=()
for p in $origin_pid $tg_pid; do
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
        child_pids+=("$c:$(start_of "$c")")
        [ "$p" = "$tg_pid" ] && tg_workers+=("$c")
    done
done
[ ${#tg_workers[@]} -eq "$WORKERS" ] || die "expected $WORKERS tollgate workers"

methods=(rr lc hash hc cb)
for m in "${methods[@]}"; do
    curl -sS --max-time 5 -o "$work/body.$m" "http://127.0.0.1:$tg_port/$m/" || die "curl /$m failed"
    [ "$(cat "$work/body.$m")" = "$body" ] || die "/$m did not return the origin's body"
done
echo "bytes check: every method returns the origin's 1024-byte body"
((ROUNDS > 0)) || exit 0  # ROUNDS=0: a smoke check of the setup, no load

# CPU ticks (utime + stime) of all tollgate workers.
cpu_ticks() { local t=0 p; for p in "${tg_workers[@]}"; do t=$((t + $(awk '{print $14 + $15}' /proc/"$p"/stat))); done; echo $t; }
run() {  # method seconds
    local t0 t1
    t0=$(cpu_ticks)
    wrk -t1 -c"$CONNECTIONS" -d"${2}s" --timeout 5s --latency "http://127.0.0.1:$tg_port/$1/" \
        > "$work/out" 2>&1 || true
    t1=$(cpu_ticks)
    python3 - "$work/out" $((t1 - t0)) "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
def lat(p):
    m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)\b" % p, text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
m = re.search(r"Requests/sec:\s+([\d.]+)", text)
rps = float(m.group(1)) if m else 0.0
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: (.*)", text)
status = "ok" if m else "wrk-failed"
if bad:
    status = f"non2xx={bad.group(1)}"
elif sock:
    status = "sockerr:" + sock.group(1).replace(" ", "")
m = re.search(r"(\d+) requests in", text)
reqs = int(m.group(1)) if m else 0
cpu_us = ticks / hz * 1e6 / reqs if reqs else float("nan")
print(f"{rps:.0f} {lat(50):.3f} {lat(99):.3f} {cpu_us:.1f} {status}")
PY
}

if ((WARMUP > 0)); then
    for m in "${methods[@]}"; do run "$m" "$WARMUP" >/dev/null; done
fi
echo
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS interleaved rounds, warmup ${WARMUP}s each," \
     "$WORKERS tollgate worker(s)"
printf "%-6s %-6s %10s %9s %9s %11s  %s\n" round method "req/s" "p50(ms)" "p99(ms)" "cpu(us/req)" status
: > "$work/results"
for r in $(seq "$ROUNDS"); do
    for m in "${methods[@]}"; do
        read -r a b c u st <<<"$(run "$m" "$DURATION")"
        printf "%-6s %-6s %10s %9s %9s %11s  %s\n" "$r" "$m" "$a" "$b" "$c" "$u" "$st"
        echo "$m $a $b $c $u $st" >> "$work/results"
    done
done
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || die "process $p died during the run"; done
probes=$(grep -c "health check" "$work/tg/logs/error.log" || true)

echo
echo "=== summary: balancers over three origins, 1 KB body, keepalive pools ==="
python3 - "$work/results" "$CONNECTIONS" "$DURATION" "$ROUNDS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = statistics.median
res = {}
for m, rps, p50, p99, cpu, st in rows:
    d = res.setdefault(m, {"rps": [], "p50": [], "p99": [], "cpu": [], "st": set()})
    d["rps"].append(float(rps)); d["p50"].append(float(p50)); d["p99"].append(float(p99))
    d["cpu"].append(float(cpu)); d["st"].add(st)
print(f"connections {sys.argv[2]}, {sys.argv[4]} rounds x {sys.argv[3]} s; medians over rounds")
print(f"{'method':<6} {'req/s':>9} {'p50(ms)':>8} {'p99(ms)':>8} {'cpu(us/req)':>11} "
      f"{'paired req/s÷rr':>16} {'cpu÷rr':>7}  status")
rr = res["rr"]
for m in ("rr", "lc", "hash", "hc", "cb"):
    d = res[m]
    paired = med([a / b for a, b in zip(d["rps"], rr["rps"])])
    print(f"{m:<6} {med(d['rps']):>9.0f} {med(d['p50']):>8.3f} {med(d['p99']):>8.3f} "
          f"{med(d['cpu']):>11.1f} {paired:>16.3f} {med(d['cpu']) / med(rr['cpu']):>7.3f}  "
          f"{','.join(sorted(d['st']))}")
PY
echo "health-check failures logged during the run: $probes (expected 0)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
