#!/usr/bin/env bash
# Reverse-proxy benchmark: tollgate vs nginx vs haproxy, each proxying to the same origin.
#
# Topology (identical for the three proxies):
#   wrk -t1 -cN  ->  proxy (one worker / one thread, access log off)
#                ->  keepalive pool (32 idle connections)  ->  origin
# The origin is a separate nginx process (one worker, keepalive) answering
# `return 200 "<1024-byte body>"`. Rounds are interleaved (tollgate, nginx, haproxy, repeat) so
# drift on the machine hits all three alike. Prints req/s, p50 and p99 per server and round,
# the medians and the ratios to nginx. Nothing is pinned (2 cores: wrk, proxy and origin share).
#
#   ROUNDS=3 DURATION=10 CONNECTIONS=50 WARMUP=2 bash bench/run_proxy.sh
#   PERF=1 bash bench/run_proxy.sh      # afterwards, `perf record -g` on the tollgate worker
#                                       # during one more tollgate run (top symbols, syscall
#                                       # entry points), then syscalls per request for all three
# Every process is started here and stopped on exit (TERM, then KILL after a bounded wait).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-2}
PERF=${PERF:-0}
PERF_OUT=${PERF_OUT:-}          # where to keep perf.data (default: dropped with the work dir)
BASE_PORT=${BASE_PORT:-18491}
BUILD_TARGET=tollgate bash scripts/setup.sh bench >/dev/null

origin_port=$BASE_PORT
tg_port=$((BASE_PORT + 1))
ngx_port=$((BASE_PORT + 2))
hap_port=$((BASE_PORT + 3))

work=$(mktemp -d /tmp/tollgate-bench-proxy.XXXXXX)
chmod 755 "$work"
# Run a copy of the binary: a rebuild of build/ during the run cannot swap it underneath, and
# perf can still resolve its symbols afterwards.
# The binary measured: TOLLGATE_BIN, else the one setup.sh just built in BUILD_DIR (build/).
tg_bin=${TOLLGATE_BIN:-${BUILD_DIR:-build}/tollgate}
cp "$tg_bin" "$work/tollgate"
echo "tollgate: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain \
    -- core worker master modules 2>/dev/null | grep -q . && echo ' + uncommitted changes'), built" \
    "$(date -u -r "$tg_bin" '+%F %T UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
# Start time (clock ticks since boot) of a process: with its pid, names it unambiguously.
start_of() { awk '{print $22}' /proc/"$1"/stat 2>/dev/null; }
pids=()
cleanup() {
    local p alive
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do     # up to 5 s for a graceful exit
        alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    # Workers whose master had to be KILLed would be left behind: KILL those too, but only if
    # the pid still names the same process (same start time), never a reused pid.
    local entry
    for entry in "${child_pids[@]}"; do
        p=${entry%%:*}
        [ "$(start_of "$p")" = "${entry#*:}" ] && kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
child_pids=()
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "run_proxy: $*" >&2; exit 1; }

for port in $origin_port $tg_port $ngx_port $hap_port; do
    if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        die "port $port is already in use (set BASE_PORT)"
    fi
done

# 1024-byte body: printable, no quotes or `$`, so it is the same text in all three configs.
body=$(python3 -c 'import string; s=(string.ascii_letters+string.digits)*20; print(s[:1024])')
[ ${#body} -eq 1024 ] || die "body is ${#body} bytes"

mkdir -p "$work/origin/logs" "$work/tg/logs" "$work/ngx/logs" "$work/hap"

cat > "$work/origin/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log logs/error.log error;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$origin_port backlog=4096;
        location / { default_type text/plain; return 200 "$body"; }
    }
}
CONF

