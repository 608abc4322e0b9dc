#!/usr/bin/env bash
# bench/run.sh: vcdn beside nginx and Varnish, every figure in one run.
#
# Starts, on loopback:
#   - a slow origin (bench/slow_origin.py: first byte after 50 ms, one
#     20 MiB/s link shared by all responses; paths under /fast/ skip both);
#   - a vcdn replica (HTTPS, plus a plain-HTTP listener for the comparison
#     with Varnish);
#   - nginx proxy_cache and nginx with the slice module (HTTPS, same
#     certificate, TLS 1.3 with the same cipher: bench/anchors/nginx-*.conf);
#   - Varnish (plain HTTP: it has no TLS; bench/anchors/varnish.vcl);
#   - for the routing figure, a vcdn controller in front of 3 replicas;
# each server pinned to one core, the load generators, the viewers and the
# origin to the other. Then it measures, taking turns between the servers
# within each figure:
#   6. machine limits: one core's AES-128-GCM (openssl speed), loopback TCP
#      (iperf3, one stream and one per connection of the hit figure);
#   1. cached hits, 1 MiB and 100 MiB, HTTP/1.1 (wrk) and HTTP/2 (h2load):
#      requests/s, MB/s, p50/p99, server CPU seconds per GB (/proc, all the
#      server's processes);
#   2. cold start: 20 viewers at once on a cold 100 MiB object (first byte,
#      completion, origin requests and bytes, sha256 of every body);
#   3. cold seek: 1000 bytes from the middle of a cold 100 MiB object;
#   5. routing: the controller's 302s per second and their latency, and
#      origin offload per strategy on a Zipf workload;
#   4. 200 viewers reading a cold 1 GiB object at a video bitrate: peak RSS,
#      first byte, origin bytes (each server started fresh).
# and prints one Markdown table per figure, the issue's targets beside what
# was measured, and writes a chart (SVG).
#
# Run from anywhere:  bash bench/run.sh > results.md   (progress on stderr)
# It takes about 7 minutes, plus installing and building. Missing tools
# (nginx, varnish, wrk, nghttp2-client, iperf3, curl, openssl) are installed
# with apt-get; the vcdn binary is built with `cargo build --release -p vcdn`
# unless VCDN names one. Every process it starts is stopped when it ends.
#
# Environment (defaults in brackets):
#   VCDN             vcdn binary to use [build target/release/vcdn]
#   FIGURES          which figures [limits hits cold seek routing slow]
#   CHART            where to write the SVG chart [bench/results.svg]
#   RESULTS_JSONL    also keep the raw measurements here [not kept]
#   SERVER_CPU, CLIENT_CPU               [0, 1]
#   CONNECTIONS      connections for wrk and h2load [8]
#   HIT_SECONDS, HIT_ROUNDS              seconds per run, interleaved rounds [5, 2]
#   FIRST_BYTE_MS, ORIGIN_RATE           slow origin [50, 20971520 bytes/s]
#   COLD_VIEWERS                         [20]
#   SLOW_VIEWERS, SLOW_BITRATE, SLOW_SECONDS, SLOW_RAMP   [200, 4000000 bit/s, 20, 2]
#   ZIPF_OBJECTS, ZIPF_REQUESTS, ZIPF_ALPHA, ZIPF_CONCURRENCY, ZIPF_OBJECT_BYTES
#                                        [300, 2000, 0.9, 8, 262144]
#   ROUTE_SECONDS    seconds per redirect-rate run [4]
#   ENDPOINTS        servers to measure [vcdn-tls nginx-cache nginx-slice vcdn-plain varnish]
#   KEEP=1           keep the scratch folder (logs, configs, caches)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CONNECTIONS=${CONNECTIONS:-8}
HIT_SECONDS=${HIT_SECONDS:-5}
HIT_ROUNDS=${HIT_ROUNDS:-2}
FIRST_BYTE_MS=${FIRST_BYTE_MS:-50}
ORIGIN_RATE=${ORIGIN_RATE:-20971520}
COLD_VIEWERS=${COLD_VIEWERS:-20}
SLOW_VIEWERS=${SLOW_VIEWERS:-200}
SLOW_BITRATE=${SLOW_BITRATE:-4000000}
SLOW_SECONDS=${SLOW_SECONDS:-20}
SLOW_RAMP=${SLOW_RAMP:-2}
ZIPF_OBJECTS=${ZIPF_OBJECTS:-300}
ZIPF_REQUESTS=${ZIPF_REQUESTS:-2000}
ZIPF_ALPHA=${ZIPF_ALPHA:-0.9}
ZIPF_CONCURRENCY=${ZIPF_CONCURRENCY:-8}
ZIPF_OBJECT_BYTES=${ZIPF_OBJECT_BYTES:-262144}
ROUTE_SECONDS=${ROUTE_SECONDS:-4}
FIGURES=${FIGURES:-limits hits cold seek routing slow}
CHART=${CHART:-bench/results.svg}
# The longest wait for the origin to finish what a server asked of it
# before a figure counts its bytes (a 100 MiB fill takes 5 s).
QUIET_MAX_S=15

