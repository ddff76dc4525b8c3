#!/usr/bin/env bash
# Rate-limit overhead: tollgate and nginx serving the same small static file with 0, 1 and 3
# limit_req limits on the location (one worker each, access log off), loaded by wrk in
# interleaved rounds (tg/0, ngx/0, tg/1, ngx/1, tg/3, ngx/3, repeat) so drift on the machine
# hits all alike. The limits never reject (rate 999999999r/s, burst=1000000 nodelay: both
# servers' leaky bucket then only drains), so what is measured is the limit check itself:
# key evaluation, hash, zone lock, bucket update. The keys differ per limit ($remote_addr,
# $uri, $host). Static content, not `return`: `return` answers in the rewrite phase, before
# any limit runs (nginx and tollgate alike).
#
# Prints req/s, p99 and the worker's CPU time per request per run, the medians, the overhead
# per limit against the same server's 0-limit baseline, and the ratios tollgate/nginx.
#   ROUNDS=3 DURATION=10 CONNECTIONS=50 bash bench/run_limits.sh
#   BUILD_DIR=build-x bash bench/run_limits.sh    # build and measure build-x/tollgate
#   TOLLGATE_BIN=/path/to/tollgate bash bench/run_limits.sh   # measure this binary, no build
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
BASE_PORT=${BASE_PORT:-18521}
if [ -z "${TOLLGATE_BIN:-}" ]; then
    BUILD_TARGET=tollgate BUILD_DIR=${BUILD_DIR:-build} bash scripts/setup.sh bench >/dev/null
fi
tg_bin=${TOLLGATE_BIN:-${BUILD_DIR:-build}/tollgate}

