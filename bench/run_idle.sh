#!/usr/bin/env bash
# Memory per idle keepalive connection: tollgate vs nginx, both answering `return 200 "ok"` with
# one worker and no access log. For each server in turn, bench/idle_conns.py opens N client
# connections (in batches), sends one request on each, reads the answer and keeps them all open
# and idle; the worker's RSS per connection is (VmRSS with N open - VmRSS with 0) / N, and the
# same with Pss from /proc/PID/smaps_rollup. Kernel socket buffers are not in either figure.
#   N=10000 BATCH=500 OPEN_TIMEOUT=60 bash bench/run_idle.sh
# Every process is started here and stopped on exit (TERM, then KILL after a bounded wait).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
BATCH=${BATCH:-500}
OPEN_TIMEOUT=${OPEN_TIMEOUT:-60}
BASE_PORT=${BASE_PORT:-18501}
BUILD_TARGET=tollgate bash scripts/setup.sh bench >/dev/null

die() { echo "run_idle: $*" >&2; exit 1; }

# The client holds N sockets, each server's worker N more: raise the soft limit as far as the
# hard one allows (root may raise the hard one too, where the container permits).
want=$((N + 1000))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt $((N * 2 + 1000)) ]; then
    ulimit -Hn $((N * 2 + 1000)) 2>/dev/null || true
fi
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -Sn)" = unlimited ] || [ "$(ulimit -Sn)" -ge "$want" ] \
    || die "open files limit is $(ulimit -Sn), need $want"
nofile=$(ulimit -Sn)
[ "$nofile" = unlimited ] && nofile=1048576
wc_max=20000

tg_port=$BASE_PORT
ngx_port=$((BASE_PORT + 1))
work=$(mktemp -d /tmp/tollgate-bench-idle.XXXXXX)
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
child_pids=()
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
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in $tg_port $ngx_port; do
    if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        die "port $port is already in use (set BASE_PORT)"
    fi
done
mkdir -p "$work/tg/logs" "$work/ngx/logs"

# worker_rlimit_nofile: no higher than this shell's hard limit (an unprivileged setrlimit
# above it fails); worker_connections 20000 in both.
for s in tg ngx; do
    if [ $s = tg ]; then port=$tg_port; pidf=tollgate.pid; else port=$ngx_port; pidf=nginx.pid; fi
    cat > "$work/$s/$s.conf" <<CONF
worker_processes 1;
daemon off;
error_log logs/error.log error;
pid logs/$pidf;
worker_rlimit_nofile $nofile;
events { worker_connections $wc_max; }
http {
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / { return 200 "ok"; }
    }
}
CONF
done

"$work/tollgate" -p "$work/tg/" -c tg.conf & pids+=($!); tg_pid=$!
/usr/sbin/nginx -p "$work/ngx/" -c ngx.conf & pids+=($!); ngx_pid=$!
for port in $tg_port $ngx_port; do
    up=0
    for _ in $(seq 50); do
        (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && { up=1; break; }
        sleep 0.1
    done
    ((up)) || die "nothing listening on $port after 5 s"
done
worker_of() {  # master pid -> its single worker's pid
    local c
    c=$(cat /proc/"$1"/task/*/children 2>/dev/null | awk '{print $1}')
    [ -n "$c" ] || die "no worker under master $1"
    echo "$c"
}
tg_worker=$(worker_of $tg_pid); child_pids+=("$tg_worker:$(start_of $tg_worker)")
ngx_worker=$(worker_of $ngx_pid); child_pids+=("$ngx_worker:$(start_of $ngx_worker)")
for w in $tg_worker $ngx_worker; do
    echo "worker $w ($(cat /proc/$w/comm)): $(grep 'Max open files' /proc/$w/limits | awk '{print "nofile", $4}')"
done

declare -A result
for s in tollgate nginx; do
    if [ $s = tollgate ]; then port=$tg_port; w=$tg_worker; else port=$ngx_port; w=$ngx_worker; fi
    echo
    echo "== $s (worker pid $w, port $port): $N idle keepalive connections"
    timeout $((OPEN_TIMEOUT + 30)) python3 bench/idle_conns.py "$port" "$w" "$N" "$BATCH" \
        "$OPEN_TIMEOUT" > "$work/out.$s" || { cat "$work/out.$s"; die "$s: client failed"; }
    grep -v '^RESULT' "$work/out.$s"
    result[$s]=$(grep '^RESULT' "$work/out.$s")
    kill -0 "$w" 2>/dev/null || die "$s worker died"
    sleep 1   # let the client's closes settle before the next server
done

echo
echo "=== summary: memory per idle keepalive connection, N=$N, one worker each ==="
python3 - "${result[tollgate]}" "${result[nginx]}" <<'PY'
import sys
def parse(line):
    return {k: v for k, v in (kv.split("=") for kv in line.split()[1:])}
t, n = parse(sys.argv[1]), parse(sys.argv[2])
print(f"{'server':<9} {'RSS@0(kB)':>10} {'RSS@N(kB)':>10} {'RSS/conn(B)':>12} "
      f"{'Pss@0(kB)':>10} {'Pss@N(kB)':>10} {'Pss/conn(B)':>12} {'closed':>7}")
for name, d in (("tollgate", t), ("nginx", n)):
    print(f"{name:<9} {d['base_rss_kb']:>10} {d['rss_kb']:>10} {d['per_conn_rss_b']:>12} "
          f"{d['base_pss_kb']:>10} {d['pss_kb']:>10} {d['per_conn_pss_b']:>12} {d['closed']:>7}")
r = float(t["per_conn_rss_b"]) / float(n["per_conn_rss_b"])
print(f"ratio tollgate/nginx RSS per connection: {r:.2f}")
PY