log() { printf '%s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
want() { [[ " $FIGURES " == *" $1 "* ]]; }

# --- tools -------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v nginx >/dev/null || missing+=(nginx)
command -v varnishd >/dev/null || missing+=(varnish)
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v taskset >/dev/null || missing+=(util-linux)
command -v ps >/dev/null || missing+=(procps)
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update >&2
  # The packages would start their own nginx (port 80) and varnish (6081)
  # services; the suite runs its own instances, so keep those from starting.
  guard=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  rc=0
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2 || rc=$?
  [[ -z $guard ]] || "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get install ${missing[*]} failed"
fi
for tool in python3 sha256sum awk getconf; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
nginx -V 2>&1 | grep -q -- '--with-http_slice_module' || die "this nginx has no slice module"
cpus=$(nproc)
((cpus >= 2)) || die "need at least 2 CPUs (servers and load generators on separate cores), have $cpus"

# --- binary ------------------------------------------------------------------
if [[ -z ${VCDN:-} ]]; then
  VCDN=${CARGO_TARGET_DIR:-target}/release/vcdn
  log "building $VCDN (cargo build --release -p vcdn)"
  cargo build --release -p vcdn >&2 || die "cargo build failed"
fi
[[ -x $VCDN ]] || die "vcdn binary not found at $VCDN"
VCDN=$(realpath "$VCDN")

# --- scratch space; every process started is stopped on exit ---------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/vcdn-bench.XXXXXX")
data=$work/data
certs=$work/certs
results=$work/results.jsonl
mkdir -p "$data" "$certs"
free_kib=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
((free_kib > 8 * 1024 * 1024)) || die "need 8 GiB free under ${TMPDIR:-/tmp}"

started=()
track() { started+=("$1"); }

# The process and all its descendants (nginx's workers, varnishd's child).
tree_pids() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2; pids[NR] = $1 }
    END {
      keep[root] = 1; print root
      do {
        more = 0
        for (i in pids) { p = pids[i]; if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; print p; more = 1 } }
      } while (more)
    }'
}

stop_tree() {
  local root=$1 pids pid
  kill -0 "$root" 2>/dev/null || return 0
  pids=$(tree_pids "$root")
  kill -TERM "$root" 2>/dev/null || true
  for _ in {1..50}; do
    kill -0 "$root" 2>/dev/null || break
    sleep 0.1
  done
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  wait "$root" 2>/dev/null || true
}

