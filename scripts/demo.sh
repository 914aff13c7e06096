#!/usr/bin/env bash
# The ward demo: transparent, per-request OIDC enforcement on a small node made of network
# namespaces and cgroups. Run it through `cargo xtask demo` (which bootstraps and builds).
#
#   WARD_BIN=target/debug/ward scripts/demo.sh [--ci]
#
# --ci: no pauses, and every step's status code is asserted (exit 1 on a mismatch).
set -euo pipefail

CI_MODE=0
[[ "${1:-}" == "--ci" ]] && CI_MODE=1
WARD="${WARD_BIN:?set WARD_BIN to the ward binary}"
WARD="$(readlink -f "$WARD")"
TAG="wd$$"                       # unique names so an interrupted run never collides
NODE="${TAG}-node" CLIENT="${TAG}-client" BACKEND="${TAG}-backend"
NET=10.231.$(( $$ % 200 + 20 ))
NODE_IP=$NET.1 CLIENT_IP=$NET.2 BACKEND_IP=$NET.3
WORK="$(mktemp -d /tmp/ward-demo.XXXXXX)"
FAILED=0
# shellcheck source=scripts/demo-lib.sh
source "$(dirname "$0")/demo-lib.sh"


# ---------------------------------------------------------------- no root: explicit listener
if [[ $EUID -ne 0 ]]; then
  bold "Not root: eBPF capture needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (and network namespaces)."
  say "Running the same story through an explicit listener on loopback instead: the client"
  say "calls ward's listener, which enforces and forwards to the backend. Run as root to see"
  say "the transparent version, where the client calls the backend's own address."
  rmdir "$WORK"
  exec "$(dirname "$0")/demo-explicit.sh" "$@"
fi

CG_MOUNT="$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)"
[[ -n "$CG_MOUNT" ]] || { echo "no cgroup2 mount found in /proc/self/mountinfo" >&2; exit 1; }
CG_ROOT="$CG_MOUNT/ward-demo-$TAG"
PIN="/sys/fs/bpf/ward-demo-$TAG"

