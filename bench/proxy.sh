#!/usr/bin/env bash
# Proxy benchmark, in one run: direct to the upstream, ward without enforcement, ward with
# JWT validation (warm cache: one token; cold: a distinct token per request), HAProxy
# `mode http`, and HAProxy `jwt_verify` (+ iss/aud/exp rules).
#
# Pinning: throughput runs put the proxy on CPU 1 and wrk + upstream on CPU 0; latency runs
# use one connection with everything on CPU 1. Each configuration runs ROUNDS times,
# alternating, and the medians are reported. Writes bench/RESULTS-proxy.md.
#
#   bench/proxy.sh            (ROUNDS=3 DURATION=10s CONNS=32 LAT_DURATION=5s)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
LAT_DURATION=${LAT_DURATION:-5s}
CONNS=${CONNS:-32}
TOKENS_N=${TOKENS_N:-100000}
OUT=${OUT:-$ROOT/bench/RESULTS-proxy.md}

for tool in wrk haproxy taskset; do
  command -v "$tool" >/dev/null || { echo "bench/proxy.sh needs $tool" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "bench/proxy.sh needs 2 CPUs" >&2; exit 1; }

cargo build --release -q -p ward -p ward-e2e --bins --manifest-path "$ROOT/Cargo.toml"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port what
  for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "$2: nothing listens on $1" >&2; cat "$WORK"/*.err "$WORK"/*.log >&2 2>/dev/null; exit 1
}

UP=$(port); WARD_PLAIN=$(port); WARD_JWT=$(port); HA_PLAIN=$(port); HA_JWT=$(port)

taskset -c 0 "$TARGET/bench-upstream" "127.0.0.1:$UP" 2>"$WORK/upstream.log" & PIDS+=($!); UP_PID=$!
"$TARGET/bench-idp" "$WORK" "$TOKENS_N" & PIDS+=($!)
for _ in $(seq 1 1200); do [ -s "$WORK/issuer" ] && break; sleep 0.1; done
[ -s "$WORK/issuer" ] || { echo "bench-idp did not start" >&2; exit 1; }
ISSUER=$(cat "$WORK/issuer")
wait_port "$UP" upstream

cat >"$WORK/ward.yaml" <<YAML
issuers:
- issuer: "$ISSUER"
  audiences: [api]
policies:
- name: authenticated
  action: ALLOW
  rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]
listeners:
- {name: plain, listen: "127.0.0.1:$WARD_PLAIN", upstream: "127.0.0.1:$UP", enforce: false}
- {name: jwt, listen: "127.0.0.1:$WARD_JWT", upstream: "127.0.0.1:$UP"}
audit: {enabled: false}
# Small enough that cycling through TOKENS_N distinct tokens always misses (cold runs),
# while the single warm-run token stays cached.
cache: {maxEntries: 1000}
YAML
RUST_LOG=warn taskset -c 1 "$TARGET/ward" run --config "$WORK/ward.yaml" >"$WORK/ward.out" 2>"$WORK/ward.err" & PIDS+=($!); WARD_PID=$!

sed -e "s|@UPSTREAM@|127.0.0.1:$UP|" -e "s|@HAPROXY_PLAIN@|127.0.0.1:$HA_PLAIN|" -e "s|@HAPROXY_JWT@|127.0.0.1:$HA_JWT|" \
    -e "s|@ISSUER@|$ISSUER|" -e "s|@PUBKEY@|$WORK/pubkey.pem|" "$ROOT/bench/haproxy.cfg.in" >"$WORK/haproxy.cfg"
haproxy -c -q -f "$WORK/haproxy.cfg"
taskset -c 1 haproxy -f "$WORK/haproxy.cfg" 2>"$WORK/haproxy.err" & PIDS+=($!); HA_PID=$!
wait_port "$WARD_PLAIN" ward; wait_port "$WARD_JWT" ward; wait_port "$HA_PLAIN" haproxy; wait_port "$HA_JWT" haproxy

TOKEN=$(cat "$WORK/token")
# Every configuration must answer 200 before it is measured (and ward must have its keys).
check() { # name port auth
  for _ in $(seq 1 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: api" ${3:+-H "Authorization: Bearer $3"} "http://127.0.0.1:$2/small")
    [ "$code" = 200 ] && return 0; sleep 0.05
  done
  echo "$1 answers $code, not 200" >&2; exit 1
}
check direct "$UP"; check ward-plain "$WARD_PLAIN"; check ward-jwt "$WARD_JWT" "$TOKEN"
check haproxy-plain "$HA_PLAIN"; check haproxy-jwt "$HA_JWT" "$TOKEN"
# And refuse a forged token (one signature character changed, away from the padding bits).
FORGED=$(python3 -c 'import sys; h,p,s=sys.argv[1].split("."); c="A" if s[5]!="A" else "B"; print(f"{h}.{p}.{s[:5]}{c}{s[6:]}")' "$TOKEN")
for p in "$WARD_JWT" "$HA_JWT"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: api" -H "Authorization: Bearer $FORGED" "http://127.0.0.1:$p/small")
  [ "$code" = 401 ] || { echo "port $p accepted a forged token ($code)" >&2; exit 1; }
done

# name port mode(plain|warm|cold)
CONFIGS=(
  "direct $UP plain"
  "ward-plain $WARD_PLAIN plain"
  "ward-jwt-warm $WARD_JWT warm"
  "ward-jwt-cold $WARD_JWT cold"
  "haproxy-plain $HA_PLAIN plain"
  "haproxy-jwt $HA_JWT warm"
)

pin_all() { local pid; for pid in "$@"; do taskset -a -p -c "$CPU_SET" "$pid" >/dev/null; done; }

run_wrk() { # cpu conns duration port mode -> "rps p50_us p99_us"
  local cpu=$1 conns=$2 dur=$3 port=$4 mode=$5 args=()
  case $mode in
    warm) args=(-H "Authorization: Bearer $TOKEN") ;;
    cold) args=(-s "$ROOT/bench/cold-tokens.lua") ;;
  esac
  TOKENS="$WORK/tokens" taskset -c "$cpu" wrk -t1 -c"$conns" -d"$dur" --latency -H "Host: api" "${args[@]}" \
    "http://127.0.0.1:$port/small" >"$WORK/wrk.out"
  if grep -q "Non-2xx" "$WORK/wrk.out"; then echo "non-2xx answers:" >&2; cat "$WORK/wrk.out" >&2; exit 1; fi
  python3 - "$WORK/wrk.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def us(v):
    n, u = float(re.match(r"([\d.]+)(\w+)", v).group(1)), re.match(r"([\d.]+)(\w+)", v).group(2)
    return n * {"us": 1, "ms": 1e3, "s": 1e6}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = us(re.search(r"50%\s+(\S+)", t).group(1)); p99 = us(re.search(r"99%\s+(\S+)", t).group(1))
print(f"{rps:.0f} {p50:.0f} {p99:.0f}")
PY
}

: >"$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
  for cfg in "${CONFIGS[@]}"; do
    read -r name p mode <<<"$cfg"
    # Throughput: proxies on CPU 1, wrk + upstream on CPU 0.
    CPU_SET=0 pin_all "$UP_PID"; CPU_SET=1 pin_all "$WARD_PID" "$HA_PID"
    read -r rps _ _ < <(run_wrk 0 "$CONNS" "$DURATION" "$p" "$mode")
    # Latency: one connection, everything on CPU 1.
    CPU_SET=1 pin_all "$UP_PID" "$WARD_PID" "$HA_PID"
    read -r _ p50 p99 < <(run_wrk 1 1 "$LAT_DURATION" "$p" "$mode")
    echo "$name $round $rps $p50 $p99" | tee -a "$WORK/results"
  done
done

python3 - "$WORK/results" "$OUT" "$ROUNDS" "$DURATION" "$LAT_DURATION" "$CONNS" <<'PY'
import statistics, sys, subprocess, datetime
rows = [l.split() for l in open(sys.argv[1])]
out, rounds, dur, lat_dur, conns = sys.argv[2:]
order = []
data = {}
for name, _r, rps, p50, p99 in rows:
    if name not in data: order.append(name); data[name] = ([], [], [])
    for i, v in enumerate((rps, p50, p99)): data[name][i].append(float(v))
med = {n: tuple(statistics.median(x) for x in data[n]) for n in order}
d = med["direct"]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = [
    "# Proxy benchmark (bench/proxy.sh)", "",
    f"{datetime.date.today()} · {cpu} · 2 CPUs · {rounds} alternating rounds, medians shown.",
    f"Throughput: wrk -t1 -c{conns} -d{dur}, proxy on CPU 1, wrk + upstream on CPU 0.",
    f"Latency: wrk -t1 -c1 -d{lat_dur}, everything on CPU 1. Upstream: a single-threaded hyper server answering `ok`.",
    "ward: release build, audit log off; HAProxy 2.6, nbthread 1. Tokens: ES256.",
    f"Load average at the end of the run: {open('/proc/loadavg').read().split()[0:3]} (other work on the machine skews absolute numbers; compare ratios within a round).",
    "", "| configuration | req/s | vs direct | p50 µs | p99 µs | p50 vs direct |", "|---|---:|---:|---:|---:|---:|",
]
for n in order:
    rps, p50, p99 = med[n]
    lines.append(f"| {n} | {rps:.0f} | {rps/d[0]:.2f} | {p50:.0f} | {p99:.0f} | {p50/d[1]:.2f} |")
w, h = med.get("ward-jwt-warm"), med.get("haproxy-jwt")
wp, hp = med.get("ward-plain"), med.get("haproxy-plain")
lines += ["", "Ratios:",
    f"- ward plain / HAProxy plain: {wp[0]/hp[0]:.2f}× req/s, p50 {wp[1]/hp[1]:.2f}×",
    f"- ward JWT (warm cache) / HAProxy jwt_verify: {w[0]/h[0]:.2f}× req/s, p50 {w[1]/h[1]:.2f}×",
    f"- ward JWT cold / warm: {med['ward-jwt-cold'][0]/w[0]:.2f}× req/s",
    "", "Raw rounds (name round req/s p50µs p99µs):", "", "```"] + [" ".join(r) for r in rows] + ["```", ""]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
PY