cleanup() {
  local rc=$? i
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do
    stop_tree "${started[i]}"
  done
  if ((rc != 0)); then
    log "--- logs of the failed run (last lines) ---"
    for f in "$work"/*.log "$work"/*/*.log; do
      [[ -s $f ]] || continue
      log "== $f"
      tail -n 8 "$f" >&2
    done
  fi
  if [[ -n ${KEEP:-} ]]; then log "scratch folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free ports, chosen at once so they differ.
read -r P_ORIGIN P_VCDN P_VCDN_PLAIN P_NGINX P_SLICE P_VARNISH P_IPERF P_CTL P_R1 P_R2 P_R3 < <(
  python3 -c '
import socket
socks = [socket.socket() for _ in range(11)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')

clk_tck=$(getconf CLK_TCK)
# utime + stime of a process and its descendants, in clock ticks.
tree_ticks() {
  local total=0 pid stat f
  for pid in $(tree_pids "$1"); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -r -a f <<<"${stat##*) }"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# Appends one JSON record: report.py record key=value ... (@file: JSON from a file).
record() { python3 bench/report.py record "$@" >>"$results"; }

# --- data ---------------------------------------------------------------------
log "making the test files"
head -c $((1024 * 1024)) /dev/urandom >"$data/1MiB.bin"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$data/100MiB.bin"
head -c $((1024 * 1024 * 1024)) /dev/urandom >"$data/1GiB.bin"
head -c "$ZIPF_OBJECT_BYTES" /dev/urandom >"$data/z.bin"
# Each server gets its own name (a hard link) for each cold figure, so every
# run starts cold and the origin counts it apart.
all_endpoints=(vcdn-tls nginx-cache nginx-slice vcdn-plain varnish)
read -r -a endpoints <<<"${ENDPOINTS:-${all_endpoints[*]}}"
for ep in "${all_endpoints[@]}"; do
  ln "$data/100MiB.bin" "$data/cold-$ep.bin"
  ln "$data/100MiB.bin" "$data/seek-$ep.bin"
  ln "$data/1GiB.bin" "$data/slow-$ep.bin"
done
for ((i = 0; i < ZIPF_OBJECTS; i++)); do ln "$data/z.bin" "$data/$(printf 'z%03d.bin' "$i")"; done

"$VCDN" cert --dir "$certs" >/dev/null 2>&1 || die "vcdn cert failed"
# Clients offer TLS 1.3 with AES-128-GCM only, so every TLS server uses the
# same cipher (the one `openssl speed` measures below).
cat >"$work/openssl-client.cnf" <<'EOF'
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_module
[ssl_module]
system_default = tls_defaults
[tls_defaults]
MinProtocol = TLSv1.3
Ciphersuites = TLS_AES_128_GCM_SHA256
EOF
export OPENSSL_CONF=$work/openssl-client.cnf
: >"$work/empty.toml"

# --- servers ------------------------------------------------------------------
declare -A label=([vcdn-tls]="vcdn (TLS)" [nginx-cache]="nginx proxy_cache (TLS)"
  [nginx-slice]="nginx slice (TLS)" [vcdn-plain]="vcdn (plain)" [varnish]="Varnish (plain)")
declare -A base=([vcdn-tls]=https://127.0.0.1:$P_VCDN [nginx-cache]=https://127.0.0.1:$P_NGINX
  [nginx-slice]=https://127.0.0.1:$P_SLICE [vcdn-plain]=http://127.0.0.1:$P_VCDN_PLAIN
  [varnish]=http://127.0.0.1:$P_VARNISH)
declare -A server_of=([vcdn-tls]=vcdn [nginx-cache]=nginx-cache [nginx-slice]=nginx-slice
  [vcdn-plain]=vcdn [varnish]=varnish)
declare -A pid_of=()
origin_url=http://127.0.0.1:$P_ORIGIN

curl_to() { # URL [curl options...]: curl trusting the local CA
  local url=$1
  shift
  curl -sS --cacert "$certs/ca.pem" "$@" "$url"
}

wait_ready() { # URL PID WHAT: until the server answers anything
  local deadline=$((SECONDS + 60))
  until [[ $(curl -s -o /dev/null --max-time 2 --cacert "$certs/ca.pem" -w '%{http_code}' "$1" 2>/dev/null) == [1-5]* ]]; do
    kill -0 "$2" 2>/dev/null || die "$3 exited during startup"
    ((SECONDS < deadline)) || die "$3 not ready after 60 s"
    sleep 0.2
  done
}

start_origin() {
  mkdir -p "$work/origin"
  # taskset execs its command, so $! is the server's own PID (likewise below).
  taskset -c "$CLIENT_CPU" python3 bench/slow_origin.py --listen "127.0.0.1:$P_ORIGIN" \
    --dir "$data" --first-byte-ms "$FIRST_BYTE_MS" --rate-bytes "$ORIGIN_RATE" \
    >"$work/origin/origin.log" 2>&1 &
  pid_of[origin]=$!
  track $!
  wait_ready "$origin_url/__stats" "${pid_of[origin]}" "slow origin"
}

start_vcdn() {
  local dir=$work/vcdn
  mkdir -p "$dir"
  printf '[replica]\nplain_listen = "127.0.0.1:%s"\n' "$P_VCDN_PLAIN" >"$dir/vcdn.toml"
  taskset -c "$SERVER_CPU" "$VCDN" --config "$dir/vcdn.toml" replica --listen "127.0.0.1:$P_VCDN" \
    --origin "$origin_url" --cache-dir "$dir/cache" --cert-dir "$certs" \
    >>"$dir/stdout.log" 2>>"$dir/vcdn.log" &
  pid_of[vcdn]=$!
  track $!
  wait_ready "https://127.0.0.1:$P_VCDN/healthz" "${pid_of[vcdn]}" "vcdn replica"
  wait_ready "http://127.0.0.1:$P_VCDN_PLAIN/healthz" "${pid_of[vcdn]}" "vcdn replica (plain)"
}

start_nginx() { # NAME CONF PORT
  local name=$1 conf=$2 port=$3 dir=$work/$1
  mkdir -p "$dir"
  sed -e "s#@DIR@#$dir#g; s#@CERT@#$certs/cert.pem#g; s#@KEY@#$certs/key.pem#g" \
    -e "s#@ORIGIN@#127.0.0.1:$P_ORIGIN#g; s#@LISTEN@#127.0.0.1:$port#g" "$conf" >"$dir/nginx.conf"
  # Started as root, nginx's workers would run as www-data, which cannot
  # enter the private scratch folder: keep them the user running the suite.
  local global='daemon off;'
  ((EUID != 0)) || global+=" user $(id -un) $(id -gn);"
  taskset -c "$SERVER_CPU" nginx -e "$dir/error.log" -c "$dir/nginx.conf" -g "$global" \
    >"$dir/stdout.log" 2>&1 &
  pid_of[$name]=$!
  track $!
  wait_ready "https://127.0.0.1:$port/" "${pid_of[$name]}" "$name"
}

start_varnish() {
  local dir=$work/varnish
  mkdir -p "$dir"
  rm -rf "$dir/work"
  sed -e "s#@ORIGIN_HOST@#127.0.0.1#g; s#@ORIGIN_PORT@#$P_ORIGIN#g" bench/anchors/varnish.vcl \
    >"$dir/default.vcl"
  # malloc storage (objects in memory, as Varnish serves fastest), one
  # thread pool for one core, HTTP/2 (h2c) on.
  taskset -c "$SERVER_CPU" varnishd -F -j none -n "$dir/work" -a "127.0.0.1:$P_VARNISH" -T none \
    -f "$dir/default.vcl" -s malloc,8G -p thread_pools=1 -p feature=+http2 \
    >"$dir/varnish.log" 2>&1 &
  pid_of[varnish]=$!
  track $!
  wait_ready "http://127.0.0.1:$P_VARNISH/" "${pid_of[varnish]}" "varnish"
}

start_server() {
  case $1 in
    vcdn) start_vcdn ;;
    nginx-cache) start_nginx nginx-cache bench/anchors/nginx-proxy-cache.conf "$P_NGINX" ;;
    nginx-slice) start_nginx nginx-slice bench/anchors/nginx-slice.conf "$P_SLICE" ;;
    varnish) start_varnish ;;
  esac
}

stop_server() {
  if [[ -n ${pid_of[$1]:-} ]]; then
    stop_tree "${pid_of[$1]}"
    pid_of[$1]=
  fi
}

origin_stats() { curl -sf --max-time 5 "$origin_url/__stats" >"$1" || die "origin /__stats failed"; }

# Waits until the origin sends nothing (fills a server started go on after
# its viewer left), at most QUIET_MAX_S.
origin_quiet() {
  local deadline=$((SECONDS + QUIET_MAX_S)) active
  while ((SECONDS < deadline)); do
    kill -0 "${pid_of[origin]}" 2>/dev/null || die "the slow origin exited"
    active=$(curl -sf --max-time 5 "$origin_url/__stats" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["active"])' 2>/dev/null) || active=1
    ((active == 0)) && return 0
    sleep 0.25
  done
}

viewers() { taskset -c "$CLIENT_CPU" python3 bench/viewers.py --cafile "$certs/ca.pem" "$@"; }

t_start=$SECONDS
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 6. machine limits (before any server runs) -------------------------------------
aes=null
loopback=null
if want limits; then
  log "limits: AES-128-GCM on CPU $SERVER_CPU (openssl speed, 3 s), loopback TCP (iperf3, 2 x 4 s)"
  aes=$(taskset -c "$SERVER_CPU" openssl speed -seconds 3 -bytes 16384 -evp aes-128-gcm 2>/dev/null |
    awk 'tolower($1) == "aes-128-gcm" { v = $NF; sub(/k$/, "", v); printf "%.0f", v / 1000 }') || true
  aes=${aes:-null}
  taskset -c "$SERVER_CPU" iperf3 -s -1 -B 127.0.0.1 -p "$P_IPERF" >"$work/iperf-server.log" 2>&1 &
  iperf_pid=$!
  track $iperf_pid
  # One stream, then as many as the hit figure's connections.
  loopback_many=null
  iperf_gbps() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e9)' "$1"
  }
  for _ in {1..20}; do
    if taskset -c "$CLIENT_CPU" iperf3 -c 127.0.0.1 -p "$P_IPERF" -t 4 -J >"$work/iperf.json" 2>/dev/null; then
      loopback=$(iperf_gbps "$work/iperf.json") || loopback=null
      break
    fi
    sleep 0.2
  done
  stop_tree "$iperf_pid"
  taskset -c "$SERVER_CPU" iperf3 -s -1 -B 127.0.0.1 -p "$P_IPERF" >>"$work/iperf-server.log" 2>&1 &
  iperf_pid=$!
  track $iperf_pid
  for _ in {1..20}; do
    if taskset -c "$CLIENT_CPU" iperf3 -c 127.0.0.1 -p "$P_IPERF" -t 4 -P "$CONNECTIONS" -J >"$work/iperf.json" 2>/dev/null; then
      loopback_many=$(iperf_gbps "$work/iperf.json") || loopback_many=null
      break
    fi
    sleep 0.2
  done
  stop_tree "$iperf_pid"
  log "  AES-128-GCM ${aes} MB/s, loopback ${loopback} Gbit/s (1 stream), ${loopback_many} Gbit/s ($CONNECTIONS streams)"
