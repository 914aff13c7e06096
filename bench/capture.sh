#!/usr/bin/env bash
# Capture benchmark: HTTP latency (p50/p99, one connection) and throughput (16 connections) of
#   direct      client pod -> backend pod, nothing in between
#   captured    client pod -> (eBPF connect redirect) -> ward -> backend pod, sk_msg off
#   captured+sk the same with the sk_msg fast path on
# on a node simulated with network namespaces (one netns per pod on a bridge in a "node" netns)
# and cgroups, all in one run, alternating the three modes for REPS repetitions; medians are
# reported. Every process (wrk, ward, backend) is pinned to one CPU (taskset) so runs compare.
#
# Needs root, wrk, iproute2, a release build (built here). Usage:
#   sudo bench/capture.sh            # REPS=3 DURATION=10 CPU=1
# Results: a markdown table on stdout (copy into bench/RESULTS-capture.md).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS="${REPS:-3}"
DURATION="${DURATION:-10}"
CPU="${CPU:-1}"
CONNS="${CONNS:-16}"
MODES="${MODES:-direct captured captured+sk}"
[ "$(id -u)" = 0 ] || { echo "bench/capture.sh needs root (netns, cgroups, eBPF)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q -p ward -p ward-e2e --bin ward --bin ward-testnode
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
WARD="$TARGET_DIR/release/ward"
TN="$TARGET_DIR/release/ward-testnode"

CG2="$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)"
[ -n "$CG2" ] || { echo "no cgroup2 mount" >&2; exit 1; }
ID="wb$$"
NODE="$ID-node"; CLIENT="$ID-client"; BACKEND="$ID-backend"
CGROOT="$CG2/ward-bench-$ID"
PIN="/sys/fs/bpf/ward-bench-$ID"
WORK="$(mktemp -d)"
NET=10.250.$(( $$ % 250 ))
V6=fd00:250:$(( $$ % 250 ))
PIDS=()

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  "$WARD" uninstall --pin-path "$PIN" >/dev/null 2>&1
  for ns in "$CLIENT" "$BACKEND" "$NODE"; do ip netns del "$ns" 2>/dev/null; done
  for cg in pods/client pods/backend pods agent/ward agent/idp agent ""; do
    [ -d "$CGROOT/$cg" ] && { echo 1 > "$CGROOT/$cg/cgroup.kill" 2>/dev/null; sleep 0.1; rmdir "$CGROOT/$cg" 2>/dev/null; }
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the node
ip netns add "$NODE"
ip -n "$NODE" link set lo up
ip -n "$NODE" link add br0 type bridge
ip -n "$NODE" addr add "$NET.1/24" dev br0
ip -n "$NODE" -6 addr add "$V6::1/64" dev br0 nodad
ip -n "$NODE" link set br0 up
k=10
for pod in "$CLIENT" "$BACKEND"; do
  ip netns add "$pod"
  ip -n "$pod" link set lo up
  ip -n "$NODE" link add "vp$k" type veth peer name eth0 netns "$pod"
  ip -n "$NODE" link set "vp$k" master br0 up
  ip -n "$pod" addr add "$NET.$k/24" dev eth0
  ip -n "$pod" -6 addr add "$V6::$k/64" dev eth0 nodad
  ip -n "$pod" link set eth0 up
  k=$((k + 1))
done
mkdir -p "$CGROOT/pods/client" "$CGROOT/pods/backend" "$CGROOT/agent/ward" "$CGROOT/agent/idp"
BACKEND_ADDR="$NET.11:8080"

# in CGROUP NETNS CMD...: run CMD in that cgroup and netns, pinned to $CPU. nsenter, not
# `ip netns exec`: the latter also remounts /sys, hiding the cgroup2 and bpf mounts from ward.
in_() { local cg="$1" ns="$2"; shift 2; sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CGROOT/$cg" nsenter --net="/run/netns/$ns" taskset -c "$CPU" "$@"; }
# The same in the background; BG_PID is the process itself (sh, nsenter and taskset all exec),
# so killing it really stops it (a backgrounded shell function would be a subshell instead).
in_bg() {
  local cg="$1" ns="$2" out="$3" err="$4"; shift 4
  sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CGROOT/$cg" nsenter --net="/run/netns/$ns" taskset -c "$CPU" "$@" >"$out" 2>"$err" &
  BG_PID=$!
  PIDS+=("$BG_PID")
}

WARD_TESTNODE_QUIET=1 in_bg pods/backend "$BACKEND" /dev/null /dev/null "$TN" http backend "$BACKEND_ADDR"
in_bg agent/idp "$NODE" /dev/null /dev/null "$WARD" dev-idp --listen 127.0.0.1:9000 --issuer http://127.0.0.1:9000 --log-level warn
sleep 1
TOKEN="$(in_ agent/idp "$NODE" "$TN" post 127.0.0.1:9000 /mint '{"sub":"bench","aud":"api","role":"admin","exp":4102444800}')"
[ "$(echo "$TOKEN" | tr -cd . | wc -c)" = 2 ] || { echo "minting failed: $TOKEN" >&2; exit 1; }

config() { # $1: skMsg true|false
  cat > "$WORK/ward.yaml" <<YAML
issuers:
- {issuer: "http://127.0.0.1:9000", audiences: [api]}
policies:
- name: admins
  action: ALLOW
  target: {addresses: ["$NET.11"], ports: [8080]}
  rules: [{when: [{key: "request.auth.claims[role]", values: [admin]}]}]
audit: {enabled: false}
admin: {listen: "127.0.0.1:9901"}
capture:
  cgroup: "$CGROOT/pods"
  listen: "$NET.1:15001"
  skMsg: $1
  pinPath: "$PIN"
YAML
}

WARD_PID=""
start_ward() { # $1: skMsg
  config "$1"
  in_bg agent/ward "$NODE" /dev/null "$WORK/ward.err" "$WARD" run --config "$WORK/ward.yaml" --log-level warn
  WARD_PID=$BG_PID
  for _ in $(seq 100); do
    if in_ pods/client "$CLIENT" "$TN" get "$BACKEND_ADDR" /hello | grep -q '^status=401'; then return; fi
    sleep 0.1
  done
  echo "ward did not start capturing; stderr:" >&2; tail -5 "$WORK/ward.err" >&2
  nsenter --net="/run/netns/$NODE" curl -sS 127.0.0.1:9901/metrics 2>&1 | grep -E 'capture_(connect|sock_ops|sk_msg)' | grep -v '^#' >&2
  ls "$PIN" >&2
  exit 1
}
stop_ward() {
  [ -n "$WARD_PID" ] && { kill "$WARD_PID" 2>/dev/null; wait "$WARD_PID" 2>/dev/null || true; WARD_PID=""; }
  "$WARD" uninstall --pin-path "$PIN" >/dev/null
}

# wrk output -> "p50_us p99_us rps"
parse() {
  awk '
    function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; if (v ~ /s$/) return v*1000000; return v }
    $1 == "50%" { p50 = us($2) } $1 == "99%" { p99 = us($2) } $1 == "Requests/sec:" { rps = $2 }
    END { printf "%s %s %s\n", p50, p99, rps }'
}
run_wrk() { # $1: connections
  in_ pods/client "$CLIENT" wrk -t1 -c"$1" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "http://$BACKEND_ADDR/hello" | parse
}

check() { # the mode really is what it claims: direct answers 200 without a token, captured 401
  local got; got="$(in_ pods/client "$CLIENT" "$TN" get "$BACKEND_ADDR" /hello)"
  case "$1" in direct) [[ "$got" == status=200* ]] ;; *) [[ "$got" == status=401* ]] ;; esac || { echo "mode $1 not in force: $got" >&2; exit 1; }
}