# keepalive_requests on the upstream pools: haproxy has no per-connection request cap, so the
# two nginx-style pools get a high one too (their default is 1000) and all three reuse alike.
cat > "$work/tg/tollgate.conf" <<CONF
worker_processes 1;
daemon off;
error_log logs/error.log error;
pid logs/tollgate.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream u {
        server 127.0.0.1:$origin_port;
        keepalive 32;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$tg_port backlog=4096;
        # tollgate defaults to HTTP/1.1 upstream and sends no Connection header to a pool, so
        # the two nginx directives are not needed (it does add X-Forwarded-For/-Proto/-Host).
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
    upstream u {
        server 127.0.0.1:$origin_port;
        keepalive 32;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$ngx_port backlog=4096;
        location / {
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF

# haproxy: one thread, HTTP mode, server-side keepalive shared by all clients
# (http-reuse always), at most 32 idle server connections kept (pool-max-conn), no logging.
cat > "$work/hap/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend fe
    bind 127.0.0.1:$hap_port
    default_backend be
backend be
    http-reuse always
    server origin 127.0.0.1:$origin_port pool-max-conn 32
CONF

/usr/sbin/nginx -p "$work/origin/" -c nginx.conf & pids+=($!); origin_pid=$!
"$work/tollgate" -p "$work/tg/" -c tollgate.conf & pids+=($!); tg_pid=$!
/usr/sbin/nginx -p "$work/ngx/" -c nginx.conf & pids+=($!); ngx_pid=$!
/usr/sbin/haproxy -db -f "$work/hap/haproxy.cfg" & pids+=($!); hap_pid=$!

for port in $origin_port $tg_port $ngx_port $hap_port; do
    up=0
    for _ in $(seq 50); do
        (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && { up=1; break; }
        sleep 0.1
    done
    ((up)) || die "nothing listening on $port after 5 s (see $work/*/logs/error.log)"
done
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || die "process $p exited at start"; done
# Remember the workers, so a KILLed master cannot leave one behind.
for p in $origin_pid $tg_pid $ngx_pid; do
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do child_pids+=("$c:$(start_of "$c")"); done
done

# Same bytes from everyone: status and body must match the origin's exactly.
check() {  # name port
    local code
    code=$(curl -sS --max-time 5 -o "$work/body.$1" -D "$work/head.$1" -w '%{http_code}' \
        "http://127.0.0.1:$2/") || die "curl to $1 (port $2) failed"
    [ "$code" = 200 ] || die "$1 answered $code, not 200"
    cmp -s "$work/body.origin" "$work/body.$1" || {
        echo "--- $1 head:" >&2; cat "$work/head.$1" >&2
        die "$1 body differs from the origin's ($(wc -c <"$work/body.$1") vs $(wc -c <"$work/body.origin") bytes)"
    }
}
curl -sS --max-time 5 -o "$work/body.origin" -D "$work/head.origin" "http://127.0.0.1:$origin_port/" \
    || die "origin did not answer"
[ "$(cat "$work/body.origin")" = "$body" ] || die "origin body is not the expected 1024 bytes"
check tollgate $tg_port
check nginx $ngx_port
check haproxy $hap_port
echo "bytes check: all three return 200 and the origin's $(wc -c <"$work/body.origin")-byte body" \
     "(sha256 $(sha256sum <"$work/body.origin" | cut -c1-16))"
for s in tollgate nginx haproxy; do
    printf "  %-9s response head %4d bytes: %s\n" "$s" "$(wc -c <"$work/head.$s")" \
        "$(tr -d '\r' <"$work/head.$s" | sed 1d | grep -v '^$' | cut -d: -f1 | paste -sd' ')"
done

# CPU time (utime + stime, clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
# One wrk run; prints "rps p50_ms p99_ms cpu_us_per_req status" (CPU of process $3, the
# proxy's worker: less sensitive than req/s to the three processes sharing two cores).
run() {  # port seconds pid
    local t0 t1
    t0=$(cpu_ticks "$3")
    wrk -t1 -c"$CONNECTIONS" -d"${2}s" --timeout 5s --latency "http://127.0.0.1:$1/" \
        > "$work/out" 2>&1 || true
    t1=$(cpu_ticks "$3")
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
status = "ok"
if not m:
    status = "wrk-failed"
elif bad:
    status = f"non2xx={bad.group(1)}"
elif sock:
    status = "sockerr:" + sock.group(1).replace(" ", "")
m = re.search(r"(\d+) requests in", text)
reqs = int(m.group(1)) if m else 0
cpu_us = ticks / hz * 1e6 / reqs if reqs else float("nan")
print(f"{rps:.0f} {lat(50):.3f} {lat(99):.3f} {cpu_us:.1f} {status}")
PY
}

servers=(tollgate nginx haproxy)
declare -A port_of=([tollgate]=$tg_port [nginx]=$ngx_port [haproxy]=$hap_port)
tg_worker=$(cat /proc/"$tg_pid"/task/*/children | awk '{print $1}')
ngx_worker=$(cat /proc/"$ngx_pid"/task/*/children | awk '{print $1}')
[ -n "$tg_worker" ] && [ -n "$ngx_worker" ] || die "proxy workers not found"
declare -A pid_of=([tollgate]=$tg_worker [nginx]=$ngx_worker [haproxy]=$hap_pid)
if ((WARMUP > 0)); then
    for s in "${servers[@]}"; do run "${port_of[$s]}" "$WARMUP" "${pid_of[$s]}" >/dev/null; done
fi

echo
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS interleaved rounds, warmup ${WARMUP}s each"
printf "%-6s %-9s %10s %9s %9s %11s  %s\n" round server "req/s" "p50(ms)" "p99(ms)" \
    "cpu(us/req)" status
: > "$work/results"
for r in $(seq "$ROUNDS"); do
    for s in "${servers[@]}"; do
        read -r a b c u st <<<"$(run "${port_of[$s]}" "$DURATION" "${pid_of[$s]}")"
        printf "%-6s %-9s %10s %9s %9s %11s  %s\n" "$r" "$s" "$a" "$b" "$c" "$u" "$st"
        echo "$s $a $b $c $u $st" >> "$work/results"
    done
done
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || die "process $p died during the run"; done

echo
echo "=== summary: reverse proxy, 1 KB body, keepalive pool 32, one worker each ==="
python3 - "$work/results" "$CONNECTIONS" "$DURATION" "$ROUNDS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = statistics.median
res = {}
for s, rps, p50, p99, cpu, st in rows:
    d = res.setdefault(s, {"rps": [], "p50": [], "p99": [], "cpu": [], "st": set()})
    d["rps"].append(float(rps)); d["p50"].append(float(p50)); d["p99"].append(float(p99))
    d["cpu"].append(float(cpu))
    d["st"].add(st)
print(f"connections {sys.argv[2]}, {sys.argv[4]} rounds x {sys.argv[3]} s; medians over rounds")
print(f"{'server':<9} {'req/s':>9} {'p50(ms)':>8} {'p99(ms)':>8} {'cpu(us/req)':>11} "
      f"{'req/s÷nginx':>12} {'p50÷nginx':>10} {'p99÷nginx':>10} {'cpu÷nginx':>10}  status")
n = res["nginx"]
for s in ("tollgate", "nginx", "haproxy"):
    d = res[s]
    print(f"{s:<9} {med(d['rps']):>9.0f} {med(d['p50']):>8.3f} {med(d['p99']):>8.3f} "
          f"{med(d['cpu']):>11.1f} {med(d['rps']) / med(n['rps']):>12.3f} "
          f"{med(d['p50']) / med(n['p50']):>10.3f} {med(d['p99']) / med(n['p99']):>10.3f} "
          f"{med(d['cpu']) / med(n['cpu']):>10.3f}  "
          f"{','.join(sorted(d['st']))}")
    spread = (max(d["rps"]) - min(d["rps"])) / med(d["rps"]) * 100
    print(f"          rounds req/s: {' '.join(f'{x:.0f}' for x in d['rps'])}  (spread {spread:.1f}%)")
# Paired: each round's ratio to nginx in the same round (neighbouring runs see similar load),
# then the median of those; steadier than the ratio of medians on a busy machine.
for s in ("tollgate", "haproxy"):
    d = res[s]
    rr = [a / b for a, b in zip(d["rps"], n["rps"])]
    pr = [a / b for a, b in zip(d["p99"], n["p99"])]
    print(f"paired per-round ratio {s}/nginx: req/s {' '.join(f'{x:.2f}' for x in rr)}"
          f" -> median {med(rr):.3f}; p99 median {med(pr):.3f}")
PY
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "$PERF" = 1 ]; then
    # Where tollgate's worker spends its cycles (perf record -g: frame pointers are on in the
    # RelWithDebInfo build), then syscalls per proxied request for all three proxies
    # (perf stat on syscall tracepoints; counts per request barely depend on machine load).
    echo
    echo "=== perf record -g on the tollgate worker (pid $tg_worker) during a ${DURATION}s run ==="
    perf_data=${PERF_OUT:-$work/perf.data}
    perf record -g -o "$perf_data" -p "$tg_worker" -- sleep "$DURATION" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.3
    run "$tg_port" "$DURATION" "$tg_worker" > /dev/null
    wait "$perf_pid" || true
    echo "--- self time by symbol (>= 0.7%):"
    perf report -i "$perf_data" --no-children --sort dso,sym --percent-limit 0.7 --stdio -g none \
        2>/dev/null | grep -v '^#' | grep -v '^$' | cut -c1-110 | head -40
    echo "--- by shared object:"
    perf report -i "$perf_data" --no-children --sort dso --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -8
    echo "--- inclusive time of syscall entry points:"
    perf report -i "$perf_data" --children --sort sym --stdio -g none 2>/dev/null \
        | grep -E '\] (do_writev|do_readv|__x64_sys_(connect|close|socket|epoll_wait|epoll_ctl|sendto|recvfrom|read|write|accept4|setsockopt|getsockopt))$' \
        | head -14

    echo
    echo "=== syscalls per request (perf stat, ${DURATION}s wrk run each) ==="
    sc=(read write readv writev sendto recvfrom sendmsg recvmsg epoll_wait epoll_ctl connect
        socket close accept4 setsockopt getsockopt ioctl fcntl)
    events=raw_syscalls:sys_enter
    for c in "${sc[@]}"; do events+=",syscalls:sys_enter_$c"; done
    for s in "${servers[@]}"; do
        perf stat -x, -e "$events" -o "$work/stat.$s" -p "${pid_of[$s]}" -- sleep "$DURATION" \
            >/dev/null 2>&1 &
        perf_pid=$!
        sleep 0.3
        run "${port_of[$s]}" "$DURATION" "${pid_of[$s]}" > /dev/null
        wait "$perf_pid" || true
        grep -oE '[0-9]+ requests in' "$work/out" | awk '{print $1}' > "$work/reqs.$s"
    done
    python3 - "$work" "${servers[@]}" <<'PY'
import sys
work, servers = sys.argv[1], sys.argv[2:]
counts = {}
for s in servers:
    reqs = int(open(f"{work}/reqs.{s}").read().split()[0])
    d = {}
    for line in open(f"{work}/stat.{s}"):
        f = line.strip().split(",")
        if len(f) > 2 and f[0].replace(".", "").isdigit():
            name = f[2].split(":")[1].replace("sys_enter_", "")
            d[name] = float(f[0]) / reqs   # request counts include the few in flight: fine
    counts[s] = d
names = ["sys_enter"] + [n for n in counts[servers[0]] if n != "sys_enter"]
names = [n for n in names if any(counts[s].get(n, 0) >= 0.01 for s in servers)]
print(f"{'per request':<12}" + "".join(f"{s:>10}" for s in servers))
for n in names:
    label = "all" if n == "sys_enter" else n
    print(f"{label:<12}" + "".join(f"{counts[s].get(n, 0):>10.2f}" for s in servers))
PY
fi