fi
record fig=limits aes128_gcm_MBps="$aes" loopback_Gbps="$loopback" loopback_many_Gbps="${loopback_many:-null}" \
  streams="$CONNECTIONS"

# --- start everything -------------------------------------------------------------
log "starting the slow origin, vcdn, nginx proxy_cache, nginx slice, Varnish"
start_origin
start_vcdn
start_server nginx-cache
start_server nginx-slice
start_varnish

declare -A tls_seen=()
for ep in vcdn-tls nginx-cache nginx-slice; do
  tls_seen[$ep]=$(curl_to "${base[$ep]}/healthz" -v -o /dev/null 2>&1 |
    sed -n 's/^\* SSL connection using //p' | head -1)
done

# --- 1. cached hits -----------------------------------------------------------------
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

# Fills every server's cache, then checks a hit over both protocols: the
# body's sha256 and the cache's own word that it was a hit.
warm_and_verify() {
  local ep=$1 obj=$2 url proto want got status
  url=${base[$ep]}/fast/$obj
  want=$(sha256sum <"$data/$obj" | cut -d' ' -f1)
  curl_to "$url" -f -o /dev/null || die "${label[$ep]}: GET $url failed"
  for proto in 1.1 2; do
    local opt=--http1.1
    if [[ $proto == 2 ]]; then
      if [[ $url == https:* ]]; then opt=--http2; else opt=--http2-prior-knowledge; fi
    fi
    status=$(curl_to "$url" -f "$opt" -D - -o "$work/download" | tr -d '\r' |
      awk -F': *' 'tolower($1) == "x-cache" || tolower($1) == "x-cache-status" { print $2 }')
    got=$(sha256sum <"$work/download" | cut -d' ' -f1)
    [[ $got == "$want" ]] || die "${label[$ep]}: $obj over HTTP/$proto: sha256 mismatch"
    [[ $status == HIT* ]] || log "  warning: ${label[$ep]}: $obj over HTTP/$proto was '$status', not a hit"
  done
  rm -f "$work/download"
}

