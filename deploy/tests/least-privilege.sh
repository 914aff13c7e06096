#!/usr/bin/env bash
# Runs the agent with exactly the capabilities deploy/base/daemonset.yaml grants and checks
# that transparent capture works end to end: a "pod" (its own network namespace and a cgroup
# under a stand-in kubepods) connects to a protected address and gets ward's 401.
#
# The layout mirrors a node: the agent in a "node" network namespace with the capture address
# 169.254.7.1 on a device made by the init container's own script (a bridge stands in for the
# dummy device when the kernel lacks CONFIG_DUMMY), uid 0, no_new_privs, a root-owned mode-0700
# bpffs. Not reproduced: the container runtime's seccomp and LSM profiles.
#
# Needs root and a ward binary built with the eBPF programs. Without root it skips, unless
# CI=true, where it fails. Env: WARD_BIN (default: $CARGO_TARGET_DIR or target, /debug/ward).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ward="${WARD_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/ward}"
ds="$root/deploy/base/daemonset.yaml"

if [[ "$(id -u)" != 0 ]]; then
    if [[ "${CI:-}" == true ]]; then
        echo "least-privilege: FAILED: needs root (CI=true)" >&2
        exit 1
    fi
    echo "least-privilege: skipped (needs root; CI=true makes this a failure)"
    exit 0
fi
[[ -x "$ward" ]] || { echo "least-privilege: FAILED: no ward binary at $ward (cargo build -p ward)" >&2; exit 1; }

# What the manifest grants, and the init container's script, read from the manifest itself.
read -r caps init_script_file < <(python3 - "$ds" <<'PY'
import sys, tempfile, yaml
ds = yaml.safe_load(open(sys.argv[1]))
pod = ds["spec"]["template"]["spec"]
(agent,) = [c for c in pod["containers"] if c["name"] == "ward"]
c = agent["securityContext"]["capabilities"]
assert c["drop"] == ["ALL"], c
(init,) = [c for c in pod["initContainers"] if c["name"] == "capture-address"]
f = tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False)
f.write(init["command"][-1])
print(",".join("+" + x.lower() for x in c["add"]), f.name)
PY
)
echo "least-privilege: capabilities from the manifest: $caps"

id="wardlp$$"
cg_mount="$(awk '$(NF-2) == "cgroup2" { print $5; exit }' /proc/self/mountinfo)"
[[ -n "$cg_mount" ]] || { echo "least-privilege: FAILED: no cgroup2 mount" >&2; exit 1; }
work="$(mktemp -d)"
cg="$cg_mount/$id"
agent_pid=""

cleanup() {
    set +e
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    [[ -d "$work/bpffs/ward" ]] && "$ward" uninstall --pin-path "$work/bpffs/ward" >/dev/null
    mountpoint -q "$work/bpffs" && umount "$work/bpffs"
    for d in "$cg/agent" "$cg/pods/pod" "$cg/pods" "$cg"; do [[ -d "$d" ]] && rmdir "$d"; done
    ip netns del "${id}n" 2>/dev/null
    ip netns del "${id}p" 2>/dev/null
    rm -rf "$work" "$init_script_file"
}
trap cleanup EXIT
# Signals become an exit, so the namespaces, cgroups, pins and mount are removed then too.
trap 'exit 130' INT TERM HUP PIPE

mkdir -p "$cg/agent" "$cg/pods/pod" "$work/bpffs"
mount -t bpf -o mode=700 bpf "$work/bpffs"

ip netns add "${id}n"
ip netns add "${id}p"
ip link add "${id}a" netns "${id}n" type veth peer name "${id}b" netns "${id}p"
ip -n "${id}n" link set lo up
ip -n "${id}n" addr add 10.201.0.1/30 dev "${id}a"
ip -n "${id}n" link set "${id}a" up
ip -n "${id}p" link set lo up
ip -n "${id}p" addr add 10.201.0.2/30 dev "${id}b"
ip -n "${id}p" link set "${id}b" up
# The pod gets only the route it needs: to the capture address, via the node.
ip -n "${id}p" route add 169.254.7.1/32 via 10.201.0.1
# nsenter --net, not `ip netns exec`: the latter also remounts /sys for the namespace, which
# hides the cgroup2 mount from the agent and from the cgroup.procs writes below.