echo "kernel $(uname -r); CPU $CPU; $REPS reps x ${DURATION}s; latency: 1 connection, throughput: $CONNS connections" >&2
declare -A LAT50 LAT99 RPS
for rep in $(seq "$REPS"); do
  for mode in $MODES; do
    case "$mode" in
      direct) stop_ward ;;
      captured) start_ward false ;;
      captured+sk) start_ward true ;;
    esac
    check "$mode"
    read -r p50 p99 _ < <(run_wrk 1)
    read -r _ _ rps < <(run_wrk "$CONNS")
    echo "rep $rep $mode: p50 ${p50}us p99 ${p99}us, ${rps} req/s" >&2
    LAT50[$mode]+="$p50 "; LAT99[$mode]+="$p99 "; RPS[$mode]+="$rps "
    [ "$mode" = direct ] || stop_ward
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "| mode | p50 latency (us) | p99 latency (us) | throughput (req/s) | runs (p50 / p99 / req/s) |"
echo "|---|---|---|---|---|"
for mode in $MODES; do
  echo "| $mode | $(echo "${LAT50[$mode]}" | median) | $(echo "${LAT99[$mode]}" | median) | $(echo "${RPS[$mode]}" | median) | ${LAT50[$mode]}/ ${LAT99[$mode]}/ ${RPS[$mode]}|"
done