run_hit() { # ENDPOINT OBJECT PROTO ROUND
  local ep=$1 obj=$2 proto=$3 round=$4 url pid before after cmd kind
  url=${base[$ep]}/fast/$obj
  pid=${pid_of[${server_of[$ep]}]}
  case $proto in
    h1) cmd=(wrk -t1 "-c$CONNECTIONS" "-d${HIT_SECONDS}s" --timeout 30s -s "$work/report.lua" "$url") kind=wrk ;;
    h2)
      rm -f "$work/h2load.tsv"
      cmd=(h2load -t1 "-c$CONNECTIONS" -m1 -D "$HIT_SECONDS" --tls13-ciphers=TLS_AES_128_GCM_SHA256
        "--log-file=$work/h2load.tsv" "$url") kind=h2load
      ;;
  esac
  before=$(tree_ticks "$pid")
  local TIMEFORMAT='%U %S' user sys
  if ! { time taskset -c "$CLIENT_CPU" timeout $((HIT_SECONDS + 60)) "${cmd[@]}" >"$work/hit.out" 2>&1; } 2>"$work/hit.time"; then
    tail -n 5 "$work/hit.out" >&2
    die "${cmd[0]} failed against ${label[$ep]}"
  fi
  after=$(tree_ticks "$pid")
  read -r user sys <"$work/hit.time"
  local objlabel=${obj%.bin}
  objlabel=${objlabel/MiB/ MiB}
  local extra=(fig=hits "server=${label[$ep]}" "object=$objlabel" round="$round"
    "proto=$([[ $proto == h1 ]] && echo HTTP/1.1 || echo HTTP/2)"
    cpu_s="$(awk -v t=$((after - before)) -v h="$clk_tck" 'BEGIN { print t / h }')"
    client_s="$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')")
  if [[ $kind == wrk ]]; then
    python3 bench/report.py wrk "$work/hit.out" "${extra[@]}" >>"$results"
  else
    python3 bench/report.py h2load "$work/hit.out" "$work/h2load.tsv" "${extra[@]}" >>"$results"
  fi
  log "  ${label[$ep]}, $obj, $proto, round $round: $(python3 bench/report.py brief "$results")"
}