work=$(mktemp -d /tmp/tollgate-bench-limits.XXXXXX)
chmod 755 "$work"
cp "$tg_bin" "$work/tollgate"  # a rebuild during the run cannot swap the binary underneath
pids=()
cleanup() {
    local p alive
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do  # up to 5 s for a graceful exit
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
die() { echo "run_limits: $*" >&2; exit 1; }

# Ports: tollgate 0/1/3 limits, then nginx 0/1/3.
tg_ports=("$BASE_PORT" "$((BASE_PORT + 1))" "$((BASE_PORT + 2))")
ngx_ports=("$((BASE_PORT + 3))" "$((BASE_PORT + 4))" "$((BASE_PORT + 5))")
for port in "${tg_ports[@]}" "${ngx_ports[@]}"; do
    if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        die "port $port is already in use (set BASE_PORT)"
    fi
done
echo "tollgate: $tg_bin, built $(date -u -r "$tg_bin" '+%F %T UTC');" \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$work/tg/logs" "$work/ngx/logs" "$work/html"
printf 'ok\n' > "$work/html/index.html"
chmod -R a+rX "$work/html"

# The limit_req lines of a location with N limits (same text for both servers).
limits() {
    local n=$1 out="" keys=(one two three)
    for ((i = 0; i < n; i++)); do
        out+="limit_req zone=${keys[$i]} burst=1000000 nodelay; "
    done
    echo "$out"
}
zones='limit_req_zone $remote_addr zone=one:10m rate=999999999r/s;
    limit_req_zone $uri zone=two:10m rate=999999999r/s;
    limit_req_zone $host zone=three:10m rate=999999999r/s;'
servers() {  # $1: listen suffix; $2..: ports for 0, 1, 3 limits
    local suffix=$1 n ports=("${@:2}") i=0
    for n in 0 1 3; do
        cat <<SRV
    server {
        listen 127.0.0.1:${ports[$i]}$suffix;
        root $work/html;
        location / { $(limits $n) }
    }
SRV
        i=$((i + 1))
    done
}
main_conf() {  # $1: pid file name
    cat <<CONF
worker_processes 1;
daemon off;
error_log logs/error.log error;
pid logs/$1;
events { worker_connections 4096; }
CONF
}
{
    main_conf tollgate.pid
    echo "http {"
    echo "    access_log off;"
    echo "    keepalive_requests 100000;"
    echo "    $zones"
    servers "" "${tg_ports[@]}"
    echo "}"
} > "$work/tg/tollgate.conf"
{
    main_conf nginx.pid
    echo "http {"
    echo "    access_log off;"
    echo "    keepalive_requests 100000;"
    echo "    $zones"
    servers " reuseport" "${ngx_ports[@]}"
    echo "}"
} > "$work/ngx/nginx.conf"

"$work/tollgate" -p "$work/tg/" -c tollgate.conf & pids+=($!)
/usr/sbin/nginx -p "$work/ngx/" -c nginx.conf & pids+=($!)
for port in "${tg_ports[@]}" "${ngx_ports[@]}"; do
    up=0
    for _ in $(seq 50); do
        (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && { up=1; break; }
        sleep 0.1
    done
    ((up)) || die "nothing listens on $port: $(cat "$work"/*/logs/error.log 2>/dev/null)"
done
for port in "${tg_ports[@]}" "${ngx_ports[@]}"; do  # every server serves the file (no 429)
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/index.html")
    [ "$code" = 200 ] || die "port $port answered $code"
done

# The worker of a master (its only child).
worker_of() { pgrep -P "$1" | head -1; }
# CPU time (utime + stime, clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
tg_worker=$(worker_of "${pids[0]}")
ngx_worker=$(worker_of "${pids[1]}")
[ -n "$tg_worker" ] && [ -n "$ngx_worker" ] || die "no worker processes"
hz=$(getconf CLK_TCK)

# wrk prints "N requests in", "Requests/sec: N" and, with --latency, "99% Xms|us|s". Any non-2xx
# (a 429 would mean a limit rejected) marks the run "errors". Besides req/s and p99 (both
# sensitive to what else runs on the machine), the worker's CPU time per request is measured:
# it is what a limit adds, and other load barely moves it.
run() {  # $1: port, $2: the worker's pid
    local before after
    before=$(cpu_ticks "$2")
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$1/index.html" \
        > "$work/out" 2>&1
    after=$(cpu_ticks "$2")
    python3 - "$work/out" "$((after - before))" "$hz" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
n = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", text)
scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", text)
cpu_us = ticks * 1e6 / hz / max(n, 1)
print(f"{rps:.0f} {float(m.group(1)) * scale:.3f} {cpu_us:.2f} {'errors' if errors else 'ok'}")
PY
}

results="$work/results"
: > "$results"
echo "round  server    limits  req/s      p99(ms)  cpu-us/req  status"
for r in $(seq "$ROUNDS"); do
    for i in 0 1 2; do
        n=$( (( i == 2 )) && echo 3 || echo "$i")
        for server in tollgate nginx; do
            if [ $server = tollgate ]; then
                port=${tg_ports[$i]} wpid=$tg_worker
            else
                port=${ngx_ports[$i]} wpid=$ngx_worker
            fi
            read -r a b c s <<<"$(run "$port" "$wpid")"
            printf "%-6s %-9s %-7s %-10s %-8s %-11s %s\n" "$r" "$server" "$n" "$a" "$b" "$c" "$s"
            echo "$server $n $a $b $c $s" >> "$results"
        done
    done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = statistics.median
rps, p99, cpu = {}, {}, {}
for server, n, a, b, c, _ in rows:
    k = (server, int(n))
    rps.setdefault(k, []).append(float(a))
    p99.setdefault(k, []).append(float(b))
    cpu.setdefault(k, []).append(float(c))
print()
print("median  limits  tollgate: req/s  p99(ms)  cpu-us/req   nginx: req/s  p99(ms)  cpu-us/req"
      "   tg/ngx: req/s  p99")
for n in (0, 1, 3):
    t, g = med(rps[("tollgate", n)]), med(rps[("nginx", n)])
    tp, gp = med(p99[("tollgate", n)]), med(p99[("nginx", n)])
    tc, gc = med(cpu[("tollgate", n)]), med(cpu[("nginx", n)])
    print(f"        {n:<7} {t:>15.0f} {tp:>8.3f} {tc:>11.2f} {g:>14.0f} {gp:>8.3f} {gc:>11.2f}"
          f" {t / g:>15.3f} {tp / gp:>5.3f}")
print()
print("overhead vs the same server's 0-limit baseline (positive = slower / more CPU):")
for server in ("tollgate", "nginx"):
    base_r, base_c = med(rps[(server, 0)]), med(cpu[(server, 0)])
    for n in (1, 3):
        dr = (base_r / med(rps[(server, n)]) - 1) * 100
        dc = (med(cpu[(server, n)]) / base_c - 1) * 100
        print(f"  {server:<9} {n} limit(s): req/s {dr:+.1f}% ({dr / n:+.1f}% per limit),"
              f" cpu/req {dc:+.1f}% ({dc / n:+.1f}% per limit)")
PY
if grep -q errors "$results"; then echo "run_limits: some runs had non-2xx responses or socket errors"; fi
