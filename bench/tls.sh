#!/usr/bin/env bash
# TLS across restarts, measured (docs/benchmarks.md, "TLS"):
#
# 1. steady throughput of examples/tls.rs (seamless, `Serve::tls`) beside
#    plain axum over tokio-rustls (`plain-tls`), wrk over HTTPS and h2load
#    over TLS (ALPN h2), each server alone, 10 s per tool, alternated;
# 2. RESTARTS restarts of the TLS example, 1 s apart, the script playing the
#    supervisor (TERM to the launcher, a new launcher started), under wrk
#    over HTTPS (4 keep-alive connections) and h2load over TLS (4
#    connections, 10 streams each, 1 s runs back to back: h2load does not
#    reconnect after a GOAWAY); failures are counted as tests/frameworks.rs
#    counts them (an h2load request errored is one it never sent);
# 3. around each restart, `openssl s_client -sess_out` on the old
#    generation and `-sess_in` on the new one: the share of sessions
#    resumed.
#
# Usage: bench/tls.sh [RESTARTS]   (default 20; needs wrk, h2load, openssl,
# curl; STEADY_ROUNDS=0 skips part 1)
set -euo pipefail
cd "$(dirname "$0")/.."
restarts=${1:-20}

cargo build --release -q --example tls
cargo build --release -q -p seamless-bench --bin plain-tls
tls=target/release/examples/tls
plain=target/release/plain-tls
dir=$(mktemp -d /tmp/seamless-tls-bench.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="https://127.0.0.1:$port/"

# Every process group started here is killed on the way out.
groups=()
cleanup() {
  for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
}
trap cleanup EXIT

# One certificate for every generation and for the plain server.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
export TLS_CERT_FILE="$dir/cert.pem" TLS_KEY_FILE="$dir/key.pem"

launcher=
start_tls() {
  setsid "$tls" "127.0.0.1:$port" "$dir/pid" >>"$dir/out" 2>&1 &
  launcher=$!
  groups+=("$launcher")
}

request() { printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'; }

answering() { curl -sk --max-time 2 "$url" 2>/dev/null | sed -n 's/^Server pid: //p' || true; }

# Waits until the pid file names a generation other than $1 and it answers.
wait_generation() {
  local old=$1 pid
  for _ in $(seq 2000); do
    pid=$(head -n1 "$dir/pid" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$pid" != "$old" ] && [ "$(answering)" = "$pid" ]; then
      echo "$pid"
      return
    fi
    sleep 0.01
  done
  echo "no new generation" >&2
  cat "$dir/out" >&2
  exit 1
}

steady() { # name
  local rps h2
  rps=$(wrk -t1 -c4 -d10s "$url" | awk '/^Requests\/sec/ { print $2 }')
  h2=$(h2load -c4 -m10 -D 10 "$url" | awk '/^finished in/ { print $4 }')
  echo "steady $1: wrk $rps req/s, h2load $h2 req/s"
}

echo "== steady throughput (4 connections; h2load 10 streams each)"
for round in $(seq "${STEADY_ROUNDS:-2}"); do
  start_tls
  wait_generation "" >/dev/null
  steady "seamless tls (round $round)"
  kill -KILL -- "-$launcher"
  wait "$launcher" 2>/dev/null || true
  sleep 0.5
  setsid "$plain" "127.0.0.1:$port" >>"$dir/out" 2>&1 &
  plain_pid=$!
  groups+=("$plain_pid")
  for _ in $(seq 500); do [ -n "$(answering)" ] && break; sleep 0.01; done
  steady "plain axum + tokio-rustls (round $round)"
  kill -KILL -- "-$plain_pid"
  wait "$plain_pid" 2>/dev/null || true
  sleep 0.5
done

echo "== $restarts restarts under wrk (HTTPS) and h2load (TLS, ALPN h2)"
rm -f "$dir/pid"
start_tls
generation=$(wait_generation "")
wrk -t1 -c4 -d"$((restarts + 3))s" "$url" >"$dir/wrk" 2>&1 &
wrk_pid=$!
touch "$dir/h2load-go"
(
  n=0
  while [ -e "$dir/h2load-go" ] && [ $n -lt 1000 ]; do
    n=$((n + 1))
    h2load -c4 -m10 -D 1 --log-file="$dir/h2log.$n" "$url" >"$dir/h2out.$n" 2>&1 || true
  done
) &
h2_pid=$!
sleep 0.5
offered=0 resumed=0
for i in $(seq "$restarts"); do
  # A request, and -ign_eof: s_client reads until the answer's end, so
  # the session tickets (sent after the handshake) are in by then.
  request | openssl s_client -ign_eof -connect "127.0.0.1:$port" -servername localhost \
    -sess_out "$dir/session" >/dev/null 2>&1 || true
  kill -TERM "$launcher"
  wait "$launcher" || { echo "launcher failed at restart $i" >&2; exit 1; }
  start_tls
  generation=$(wait_generation "$generation")
  if [ -s "$dir/session" ]; then
    offered=$((offered + 1))
    if request | openssl s_client -ign_eof -connect "127.0.0.1:$port" -servername localhost \
      -sess_in "$dir/session" 2>/dev/null | grep -q '^Reused'; then
      resumed=$((resumed + 1))
    fi
  fi
  rm -f "$dir/session"
  sleep 0.9
done
wait "$wrk_pid" || true
rm -f "$dir/h2load-go"
wait "$h2_pid" || true

grep -E 'requests in|Socket errors|Non-2xx|Requests/sec' "$dir/wrk" | sed 's/^ */wrk: /'
grep -qE 'Socket errors|Non-2xx' "$dir/wrk" || echo "wrk: no socket error, no non-2xx answer"
cat "$dir"/h2out.* | awk -v runs="$(ls "$dir"/h2out.* | wc -l)" '
  /^requests:/ {
    for (i = 2; i <= NF; i++) { v = $i; gsub(",", "", $(i + 1)); if ($(i + 1) == "succeeded") ok += v; if ($(i + 1) == "failed") failed += v; if ($(i + 1) == "errored") errored += v; if ($(i + 1) == "timeout") timeout += v }
  }
  /^status codes:/ { gsub(",", ""); bad += $5 + $7 + $9 }
  END { printf "h2load: %d runs, %d succeeded, %d failed, %d errored, %d timeout, %d non-2xx\n", runs, ok, failed, errored, timeout, bad }'
never_sent=$(cat "$dir"/h2log.* 2>/dev/null | awk -F'\t' '$1 == 0 && $2 == -1' | wc -l)
echo "h2load: $never_sent of the errored requests never sent (a request queued after a GOAWAY)"
echo "resumption: $resumed of $offered sessions saved before a restart resumed after it"
echo "(work files in $dir)"
