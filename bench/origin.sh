#!/usr/bin/env bash
# Origin benchmark: how fast does `vcdn origin` serve whole files over HTTPS?
#
# Measures a 1 MiB and a 100 MiB object, each over HTTP/1.1 (wrk) and over
# HTTP/2 (h2load, ALPN h2), on loopback. The origin is pinned to one CPU and
# the load generator to another, so the numbers are "what one core of vcdn
# does". For every run it reports requests/s, MB/s, latency, the origin's CPU
# time per GB served (utime+stime from /proc/PID/stat) and the load
# generator's CPU use (if that is near 100 % the client, not vcdn, is the
# limit). For context it also prints the core count and one core's
# AES-128-GCM and AES-256-GCM speed (openssl speed, 16 KiB blocks).
#
# Run from anywhere:   bash bench/origin.sh            (progress on stderr)
#                      bash bench/origin.sh > bench.md (Markdown table only)
#
# Environment:
#   VCDN         path to the vcdn binary (default: target/release/vcdn, which
#                is built with `cargo build --release -p vcdn` if missing)
#   DURATION     seconds per run (default 10)
#   CONNECTIONS  concurrent connections per run (default 8)
#   PORT         port to listen on (default: a free port)
#   SERVER_CPU   CPU for the origin (default 0)
#   CLIENT_CPU   CPU for wrk/h2load (default 1)
#
# Missing tools (wrk, h2load from nghttp2-client, curl, openssl) are installed
# with apt-get. Needs Linux (taskset, /proc) and at least 2 CPUs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-8}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OBJECTS=(1MiB.bin 100MiB.bin)

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 0 ]] || die "DURATION must be a whole number of seconds"
[[ $CONNECTIONS =~ ^[0-9]+$ && $CONNECTIONS -gt 0 ]] || die "CONNECTIONS must be a positive number"

# --- tools -------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  sudo=()
  if ((EUID != 0)); then sudo=(sudo); fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
for tool in taskset sha256sum awk; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

# --- binary ------------------------------------------------------------------
if [[ -z ${VCDN:-} ]]; then
  VCDN=${CARGO_TARGET_DIR:-target}/release/vcdn
  if [[ ! -x $VCDN ]]; then
    log "building $VCDN"
    cargo build --release -p vcdn
  fi
fi
[[ -x $VCDN ]] || die "vcdn binary not found at $VCDN"

# --- scratch space, cleaned up (and the origin stopped) on exit ---------------
work=$(mktemp -d "${TMPDIR:-/tmp}/vcdn-bench.XXXXXX")
videos=$work/videos
certs=$work/certs
origin_log=$work/origin.log
server_pid=

cleanup() {
  local rc=$?
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in {1..50}; do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if ((rc != 0)) && [[ -s $origin_log ]]; then
    log "--- origin log (last 30 lines) ---"
    tail -n 30 "$origin_log" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$videos" "$certs"
head -c $((1024 * 1024)) /dev/urandom >"$videos/1MiB.bin"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$videos/100MiB.bin"

# --- machine context (measured before the origin starts) ----------------------
cpus=$(nproc)
((cpus >= 2)) || die "need at least 2 CPUs (origin and load generator on separate cores), have $cpus"
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
cpu_model=${cpu_model:-unknown}
# One core's AES-GCM speed in MB/s for 16 KiB blocks (a TLS record is at most
# 16 KiB). openssl speed ends with "AES-128-GCM  5491130.37k" (1000s of bytes/s).
aes_speed() {
  local mbs
  mbs=$(taskset -c "$SERVER_CPU" openssl speed -seconds 3 -bytes 16384 -evp "$1" 2>/dev/null |
    awk -v alg="$1" 'tolower($1) == alg { v = $NF; sub(/k$/, "", v); printf "%.0f", v / 1000 }') || true
  echo "${mbs:-n/a}"
}
log "measuring AES-GCM speed on CPU $SERVER_CPU (openssl speed, 2 x 3 s)"
aes128_mbs=$(aes_speed aes-128-gcm)
aes256_mbs=$(aes_speed aes-256-gcm)

# --- start the origin -----------------------------------------------------------
if [[ -z ${PORT:-} ]]; then
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null) || PORT=18443
fi
base=https://127.0.0.1:$PORT

