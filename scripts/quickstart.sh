#!/usr/bin/env bash
# Installs what is missing, builds, and runs tollgate in the foreground on conf/tollgate.conf.
# The demo then answers on http://localhost:8080/ (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p logs
echo "tollgate: serving the demo on http://localhost:8080/ (logs in $PWD/logs, Ctrl-C to stop)"
exec build/tollgate -p "$PWD/" -c conf/tollgate.conf -g "daemon off;" -e stderr
