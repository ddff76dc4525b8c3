#!/usr/bin/env bash
# Authentication overhead: one tollgate proxying to an nginx origin, plain and behind each kind
# of authentication, side by side in one run:
#   plain        proxy_pass only
#   api_key      auth_key on (file store, key in X-API-Key)
#   jwt_rs256    auth_jwt, RS256 token (2048-bit key), verification cache on
#   jwt_es256    auth_jwt, ES256 token (P-256), verification cache on
#   jwt_rs256_nc the same without the cache (a second tollgate with auth_jwt_cache off)
#   jwt_es256_nc
#   auth_req     auth_request to an internal location proxying to the origin's /auth (204),
#                result cache on (keyed by the Authorization header)
#   auth_req_nc  the same without the cache (on the second tollgate)
# and, as a reference, nginx's own auth_request (no cache) on the same origin.
# One worker per server, access log off, keepalive pools of 32 to the origin. Rounds are
# interleaved so drift on the machine hits every variant alike. Prints req/s, p99 and the
# proxy worker's CPU time per request per variant, the medians, and the overhead against plain.
#
#   ROUNDS=3 DURATION=10 CONNECTIONS=50 bash bench/run_auth.sh
#   TOLLGATE_BIN=/path/to/tollgate bash bench/run_auth.sh   # measure this binary, no build
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
BASE_PORT=${BASE_PORT:-18541}
if [ -z "${TOLLGATE_BIN:-}" ]; then
    BUILD_TARGET=tollgate BUILD_DIR=${BUILD_DIR:-build} bash scripts/setup.sh bench >/dev/null
fi
tg_bin=${TOLLGATE_BIN:-${BUILD_DIR:-build}/tollgate}

work=$(mktemp -d /tmp/tollgate-bench-auth.XXXXXX)
chmod 755 "$work"
cp "$tg_bin" "$work/tollgate"
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
die() { echo "run_auth: $*" >&2; exit 1; }

variants=(plain api_key jwt_rs256 jwt_es256 auth_req jwt_rs256_nc jwt_es256_nc auth_req_nc
          nginx_auth_req)
# A build without the auth_request module measures the rest (and says so).
has_auth_request=1
if ! "$tg_bin" -V 2>&1 | grep -q '^modules:.* auth_request'; then
    has_auth_request=0
    variants=(plain api_key jwt_rs256 jwt_es256 jwt_rs256_nc jwt_es256_nc nginx_auth_req)
    echo "run_auth: this tollgate has no auth_request module: its variant is skipped"
fi
origin_port=$BASE_PORT
declare -A port
i=1
for v in "${variants[@]}"; do port[$v]=$((BASE_PORT + i)); i=$((i + 1)); done
for p in $origin_port "${port[@]}"; do
    if (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null; then die "port $p is in use (set BASE_PORT)"; fi
done
echo "tollgate: $tg_bin, built $(date -u -r "$tg_bin" '+%F %T UTC');" \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$work/origin/logs" "$work/tg/logs" "$work/tgnc/logs" "$work/ngx/logs" "$work/keys"
keys=$work/keys
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/rs.key" 2>/dev/null
openssl pkey -in "$keys/rs.key" -pubout -out "$keys/rs.pub"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$keys/es.key" 2>/dev/null
openssl pkey -in "$keys/es.key" -pubout -out "$keys/es.pub"
api_key=$("$work/tollgate" key add --store "$keys/api_keys" --consumer bench --tier gold | head -1)
[ -n "$api_key" ] || die "tollgate key add printed no key"
read -r rs_token es_token <<<"$(/usr/bin/python3 - "$keys" <<'PY'
import sys, time, jwt
d = sys.argv[1]
claims = {"sub": "bench", "iss": "bench", "exp": int(time.time()) + 3600}
rs = jwt.encode(claims, open(d + "/rs.key").read(), algorithm="RS256")
es = jwt.encode(claims, open(d + "/es.key").read(), algorithm="ES256")
print(rs, es)
PY
)"

main_conf() {  # $1: pid file
    printf 'worker_processes 1;\ndaemon off;\nerror_log logs/error.log error;\npid logs/%s;\n' "$1"
    printf 'events { worker_connections 4096; }\n'
}
{
    main_conf nginx.pid
    cat <<CONF
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$origin_port backlog=4096;
        location = /auth { return 204; }
        location / { default_type text/plain; return 200 "ok from the origin"; }
    }
}
CONF
} > "$work/origin/nginx.conf"