log "starting $VCDN origin on 127.0.0.1:$PORT (CPU $SERVER_CPU)"
# taskset execs the binary, so $! is the origin's own PID.
taskset -c "$SERVER_CPU" "$VCDN" origin --listen "127.0.0.1:$PORT" --videos "$videos" --cert-dir "$certs" \
  >"$origin_log" 2>&1 &
server_pid=$!

deadline=$((SECONDS + 60))
until curl -sf -o /dev/null --max-time 2 --cacert "$certs/ca.pem" "$base/healthz" 2>/dev/null; do
  kill -0 "$server_pid" 2>/dev/null || die "origin exited during startup"
  ((SECONDS < deadline)) || die "origin not ready after 60 s"
  sleep 0.2
done
log "origin ready"

# --- correctness check: every object downloads byte-identically, h1 and h2 -----
for name in "${OBJECTS[@]}"; do
  want=$(sha256sum <"$videos/$name" | cut -d' ' -f1)
  for proto in 1.1 2; do
    got_version=$(curl -sf --cacert "$certs/ca.pem" "--http$proto" -o "$work/download" \
      -w '%{http_version}' "$base/$name") || die "GET /$name over HTTP/$proto failed"
    [[ $got_version == "$proto" ]] || die "asked for HTTP/$proto for /$name, got HTTP/$got_version"
    got=$(sha256sum <"$work/download" | cut -d' ' -f1)
    [[ $got == "$want" ]] || die "/$name over HTTP/$proto: sha256 mismatch"
  done
  rm -f "$work/download"
  log "verified /$name (sha256 ${want:0:16}..., HTTP/1.1 and HTTP/2)"
done

# --- measurements -------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)

# utime + stime of the origin (all threads), in clock ticks. Fields 14 and 15 of
# /proc/PID/stat; parsed after the ")" that ends the command name, where field 3
# is the first one.
server_cpu_ticks() {
  local stat f
  stat=$(cat "/proc/$server_pid/stat" 2>/dev/null) || return 1
  read -r -a f <<<"${stat##*) }"
  [[ ${f[0]} != Z ]] || return 1 # exited, not yet reaped
  echo $((f[11] + f[12]))
}

# wrk prints its summary in rounded units; this script makes it also print the
# exact counters (latencies in microseconds).
cat >"$work/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%.0f bytes=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f errors=%.0f\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
EOF

rows=()
tls_info=