if want hits; then
  log "1. cached hits: filling and verifying"
  for ep in "${endpoints[@]}"; do
    for obj in 1MiB.bin 100MiB.bin; do warm_and_verify "$ep" "$obj"; done
  done
  log "1. cached hits: $HIT_ROUNDS rounds x ${#endpoints[@]} servers x 4 cases x $HIT_SECONDS s"
  for ((round = 1; round <= HIT_ROUNDS; round++)); do
    for obj in 1MiB.bin 100MiB.bin; do
      for proto in h1 h2; do
        for ep in "${endpoints[@]}"; do run_hit "$ep" "$obj" "$proto" "$round"; done
      done
    done
  done
fi

# --- 2. cold start --------------------------------------------------------------
if want cold; then
  log "2. cold start: $COLD_VIEWERS viewers on a cold 100 MiB object"
  for ep in "${endpoints[@]}"; do
    origin_quiet
    origin_stats "$work/before.json"
    viewers --timeout 120 cold --url "${base[$ep]}/cold-$ep.bin" --n "$COLD_VIEWERS" \
      --expect "$data/100MiB.bin" >"$work/result.json" || true
    origin_quiet
    origin_stats "$work/after.json"
    record fig=cold "server=${label[$ep]}" size=$((100 * 1024 * 1024)) result=@"$work/result.json" \
      origin_before=@"$work/before.json" origin_after=@"$work/after.json"
    log "  ${label[$ep]}: $(python3 bench/report.py brief "$results")"
  done
fi

# --- 3. cold seek ----------------------------------------------------------------
if want seek; then
  log "3. cold seek: 1000 bytes in the middle of a cold 100 MiB object"
  for ep in "${endpoints[@]}"; do
    origin_quiet
    origin_stats "$work/before.json"
    viewers --timeout 60 seek --url "${base[$ep]}/seek-$ep.bin" --expect "$data/100MiB.bin" \
      >"$work/result.json" || true
    origin_quiet
    origin_stats "$work/after.json"
    record fig=seek "server=${label[$ep]}" result=@"$work/result.json" \
      origin_before=@"$work/before.json" origin_after=@"$work/after.json"
    log "  ${label[$ep]}: $(python3 bench/report.py brief "$results")"
  done