cleanup() {
  set +e
  [[ -n "${WARD_PID:-}" ]] && kill "$WARD_PID" 2>/dev/null
  [[ -n "${IDP_PID:-}" ]] && kill "$IDP_PID" 2>/dev/null
  [[ -n "${BACKEND_PID:-}" ]] && kill "$BACKEND_PID" 2>/dev/null
  wait 2>/dev/null
  "$WARD" uninstall --pin-path "$PIN" >/dev/null 2>&1
  for ns in "$CLIENT" "$BACKEND" "$NODE"; do ip netns del "$ns" 2>/dev/null; done
  for cg in pods/client pods/backend pods agent; do
    [[ -d "$CG_ROOT/$cg" ]] && { cat "$CG_ROOT/$cg/cgroup.procs" 2>/dev/null | xargs -r kill 2>/dev/null; sleep 0.1; rmdir "$CG_ROOT/$cg" 2>/dev/null; }
  done
  rmdir "$CG_ROOT" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

bold "1. Building a node: network namespaces for the node and two pods, cgroups for the pods"
ip netns add "$NODE"; ip netns add "$CLIENT"; ip netns add "$BACKEND"
ip -n "$NODE" link add br0 type bridge
ip -n "$NODE" addr add "$NODE_IP/24" dev br0
ip -n "$NODE" link set br0 up
ip -n "$NODE" link set lo up
for pod in CLIENT BACKEND; do
  ns="${!pod}" ip_var="${pod}_IP" veth="v${pod:0:1}$$"   # interface names: 15 bytes at most
  ip link add "$veth" netns "$NODE" type veth peer name eth0 netns "$ns"
  ip -n "$NODE" link set "$veth" master br0 up
  ip -n "$ns" addr add "${!ip_var}/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done
mkdir -p "$CG_ROOT/pods/client" "$CG_ROOT/pods/backend" "$CG_ROOT/agent"
say "node $NODE_IP (bridge), client pod $CLIENT_IP, backend pod $BACKEND_IP; pods have no default route"
say "cgroups under ${CG_ROOT}: pods/client, pods/backend, agent"

in_pod() { # in_pod CGROUP NETNS CMD...: run like a pod would (own cgroup and netns)
  local cg="$1" ns="$2"; shift 2
  sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG_ROOT/$cg" ip netns exec "$ns" "$@"
}
# nsenter joins only the network namespace: `ip netns exec` also remounts /sys, which would
# hide the cgroup2 and bpffs mounts from ward.
in_node() { nsenter --net="/var/run/netns/$NODE" "$@"; }

bold "2. Starting a backend pod (it knows nothing about tokens) and a local OIDC issuer"
write_backend "$WORK/backend.py"
in_pod pods/backend "$BACKEND" python3 -u "$WORK/backend.py" 0.0.0.0 8080 > "$WORK/backend.log" 2>&1 &
BACKEND_PID=$!
ISSUER="http://$NODE_IP:9000"
in_node "$WARD" dev-idp --listen "$NODE_IP:9000" --issuer "$ISSUER" --audience my-backend-client --max-age 300 > "$WORK/idp.log" 2>&1 &
IDP_PID=$!
say "backend: http://$BACKEND_IP:8080 (logs every request it receives)"
say "issuer:  $ISSUER (discovery + JWKS; mints tokens for the demo)"

cat > "$WORK/ward.yaml" <<EOF
issuers:
  - issuer: $ISSUER
    audiences: [my-backend-client]
    outputClaimToHeaders: [{header: x-user-email, claim: email}]
policies:
  - name: backend-authz
    target: {addresses: ["$BACKEND_IP/32"], ports: [8080]}
    action: ALLOW
    rules:
      - to: [{operation: {methods: ["GET"]}}]
        when: [{key: "request.auth.claims[email]", values: ["user@example.com"]}]
capture:
  cgroup: ${CG_ROOT#"$CG_MOUNT"/}/pods
  listen: $NODE_IP:15001
  pinPath: $PIN
admin:
  listen: $NODE_IP:15020
EOF

bold "3. Starting ward with eBPF capture on the pods' cgroup"
sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG_ROOT/agent" nsenter --net="/var/run/netns/$NODE" "$WARD" run --config "$WORK/ward.yaml" > "$WORK/audit.log" 2> "$WORK/ward.log" &
WARD_PID=$!
for _ in $(seq 100); do
  [[ "$(in_node curl -s -o /dev/null -w '%{http_code}' "http://$NODE_IP:15020/readyz" 2>/dev/null)" == 200 ]] && break
  sleep 0.1
done
READY=$(in_node curl -s -o "$WORK/readyz" -w '%{http_code}' "http://$NODE_IP:15020/readyz" || true)
expect 200 "$READY" "ward /readyz (keys loaded, capture attached)"
if [[ "$READY" != 200 ]]; then
  say "not ready: $(tr -d '\n' < "$WORK/readyz")"
  tail -5 "$WORK/ward.log" | sed 's/^/      /'
fi
say "policy: GET on $BACKEND_IP:8080 only for tokens with email == user@example.com"
pause

mint() { in_node curl -s -X POST -d "$1" "http://$NODE_IP:9000/mint"; }
call() { # call TOKEN: the client pod calls the backend's real address, no proxy settings
  local auth=()
  [[ -n "$1" ]] && auth=(-H "Authorization: Bearer $1")
  in_pod pods/client "$CLIENT" curl -s -o "$WORK/body" -w '%{http_code}' --max-time 5 "${auth[@]}" "http://$BACKEND_IP:8080/data" || true
}
GOOD=$(mint '{"sub":"alice","email":"user@example.com"}')
WRONG=$(mint '{"sub":"mallory","email":"mallory@example.com"}')

bold "4. The client pod calls http://$BACKEND_IP:8080/data directly. It has never heard of ward."
expect 401 "$(call "")" "no token"
say "ward answered: $(cat "$WORK/body")"
expect 403 "$(call "$WRONG")" "valid token, email=mallory@example.com"
say "ward answered: $(cat "$WORK/body")"
expect 200 "$(call "$GOOD")" "valid token, email=user@example.com"
say "backend answered: $(cat "$WORK/body")"
say "the backend's own log (refused requests never reached it):"
sed 's/^/      /' "$WORK/backend.log"
expect 1 "$(grep -c 'backend got' "$WORK/backend.log")" "requests that reached the backend"
pause

bold "5. The issuer rotates its signing key; new tokens carry a kid ward has never seen"
in_node curl -s -X POST "http://$NODE_IP:9000/rotate" > /dev/null
ROTATED=$(mint '{"sub":"alice","email":"user@example.com"}')
say "new token's kid: $(cut -d. -f1 <<< "$ROTATED" | tr '_-' '/+' | base64 -d 2>/dev/null | grep -o '"kid":"[^"]*"' || true)"
expect 200 "$(call "$ROTATED")" "token signed with the new key (ward refetched the JWKS once, within the request)"
expect 200 "$(call "$GOOD")" "token signed with the old key (still published)"
pause

bold "6. A destination not named in any policy is reached directly: ward never sees it"
in_pod pods/backend "$BACKEND" python3 -c "
import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 9090)); s.listen(1)
c,_=s.accept(); c.recv(4096); c.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: close\r\n\r\nunprotected\n'); c.close()" &
sleep 0.3
expect 200 "$(in_pod pods/client "$CLIENT" curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$BACKEND_IP:9090/")" "port 9090 without a token"

bold "7. What ward recorded"
say "metrics (http://$NODE_IP:15020/metrics):"
in_node curl -s "http://$NODE_IP:15020/metrics" | grep -E '^ward_(requests_total|verified_cache_hits_total|jwks_fetches_total|capture_[a-z_]+)\b' | grep -v ' 0$' | head -12 | sed 's/^/      /'
say "audit log (one JSON line per decision; identities, not just IPs):"
jq -c '{source, destination, method, path, sub, decision, reason, latency_us}' "$WORK/audit.log" | head -5 | sed 's/^/      /'

bold "8. ward is killed: capture stays in the kernel and connections fail closed"
BEFORE=$(grep -c 'backend got' "$WORK/backend.log")
kill -9 "$WARD_PID"; wait "$WARD_PID" 2>/dev/null || true; WARD_PID=
expect 000 "$(call "$GOOD")" "call with a good token while ward is down (refused, not bypassed)"
expect "$BEFORE" "$(grep -c 'backend got' "$WORK/backend.log")" "requests that reached the backend (unchanged)"

bold "Tearing down"
cleanup
trap - EXIT
if [[ $FAILED == 1 ]]; then
  echo "demo: some steps did not give the expected status" >&2
  exit 1
fi
echo "demo: done"
