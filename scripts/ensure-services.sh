#!/usr/bin/env bash
# Make sure the services the tests talk to are there: Mosquitto on 127.0.0.1:1883 and Redis on
# 127.0.0.1:6379 (installing them from Debian's packages when missing), plus the binaries the
# fault tests start on their own ports. Idempotent; safe to run on a developer's machine.
set -euo pipefail

need_apt=()
command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# The twin-view browser tests drive Debian's Chromium (no browser download from a test tool).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing ${need_apt[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 1883; then
  echo "starting mosquitto on 127.0.0.1:1883"
  conf=$(mktemp -d)/mosquitto.conf
  printf 'listener 1883 127.0.0.1\nallow_anonymous true\n' > "$conf"
  mosquitto -d -c "$conf"
fi
if ! port_open 6379; then
  echo "starting redis on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
for i in $(seq 1 50); do
  if port_open 1883 && port_open 6379; then exit 0; fi
  sleep 0.1
done
echo "mosquitto or redis did not come up" >&2
exit 1
