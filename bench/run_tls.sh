#!/usr/bin/env bash
# Side-by-side TLS benchmark: tollgate vs nginx with the same certificates, one worker each, no
# access log, `return 200 "ok"`. In interleaved rounds (tollgate, nginx, ...) it measures
#   * new full handshakes per second (`openssl s_time -new`, no resumption) with an RSA-2048
#     and with an ECDSA P-256 certificate (TLS 1.3, X25519), and
#   * keepalive HTTPS requests per second (wrk over TLS, one handshake per connection),
# then prints the medians and the tollgate/nginx ratios.
#   ROUNDS=3 DURATION=10 CONNECTIONS=50 bash bench/run_tls.sh
#   TOLLGATE_BIN=build-x/tollgate ...   (skips the build through scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
if [ -z "${TOLLGATE_BIN:-}" ]; then
    BUILD_TARGET=tollgate bash scripts/setup.sh bench >/dev/null
    TOLLGATE_BIN=build/tollgate
fi

work=$(mktemp -d /tmp/tollgate-bench-tls.XXXXXX)
chmod 755 "$work"
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
mkdir -p "$work/tg/logs" "$work/ngx/logs" "$work/certs"
certs="$work/certs"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$certs/rsa.key" -out "$certs/rsa.crt" \
    -days 2 -subj /CN=bench.test 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$certs/ec.key" \
    -out "$certs/ec.crt" -days 2 -subj /CN=bench.test 2>/dev/null
chmod 644 "$certs"/*

tg_rsa=18491 tg_ec=18492 ngx_rsa=18493 ngx_ec=18494

servers() {  # $1 rsa port, $2 ec port, $3 listen suffix
    for pair in "$1 rsa" "$2 ec"; do
        set -- $pair "$3"
        cat <<CONF
    server {
        listen 127.0.0.1:$1 ssl$3;
        ssl_certificate $certs/$2.crt;
        ssl_certificate_key $certs/$2.key;
        location / { return 200 "ok"; }
    }
CONF
    done
}

cat > "$work/tg/tollgate.conf" <<CONF
worker_processes 1;
daemon off;
error_log logs/error.log error;
pid logs/tollgate.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000;
    ssl_session_tickets off;
$(servers $tg_rsa $tg_ec "")
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
    ssl_session_tickets off;
    ssl_protocols TLSv1.2 TLSv1.3;
$(servers $ngx_rsa $ngx_ec " reuseport")
}
CONF

"$TOLLGATE_BIN" -p "$work/tg/" -c tollgate.conf & echo $! > "$work/tollgate.pid"
/usr/sbin/nginx -p "$work/ngx/" -c nginx.conf & echo $! > "$work/nginx.pid"
for port in $tg_rsa $tg_ec $ngx_rsa $ngx_ec; do
    for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

# Full handshakes per second: s_time prints "N connections in T real seconds".
handshakes() {
    openssl s_time -connect "127.0.0.1:$1" -new -time "$DURATION" 2>/dev/null |
        python3 -c '
import re, sys
m = re.search(r"(\d+) connections in ([\d.]+) real seconds", sys.stdin.read())
print(f"{int(m.group(1)) / float(m.group(2)):.0f}" if m else "0")'
}
keepalive() {
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "https://127.0.0.1:$1/" 2>&1 |
        python3 -c '
import re, sys
text = sys.stdin.read()
m = re.search(r"Requests/sec:\s+([\d.]+)", text)
bad = re.search(r"Non-2xx or 3xx responses|Socket errors", text)
print(("%.0f" % float(m.group(1)) + ("!" if bad else "")) if m else "0")'
}

declare -A res
echo "round  server    hs/s RSA-2048  hs/s ECDSA-P256  keepalive req/s (RSA)"
for r in $(seq "$ROUNDS"); do
    for who in tg ngx; do
        rsa=${who}_rsa ec=${who}_ec
        a=$(handshakes ${!rsa}); b=$(handshakes ${!ec}); c=$(keepalive ${!rsa})
        res[$who,rsa]+="$a " res[$who,ec]+="$b " res[$who,ka]+="${c%!} "
        printf "%-6s %-9s %-14s %-16s %s\n" "$r" "$([ $who = tg ] && echo tollgate || echo nginx)" "$a" "$b" "$c"
    done
done
python3 - "${res[tg,rsa]}" "${res[tg,ec]}" "${res[tg,ka]}" "${res[ngx,rsa]}" "${res[ngx,ec]}" "${res[ngx,ka]}" <<'PY'
import statistics, sys
v = [[float(x) for x in a.split()] for a in sys.argv[1:7]]
med = [statistics.median(x) for x in v]
names = ["handshakes/s RSA-2048", "handshakes/s ECDSA P-256", "keepalive HTTPS req/s"]
for i, n in enumerate(names):
    print(f"median {n:26s} tollgate {med[i]:8.0f}  nginx {med[i + 3]:8.0f}  ratio {med[i] / med[i + 3]:.3f}")
PY