fi

# --- 5. routing ------------------------------------------------------------------
if want routing; then
  log "5. routing: controller in front of 3 replicas, per strategy"
  for strategy in round-robin consistent-hash least-loaded; do
    dir=$work/route-$strategy
    mkdir -p "$dir"
    rpids=()
    replica_args=()
    rports=("$P_R1" "$P_R2" "$P_R3")
    for port in "${rports[@]}"; do
      taskset -c "$SERVER_CPU" "$VCDN" --config "$work/empty.toml" replica --listen "127.0.0.1:$port" \
        --origin "$origin_url" --cache-dir "$dir/cache-$port" --cert-dir "$certs" \
        >>"$dir/replica-$port.out" 2>>"$dir/replica-$port.log" &
      rpids+=($!)
      track $!
      replica_args+=(--replica "https://127.0.0.1:$port")
    done
    for i in 0 1 2; do
      wait_ready "https://127.0.0.1:${rports[i]}/healthz" "${rpids[i]}" "replica ${rports[i]}"
    done
    taskset -c "$SERVER_CPU" "$VCDN" --config "$work/empty.toml" controller --listen "127.0.0.1:$P_CTL" \
      "${replica_args[@]}" --origin "$origin_url" --ca "$certs/ca.pem" --cert-dir "$certs" \
      --strategy "$strategy" >>"$dir/controller.out" 2>>"$dir/controller.log" &
    cpid=$!
    track $cpid
    ctl=https://127.0.0.1:$P_CTL
    wait_ready "$ctl/healthz" "$cpid" "controller"
    # Routing starts once the probes have found the replicas healthy.
    deadline=$((SECONDS + 20))
    until [[ $(curl_to "$ctl/api/cluster" -f 2>/dev/null | python3 -c '
import json, sys
print(sum(1 for r in json.load(sys.stdin).get("replicas", []) if r.get("healthy")))' 2>/dev/null) == 3 ]]; do
      ((SECONDS < deadline)) || die "controller: replicas not healthy after 20 s"
      sleep 0.2
    done
    path=/fast/z000.bin
    taskset -c "$CLIENT_CPU" timeout $((ROUTE_SECONDS + 30)) wrk -t1 "-c$CONNECTIONS" "-d${ROUTE_SECONDS}s" \
      -s "$work/report.lua" "$ctl$path" >"$dir/wrk.out" 2>&1 || die "wrk against the controller failed"
    python3 bench/report.py wrk "$dir/wrk.out" >"$dir/h1.json"
    rm -f "$work/h2load.tsv"
    taskset -c "$CLIENT_CPU" timeout $((ROUTE_SECONDS + 30)) h2load -t1 "-c$CONNECTIONS" -m10 -D "$ROUTE_SECONDS" \
      --tls13-ciphers=TLS_AES_128_GCM_SHA256 "--log-file=$work/h2load.tsv" "$ctl$path" >"$dir/h2load.out" 2>&1 ||
      die "h2load against the controller failed"
    python3 bench/report.py h2load "$dir/h2load.out" "$work/h2load.tsv" >"$dir/h2.json"
    for _ in {1..20}; do
      taskset -c "$CLIENT_CPU" curl -s --cacert "$certs/ca.pem" -o /dev/null -w '%{http_code} %{time_total}\n' "$ctl$path"
    done >"$dir/fresh.txt"
    fresh=$(awk '$1 == 302 { print $2 }' "$dir/fresh.txt" | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "null" }')
    origin_quiet
    origin_stats "$work/before.json"
    viewers --timeout 180 zipf --controller "$ctl" --objects "$ZIPF_OBJECTS" --requests "$ZIPF_REQUESTS" \
      --alpha "$ZIPF_ALPHA" --concurrency "$ZIPF_CONCURRENCY" --expect "$data/z.bin" >"$dir/zipf.json" || true
    origin_quiet
    origin_stats "$work/after.json"
    record fig=routing "strategy=$strategy" h1=@"$dir/h1.json" h2=@"$dir/h2.json" fresh_redirect_s="$fresh" \
      zipf=@"$dir/zipf.json" origin_before=@"$work/before.json" origin_after=@"$work/after.json"
    log "  $strategy: $(python3 bench/report.py brief "$results")"
    stop_tree "$cpid"
    for pid in "${rpids[@]}"; do stop_tree "$pid"; done
  done
fi

# --- 4. many slow viewers -----------------------------------------------------------
if want slow; then
  log "4. $SLOW_VIEWERS viewers at $((SLOW_BITRATE / 1000)) kbit/s on a cold 1 GiB object, $SLOW_SECONDS s each"
  for server in vcdn nginx-cache nginx-slice varnish; do stop_server "$server"; done
  for ep in "${endpoints[@]}"; do
    server=${server_of[$ep]}
    start_server "$server"
    origin_quiet
    origin_stats "$work/before.json"
    viewers --timeout $((SLOW_SECONDS + 60)) slow --url "${base[$ep]}/slow-$ep.bin" --n "$SLOW_VIEWERS" \
      --bitrate "$SLOW_BITRATE" --duration "$SLOW_SECONDS" --ramp "$SLOW_RAMP" \
      --watch-pid "${pid_of[$server]}" --expect "$data/1GiB.bin" >"$work/result.json" || true
    # Stopping the server ends the whole-object fills it started, so every
    # server's origin bytes are those of the same span of time.
    stop_server "$server"
    origin_quiet
    origin_stats "$work/after.json"
    record fig=slow "server=${label[$ep]}" ramp_s="$SLOW_RAMP" result=@"$work/result.json" \
      origin_before=@"$work/before.json" origin_after=@"$work/after.json"
    log "  ${label[$ep]}: $(python3 bench/report.py brief "$results")"
  done
fi

# --- report -------------------------------------------------------------------------
tls_json=$(for ep in vcdn-tls nginx-cache nginx-slice; do printf '%s\t%s\n' "${label[$ep]}" "${tls_seen[$ep]:-?}"; done |
  python3 -c 'import json, sys; print(json.dumps(dict(l.rstrip("\n").split("\t") for l in sys.stdin)))')
chunk_bytes=$(awk -F' *= *' '$1 == "chunk_bytes" { print $2; exit }' vcdn.toml)
read_ahead=$(awk -F' *= *' '$1 == "read_ahead_chunks" { print $2; exit }' vcdn.toml)
record fig=machine "date=$(date -u +%Y-%m-%d)" "rev=$(git describe --always --dirty 2>/dev/null || echo unknown)" \
  "cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)" cpus="$cpus" \
  mem_gib="$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" "kernel=$(uname -r)" \
  server_cpu="$SERVER_CPU" client_cpu="$CLIENT_CPU" connections="$CONNECTIONS" \
  hit_seconds="$HIT_SECONDS" hit_rounds="$HIT_ROUNDS" \
  "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')" \
  "varnish=$(varnishd -V 2>&1 | head -1 | sed 's/^varnishd (\([^ ]*\).*/\1/')" \
  "wrk=wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')" "h2load=$(h2load --version | head -1)" \
  "python=$(python3 -c 'import platform; print(platform.python_version())')" \
  "origin=first byte after $FIRST_BYTE_MS ms, one link of $(awk -v r="$ORIGIN_RATE" 'BEGIN { printf "%g", r / 1048576 }') MiB/s shared by all responses, plain HTTP" \
  tls="$tls_json" chunk_bytes="${chunk_bytes:-1048576}" read_ahead_chunks="${read_ahead:-4}" \
  zipf_object_bytes="$ZIPF_OBJECT_BYTES" zipf_concurrency="$ZIPF_CONCURRENCY" \
  wall_s=$((SECONDS - t_start)) "load_before=$load_before" "load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
[[ -z ${RESULTS_JSONL:-} ]] || cp "$results" "$RESULTS_JSONL"
python3 bench/report.py render "$results" --svg "$CHART"
log "done in $(((SECONDS - t_start) / 60)) min $(((SECONDS - t_start) % 60)) s; chart: $CHART"