upstream_block="upstream origin { server 127.0.0.1:$origin_port; keepalive 32; keepalive_requests 1000000; }"
{
    main_conf tollgate.pid
    cat <<CONF
http {
    access_log off;
    keepalive_requests 1000000;
    $upstream_block
    auth_key_store $keys/api_keys;
    server { listen 127.0.0.1:${port[plain]}; location / { proxy_pass http://origin; } }
    server { listen 127.0.0.1:${port[api_key]};
             location / { auth_key on; proxy_pass http://origin; } }
    server { listen 127.0.0.1:${port[jwt_rs256]};
             location / { auth_jwt bench; auth_jwt_key_file $keys/rs.pub; proxy_pass http://origin; } }
    server { listen 127.0.0.1:${port[jwt_es256]};
             location / { auth_jwt bench; auth_jwt_key_file $keys/es.pub; proxy_pass http://origin; } }
$( ((has_auth_request)) && cat <<AR
    server { listen 127.0.0.1:${port[auth_req]};
             location / { auth_request /auth;
                          auth_request_cache \$http_authorization valid=60s;
                          proxy_pass http://origin; }
             location = /auth { internal; proxy_pass http://origin; } }
AR
)
}
CONF
} > "$work/tg/tollgate.conf"
{
    main_conf tollgate.pid
    cat <<CONF
http {
    access_log off;
    keepalive_requests 1000000;
    auth_jwt_cache off;
    $upstream_block
    server { listen 127.0.0.1:${port[jwt_rs256_nc]};
             location / { auth_jwt bench; auth_jwt_key_file $keys/rs.pub; proxy_pass http://origin; } }
    server { listen 127.0.0.1:${port[jwt_es256_nc]};
             location / { auth_jwt bench; auth_jwt_key_file $keys/es.pub; proxy_pass http://origin; } }
$( ((has_auth_request)) && cat <<AR
    server { listen 127.0.0.1:${port[auth_req_nc]};
             location / { auth_request /auth; proxy_pass http://origin; }
             location = /auth { internal; proxy_pass http://origin; } }
AR
)
}
CONF
} > "$work/tgnc/tollgate.conf"
{
    main_conf nginx.pid
    cat <<CONF
http {
    access_log off;
    keepalive_requests 1000000;
    $upstream_block
    server { listen 127.0.0.1:${port[nginx_auth_req]} reuseport;
             location / { auth_request /auth; proxy_pass http://origin;
                          proxy_http_version 1.1; proxy_set_header Connection ""; }
             location = /auth { internal; proxy_pass http://origin;
                                proxy_http_version 1.1; proxy_set_header Connection "";
                                proxy_pass_request_body off; proxy_set_header Content-Length ""; } }
}
CONF
} > "$work/ngx/nginx.conf"

/usr/sbin/nginx -p "$work/origin/" -c nginx.conf & pids+=($!)
"$work/tollgate" -p "$work/tg/" -c tollgate.conf & pids+=($!)
tg_master=$!
"$work/tollgate" -p "$work/tgnc/" -c tollgate.conf & pids+=($!)
tgnc_master=$!
/usr/sbin/nginx -p "$work/ngx/" -c nginx.conf & pids+=($!)
ngx_master=$!
for p in $origin_port "${port[@]}"; do
    up=0
    for _ in $(seq 50); do
        (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && { up=1; break; }
        sleep 0.1
    done
    ((up)) || die "nothing listens on $p: $(cat "$work"/*/logs/error.log 2>/dev/null)"
done

# Every variant's requests carry the same bytes: an X-API-Key and an RS256 bearer token (the ES256
# variants carry the shorter ES256 token padded to the same length), so what differs between
# variants is the work, not the size of the request read and forwarded.
es_pad=$(printf '%*s' $((${#rs_token} - ${#es_token})) '' | tr ' ' x)
header_args() {  # wrk/curl -H arguments for a variant
    case $1 in
        jwt_es*) printf '%s\n' "-H" "X-API-Key: $api_key" "-H" "Authorization: Bearer $es_token" \
                     "-H" "X-Pad: $es_pad" ;;
        *) printf '%s\n' "-H" "X-API-Key: $api_key" "-H" "Authorization: Bearer $rs_token" \
               "-H" "X-Pad: " ;;
    esac
}
for v in "${variants[@]}"; do  # every variant admits (a 401 would measure the wrong path)
    mapfile -t hargs < <(header_args "$v")
    code=$(curl -s -o /dev/null -w '%{http_code}' "${hargs[@]}" "http://127.0.0.1:${port[$v]}/x")
    [ "$code" = 200 ] || die "$v answered $code: $(cat "$work"/*/logs/error.log 2>/dev/null)"
done

worker_of() { pgrep -P "$1" | head -1; }
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
declare -A wpid
for v in plain api_key jwt_rs256 jwt_es256 auth_req; do wpid[$v]=$(worker_of $tg_master); done
for v in jwt_rs256_nc jwt_es256_nc auth_req_nc; do wpid[$v]=$(worker_of $tgnc_master); done
wpid[nginx_auth_req]=$(worker_of $ngx_master)
hz=$(getconf CLK_TCK)

run() {  # $1: variant
    local v=$1 before after
    mapfile -t hargs < <(header_args "$v")
    before=$(cpu_ticks "${wpid[$v]}")
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${hargs[@]}" \
        "http://127.0.0.1:${port[$v]}/x" > "$work/out" 2>&1
    after=$(cpu_ticks "${wpid[$v]}")
    python3 - "$work/out" "$((after - before))" "$hz" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
n = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", text)
scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", text)
print(f"{rps:.0f} {float(m.group(1)) * scale:.3f} {ticks * 1e6 / hz / max(n, 1):.2f} "
      f"{'errors' if errors else 'ok'}")
PY
}

results="$work/results"
: > "$results"
echo "round  variant          req/s      p99(ms)  cpu-us/req  status"
for r in $(seq "$ROUNDS"); do
    for v in "${variants[@]}"; do
        read -r a b c s <<<"$(run "$v")"
        printf "%-6s %-16s %-10s %-8s %-11s %s\n" "$r" "$v" "$a" "$b" "$c" "$s"
        echo "$v $a $b $c $s" >> "$results"
    done
done
python3 - "$results" "${variants[@]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
order = sys.argv[2:]
med = statistics.median
col = {}
for v, a, b, c, _ in rows:
    col.setdefault(v, ([], [], []))
    for lst, x in zip(col[v], (a, b, c)):
        lst.append(float(x))
base = [med(x) for x in col["plain"]]
print()
print("median  variant          req/s    p99(ms)  cpu-us/req   vs plain: req/s  cpu/req")
for v in order:
    rps, p99, cpu = (med(x) for x in col[v])
    print(f"        {v:<16} {rps:>7.0f} {p99:>9.3f} {cpu:>11.2f} {rps / base[0] - 1:>+16.1%}"
          f" {cpu / base[2] - 1:>+8.1%}")
PY