link_type=dummy
ip -n "${id}n" link add "${id}t" type dummy 2>/dev/null && ip -n "${id}n" link del "${id}t" || link_type=bridge
sed "s/type dummy/type $link_type/" "$init_script_file" >"$work/init.sh"
nsenter --net="/run/netns/${id}n" env WARD_CAPTURE_ADDR=169.254.7.1 WARD_CAPTURE_LINK=ward0 \
    setpriv --bounding-set -all,+net_admin --inh-caps -all --no-new-privs sh -ec "$(cat "$work/init.sh")" >/dev/null
# Run twice: a restarted pod runs it again.
nsenter --net="/run/netns/${id}n" env WARD_CAPTURE_ADDR=169.254.7.1 WARD_CAPTURE_LINK=ward0 \
    setpriv --bounding-set -all,+net_admin --inh-caps -all --no-new-privs sh -ec "$(cat "$work/init.sh")" >/dev/null
echo "least-privilege: init container script ok twice ($link_type device)"

cat >"$work/ward.yaml" <<EOF
issuers:
  - issuer: http://127.0.0.1:9/realms/test
    audiences: [test]
policies:
  - name: protected
    action: ALLOW
    target:
      addresses: ["10.201.9.9"]
      ports: [8080]
    rules:
      - when:
          - key: request.auth.claims[email]
            values: ["user@example.com"]
capture:
  cgroup: $cg/pods
  listen: 169.254.7.1:15001
  pinPath: $work/bpffs/ward
admin:
  listen: 127.0.0.1:15020
EOF
"$ward" check-config --config "$work/ward.yaml" >/dev/null

nsenter --net="/run/netns/${id}n" sh -c 'echo $$ > "$1/cgroup.procs"; exec setpriv --bounding-set "-all,$2" --inh-caps -all --no-new-privs "$3" run --config "$4"' \
    sh "$cg/agent" "$caps" "$ward" "$work/ward.yaml" >"$work/ward.out" 2>"$work/ward.err" &
agent_pid=$!

# Bounded wait until the agent says whether capture is up (not a timing assertion: the
# failure case is "never", or an error).
for _ in $(seq 1 300); do
    grep -qE "capture attached|capture is not active" "$work/ward.err" && break
    kill -0 "$agent_pid" 2>/dev/null || break
    sleep 0.1
done
if ! kill -0 "$agent_pid" 2>/dev/null; then
    echo "least-privilege: FAILED: ward exited with only $caps:" >&2
    cat "$work/ward.err" >&2
    exit 1
fi

# nsenter, sh and setpriv all exec: the background job's pid is ward's.
eff="$(awk '/^CapEff:/ { print $2 }' "/proc/$agent_pid/status")"
echo "least-privilege: ward CapEff=$eff ($(capsh --decode="$eff" 2>/dev/null | cut -d= -f2))"
grep -q "capture attached" "$work/ward.err" || { echo "least-privilege: FAILED: no 'capture attached' in the log" >&2; cat "$work/ward.err" >&2; exit 1; }

code="$(nsenter --net="/run/netns/${id}p" sh -c 'echo $$ > "$1/cgroup.procs"; exec curl -s -o /dev/null -w "%{http_code}" --max-time 10 http://10.201.9.9:8080/data' sh "$cg/pods/pod" || true)"
if [[ "$code" != 401 ]]; then
    echo "least-privilege: FAILED: a pod's request to the protected address got '$code', expected ward's 401" >&2
    cat "$work/ward.err" >&2
    exit 1
fi
# The DaemonSet's liveness probe: the agent must answer it although its issuer is down
# (readiness is allowed to fail then, liveness is not).
health="$(nsenter --net="/run/netns/${id}n" curl -s -o /dev/null -w "%{http_code}" --max-time 10 http://127.0.0.1:15020/healthz || true)"
if [[ "$health" != 200 ]]; then
    echo "least-privilege: FAILED: /healthz answered '$health', expected 200" >&2
    exit 1
fi
ready="$(nsenter --net="/run/netns/${id}n" curl -s --max-time 10 http://127.0.0.1:15020/readyz || true)"
echo "least-privilege: /healthz 200; /readyz says: $(echo "$ready" | tr '\n' ' ' | cut -c1-160)"
echo "least-privilege: ok: capture attached and enforced (401) with only $caps, uid 0, no_new_privs"