# run_case OBJECT PROTOCOL: one timed run; appends a Markdown row to rows.
run_case() {
  local name=$1 proto=$2 out=$work/run.out times=$work/run.time
  local url=$base/$name cmd ticks_before ticks_after parsed
  case $proto in
    h1) cmd=(wrk -t1 "-c$CONNECTIONS" "-d${DURATION}s" --timeout 60s --latency -s "$work/report.lua" "$url") ;;
    h2) cmd=(h2load -t1 "-c$CONNECTIONS" -m1 -D "$DURATION" "$url") ;;
  esac
  log ""
  log "### $name, $proto: ${cmd[*]}"

  ticks_before=$(server_cpu_ticks) || die "origin is not running"
  local TIMEFORMAT='%R %U %S'
  if ! { time taskset -c "$CLIENT_CPU" "${cmd[@]}" >"$out" 2>&1; } 2>"$times"; then
    cat "$out" >&2
    die "${cmd[0]} failed"
  fi
  ticks_after=$(server_cpu_ticks) || die "origin died during the run"
  grep -v '^progress: ' "$out" | sed 's/^/    /' >&2

  # Both branches print: requests bytes seconds latency-text errors protocol
  case $proto in
    h1)
      parsed=$(awk '
        /^BENCH / {
          for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
          printf "%s %s %.6f p50 %s, p99 %s|%s HTTP/1.1 (wrk)\n", v["requests"], v["bytes"],
            v["duration_us"] / 1e6, fmt(v["p50_us"] / 1000), fmt(v["p99_us"] / 1000), v["errors"]
          found = 1
        }
        function fmt(ms) { return ms >= 1000 ? sprintf("%.2f s", ms / 1000) : sprintf("%.1f ms", ms) }
        END { if (!found) exit 1 }' "$out") || die "could not parse wrk output"
      ;;
    h2)
      # finished in 10.00s, 779.50 req/s, 779.55MB/s
      # requests: 7795 total, 7803 started, 7795 done, 7795 succeeded, 0 failed, 0 errored, 0 timeout
      # status codes: 7795 2xx, 0 3xx, 0 4xx, 0 5xx
      # traffic: 7.61GB (8173342720) total, ...
      # time for request:     1.00ms     20.00ms      10.00ms      1.00ms    80.00%
      # Application protocol: h2
      parsed=$(awk '
        function ms(t) {
          if (t ~ /us$/) return t / 1000
          if (t ~ /ms$/) return t + 0
          if (t ~ /s$/) return t * 1000
          return t + 0
        }
        function fmt(m) { return m >= 1000 ? sprintf("%.2f s", m / 1000) : sprintf("%.1f ms", m) }
        /^finished in / { d = $3; sub(/,$/, "", d); secs = ms(d) / 1000 }
        /^requests: / { for (i = 2; i < NF; i++) { k = $(i + 1); sub(/,$/, "", k); r[k] = $i } }
        /^status codes: / { for (i = 3; i < NF; i++) if ($(i + 1) ~ /^[45]xx/) bad += $i }
        /^traffic: / { b = $3; gsub(/[()]/, "", b) }
        /^time for request: / { max = ms($5); mean = ms($6) }
        /^Application protocol: / { alpn = $3 }
        END {
          if (secs == "" || b == "" || !("succeeded" in r)) exit 1
          printf "%s %s %.6f mean %s, max %s|%d %s (h2load)\n", r["succeeded"], b, secs,
            fmt(mean), fmt(max), r["failed"] + r["timeout"] + bad, alpn == "h2" ? "HTTP/2" : "ALPN " alpn
        }' "$out") || die "could not parse h2load output"
      # TLS Protocol: TLSv1.3 / Cipher: TLS_AES_256_GCM_SHA384
      tls_info=$(awk '/^TLS Protocol: / { p = $3 } /^Cipher: / { c = $2 } END { print p, c }' "$out")
      ;;
  esac

  local requests bytes secs latency errors protocol wall user sys
  read -r requests bytes secs latency <<<"${parsed%%|*}"
  read -r errors protocol <<<"${parsed#*|}"
  read -r wall user sys <"$times"

  rows+=("$(awk -v obj="$name" -v proto="$protocol" -v req="$requests" -v bytes="$bytes" -v secs="$secs" \
    -v lat="$latency" -v err="$errors" -v ticks=$((ticks_after - ticks_before)) -v tck="$clk_tck" \
    -v wall="$wall" -v cuser="$user" -v csys="$sys" '
    BEGIN {
      cpu = ticks / tck
      gb = bytes / 1e9
      per_gb = "n/a"
      if (gb > 0) per_gb = sprintf("%.3f", cpu / gb)
      printf "| %s | %s | %.1f | %.1f | %s | %.0f %% | %s | %.0f %% | %s |", obj, proto, req / secs,
        bytes / 1e6 / secs, lat, 100 * cpu / wall, per_gb, 100 * (cuser + csys) / wall, err
    }')")
}

for name in "${OBJECTS[@]}"; do
  run_case "$name" h1
  run_case "$name" h2
done

# --- report (stdout) -----------------------------------------------------------
rev=$(git describe --always --dirty 2>/dev/null || echo unknown)
cat <<EOF
### vcdn origin, $(date -u +%Y-%m-%d) ($rev)

- machine: $cpu_model, $cpus CPUs; one core does AES-128-GCM at $aes128_mbs MB/s and AES-256-GCM at $aes256_mbs MB/s (openssl speed, 16 KiB blocks)
- origin pinned to CPU $SERVER_CPU, load generator to CPU $CLIENT_CPU, loopback, $CONNECTIONS connections, ${DURATION} s per run; TLS as negotiated by h2load: ${tls_info:-unknown}
- MB = 10^6 bytes, GB = 10^9 bytes (response bytes as counted by the client, headers included)
- latency: wrk reports percentiles, h2load only mean/max per request
- CPU % is of one core over the run; client CPU near 100 % means the load generator was the limit

| object | protocol | requests/s | MB/s | latency | origin CPU | origin CPU s/GB | client CPU | errors |
|---|---|---:|---:|---|---:|---:|---:|---:|
EOF
printf '%s\n' "${rows[@]}"
