#!/usr/bin/env bash
# Validates the Kubernetes deployment in deploy/ and the ward config it carries.
#
#  1. Installs kubernetes-validate (pinned) into a venv under the cargo target dir.
#  2. Structural checks (Python): every path a kustomization names exists, every patch's
#     target exists in what it patches, and the deployment's cross-file invariants hold
#     (capture address, ports, grace period, ConfigMap mounted as a directory, ...).
#  3. Renders the base and the example overlay (kubectl kustomize or kustomize, if present)
#     and validates the output against the pinned Kubernetes schemas; without a renderer, it
#     validates each manifest file on its own. Examples in deploy/examples are validated too.
#     The ServiceMonitor component is a CRD kind without a shipped schema: it gets the
#     structural checks only.
#  4. Extracts ward.yaml from the base ConfigMap and from the rendered overlay and runs
#     `ward check-config` on each.
#
# Exits non-zero on the first failing step. Usage: scripts/validate-manifests.sh
# Env: WARD_BIN (default: $CARGO_TARGET_DIR or target, /debug/ward; built if missing),
#      KUBE_VERSIONS (default "1.31.0 1.34.0"), WARD_VALIDATE_VENV,
#      WARD_RENDER=none (skip rendering even when kubectl/kustomize exist: the fallback path).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

KV_VERSION="1.34.1"
# The oldest Kubernetes minor we claim to support and the newest the pinned package ships.
KUBE_VERSIONS="${KUBE_VERSIONS:-1.31.0 1.34.0}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
venv="${WARD_VALIDATE_VENV:-$target_dir/validate-venv}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ward-validate.XXXXXX")"
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'validate-manifests: FAILED: %s\n' "$*" >&2; exit 1; }

step "kubernetes-validate $KV_VERSION"
# A venv keeps the pinned package and its dependencies away from the system's Python. Where
# venvs are unavailable (Debian without python3-venv), install into a private directory.
if [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" 2>/dev/null; then
    py="$venv/bin/python"
    pip_into=()
    pip_list=("$py" -m pip freeze --disable-pip-version-check)
    echo "venv: $venv"
else
    rm -rf "$venv"
    py="python3"
    export PYTHONPATH="$venv-lib${PYTHONPATH:+:$PYTHONPATH}"
    pip_into=(--upgrade --target "$venv-lib")
    pip_list=("$py" -m pip list --disable-pip-version-check --path "$venv-lib" --format freeze)
    echo "no venv support: using $venv-lib"
fi
installed="$("$py" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [[ "$installed" != "$KV_VERSION" ]]; then
    "$py" -m pip install --disable-pip-version-check --quiet "${pip_into[@]}" "kubernetes-validate==$KV_VERSION" \
        || fail "pip install kubernetes-validate==$KV_VERSION"
fi
echo "installed:"
"${pip_list[@]}" | sed 's/^/  /'
kv=("$py" -m kubernetes_validate)

step "structural checks"
"$py" - "$root/deploy" <<'PY' || fail "structural checks"
import ipaddress
import pathlib
import sys

import yaml

deploy = pathlib.Path(sys.argv[1])
errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomization(dir_):
    path = dir_ / "kustomization.yaml"
    if not path.is_file():
        err(dir_, "no kustomization.yaml")
        return None
    (k,) = docs(path)
    return k


def resources_of(dir_, seen=None):
    """Every object a kustomization directory contributes, without applying patches."""
    seen = seen or set()
    if dir_.resolve() in seen:
        err(dir_, "kustomization cycle")
        return []
    seen.add(dir_.resolve())
    k = kustomization(dir_)
    if k is None:
        return []
    out = []
    for entry in k.get("resources", []) + k.get("components", []):
        p = dir_ / entry
        if p.is_dir():
            out += resources_of(p, seen)
        elif p.is_file():
            out += docs(p)
        else:
            err(dir_ / "kustomization.yaml", f"lists {entry!r}, which does not exist")
    for patch in k.get("patches", []):
        if "path" in patch and not (dir_ / patch["path"]).is_file():
            err(dir_ / "kustomization.yaml", f"patch {patch['path']!r} does not exist")
    return out


def check_patches(dir_):
    """Each patch must hit an object (by kind and name) of what it patches."""
    k = kustomization(dir_)
    base_objs = []
    for entry in k.get("resources", []):
        p = dir_ / entry
        base_objs += resources_of(p) if p.is_dir() else (docs(p) if p.is_file() else [])
    names = {(o.get("kind"), o.get("metadata", {}).get("name")) for o in base_objs}
    for patch in k.get("patches", []):
        target = patch.get("target")
        body = docs(dir_ / patch["path"]) if "path" in patch and (dir_ / patch["path"]).is_file() else []
        wanted = []
        if target:
            wanted.append((target.get("kind"), target.get("name")))
        for b in body:
            if isinstance(b, dict) and "kind" in b:
                wanted.append((b["kind"], b.get("metadata", {}).get("name")))
        if not wanted:
            err(dir_ / "kustomization.yaml", f"patch {patch} names no target")
        for w in wanted:
            if w not in names:
                err(dir_ / "kustomization.yaml", f"patch {patch.get('path')} targets {w[0]}/{w[1]}, which the resources do not contain")
    return base_objs


def check_images(dir_, objs):
    k = kustomization(dir_)
    images = set()
    for o in objs:
        spec = o.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            images.add(c["image"].split(":")[0])
    base_k = [kustomization(dir_ / r) for r in k.get("resources", []) if (dir_ / r).is_dir()]
    renamed = {i.get("newName") for bk in base_k if bk for i in bk.get("images", [])}
    for image in k.get("images", []):
        if image["name"] not in images | renamed:
            err(dir_ / "kustomization.yaml", f"images: {image['name']!r} matches no container image")


def one(objs, kind, name):
    hits = [o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name]
    if len(hits) != 1:
        err(deploy, f"expected one {kind}/{name}, found {len(hits)}")
        return None
    return hits[0]


def check_invariants(where, objs, config_map):
    ds = one(objs, "DaemonSet", "ward")
    svc = one(objs, "Service", "ward-metrics")
    if ds is None or svc is None or config_map is None:
        return
    cfg = yaml.safe_load(config_map["data"]["ward.yaml"])
    pod = ds["spec"]["template"]["spec"]
    (agent,) = [c for c in pod["containers"] if c["name"] == "ward"]

    # Capture address: the init container puts it on the node, the config listens on it.
    (init,) = [c for c in pod.get("initContainers", []) if c["name"] == "capture-address"]
    env = {e["name"]: e.get("value") for e in init.get("env", [])}
    listen = cfg["capture"]["listen"]
    host, _, port = listen.rpartition(":")
    if env.get("WARD_CAPTURE_ADDR") != host:
        err(where, f"init container WARD_CAPTURE_ADDR {env.get('WARD_CAPTURE_ADDR')} != capture.listen host {host}")
    if not ipaddress.ip_address(host).is_link_local:
        err(where, f"capture.listen {listen}: expected a link-local address (same on every node, never routed off it)")
    ports = {p["name"]: p["containerPort"] for p in agent.get("ports", [])}
    if ports.get("capture") != int(port):
        err(where, f"container port 'capture' {ports.get('capture')} != capture.listen port {port}")

    # Admin port: probes, Service and Prometheus annotations all point at admin.listen.
    admin_port = int(cfg["admin"]["listen"].rpartition(":")[2])
    if ports.get("admin") != admin_port:
        err(where, f"container port 'admin' {ports.get('admin')} != admin.listen port {admin_port}")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if agent.get(probe, {}).get("httpGet", {}).get("port") != "admin":
            err(where, f"{probe} does not probe the named port 'admin'")
    ann = svc["metadata"].get("annotations", {})
    if ann.get("prometheus.io/port") != str(admin_port) or ann.get("prometheus.io/scrape") != "true":
        err(where, f"Service ward-metrics prometheus.io annotations do not point at {admin_port}")
    if not any(p.get("targetPort") == "admin" for p in svc["spec"]["ports"]):
        err(where, "Service ward-metrics does not target the 'admin' port")

    # Graceful shutdown fits in the pod's grace period.
    grace = cfg.get("proxy", {}).get("shutdownGraceSeconds", 10)
    if pod.get("terminationGracePeriodSeconds", 30) <= grace:
        err(where, f"terminationGracePeriodSeconds must exceed proxy.shutdownGraceSeconds ({grace})")

    # Live reload needs a directory mount of the ConfigMap (no subPath).
    vols = {v["name"]: v for v in pod["volumes"]}
    cfg_mounts = [m for m in agent["volumeMounts"] if "configMap" in vols.get(m["name"], {})]
    if not cfg_mounts or any("subPath" in m or "subPathExpr" in m for m in cfg_mounts):
        err(where, "the ConfigMap must be mounted as a directory (no subPath), or live reload breaks")
    args = agent.get("args", [])
    conf_arg = args[args.index("--config") + 1] if "--config" in args else None
    if conf_arg is None or not any(conf_arg == f"{m['mountPath']}/ward.yaml" for m in cfg_mounts):
        err(where, f"--config {conf_arg} is not ward.yaml in the mounted ConfigMap directory")

    # Pins and cgroup paths in the config are under the hostPath mounts.
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    if not cfg["capture"]["pinPath"].startswith(mounts["bpffs"]["mountPath"] + "/"):
        err(where, "capture.pinPath is not under the bpffs hostPath mount")
    if not cfg["capture"]["cgroup"].startswith(mounts["cgroup"]["mountPath"] + "/"):
        err(where, "capture.cgroup is not under the cgroup hostPath mount")
    if mounts["bpffs"].get("mountPropagation") == "Bidirectional":
        err(where, "Bidirectional mount propagation needs a privileged container")
    if not mounts["cgroup"].get("readOnly"):
        err(where, "the cgroup tree should be mounted read-only")

    # Least privilege.
    sc = agent.get("securityContext", {})
    caps = sc.get("capabilities", {})
    if sc.get("privileged") or sc.get("allowPrivilegeEscalation", True) or not sc.get("readOnlyRootFilesystem"):
        err(where, "agent must be unprivileged, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true")
    if caps.get("drop") != ["ALL"] or sorted(caps.get("add", [])) != ["BPF", "NET_ADMIN", "SYS_ADMIN"]:
        err(where, f"agent capabilities must be drop ALL, add BPF, NET_ADMIN, SYS_ADMIN; got {caps}")
    if pod.get("securityContext", {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
        err(where, "pod seccompProfile must be RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        err(where, "ward needs no API token: automountServiceAccountToken must be false")
    if {"operator": "Exists"} not in pod.get("tolerations", []):
        err(where, "the DaemonSet must tolerate every taint")


# Base.
base = deploy / "base"
base_objs = resources_of(base)
check_images(base, base_objs)
check_invariants("deploy/base", base_objs, one(base_objs, "ConfigMap", "ward-config"))
if any(o.get("kind") in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding") for o in base_objs):
    err("deploy/base", "ward needs no RBAC; a Role or binding appeared")

# Overlays: patches must apply by name; the invariants must hold with the patched config.
for overlay in sorted((deploy / "overlays").iterdir()):
    objs = resources_of(overlay)
    base_objs_o = check_patches(overlay)
    check_images(overlay, base_objs_o)
    patched = None
    for patch in kustomization(overlay).get("patches", []):
        for d in docs(overlay / patch["path"]):
            if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "ward-config":
                patched = d
    cm = patched or one(objs, "ConfigMap", "ward-config")
    check_invariants(f"deploy/overlays/{overlay.name}", objs, cm)

# Components: their objects must select what the base defines.
sm_dir = deploy / "components" / "servicemonitor"
k = kustomization(sm_dir)
if k is not None and k.get("kind") != "Component":
    err(sm_dir, "must be a kustomize Component (kind: Component)")
for o in resources_of(sm_dir):
    if o.get("kind") == "ServiceMonitor":
        svc = one(base_objs, "Service", "ward-metrics")
        sel = o["spec"]["selector"]["matchLabels"]
        if svc and any(svc["metadata"]["labels"].get(k) != v for k, v in sel.items()):
            err(sm_dir, f"ServiceMonitor selector {sel} does not match Service ward-metrics")
        svc_ports = {p["name"] for p in svc["spec"]["ports"]} if svc else set()
        for ep in o["spec"]["endpoints"]:
            if ep.get("port") not in svc_ports:
                err(sm_dir, f"ServiceMonitor endpoint port {ep.get('port')!r} is not a port of ward-metrics")

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print("ok: kustomization paths, patch targets, images, cross-file invariants")
PY

step "render"
render() { # dir out
    if [[ "${WARD_RENDER:-auto}" == none ]]; then
        return 127
    elif command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
        kubectl kustomize "$1" >"$2"
    elif command -v kustomize >/dev/null 2>&1; then
        kustomize build "$1" >"$2"
    else
        return 127
    fi
}
to_validate=()
if render deploy/base "$work/base.yaml"; then
    for overlay in deploy/overlays/*/; do
        name="$(basename "$overlay")"
        render "$overlay" "$work/overlay-$name.yaml" || fail "rendering $overlay"
        to_validate+=("$work/overlay-$name.yaml")
    done
    to_validate+=("$work/base.yaml")
    # The component renders too (against the base), though its CRD kind has no schema here.
    mkdir -p "$work/with-servicemonitor"
    # kustomize refuses absolute paths to bases and components: use relative ones.
    rel() { realpath --relative-to="$work/with-servicemonitor" "$1"; }
    printf 'resources: [%s]\ncomponents: [%s]\n' "$(rel deploy/base)" "$(rel deploy/components/servicemonitor)" \
        >"$work/with-servicemonitor/kustomization.yaml"
    render "$work/with-servicemonitor" "$work/with-servicemonitor.yaml" || fail "rendering the servicemonitor component"
    grep -q '^kind: ServiceMonitor$' "$work/with-servicemonitor.yaml" || fail "component added no ServiceMonitor"
    echo "rendered with $(command -v kubectl >/dev/null 2>&1 && echo 'kubectl kustomize' || echo kustomize)"
else
    echo "not rendering (no kubectl/kustomize, or WARD_RENDER=none): validating each manifest file on its own (patches checked structurally above)"
    while IFS= read -r f; do to_validate+=("$f"); done < <(
        find deploy/base deploy/overlays -name '*.yaml' ! -name kustomization.yaml | sort)
fi
while IFS= read -r f; do to_validate+=("$f"); done < <(find deploy/examples -name '*.yaml' | sort)
echo "skipped from schema validation: deploy/components/servicemonitor (ServiceMonitor is a CRD kind; kubernetes-validate ships no schema for it)"

step "schemas (kubernetes-validate --strict, Kubernetes $KUBE_VERSIONS)"
for v in $KUBE_VERSIONS; do
    "${kv[@]}" --strict --quiet -k "$v" "${to_validate[@]}" || fail "schema validation against Kubernetes $v"
    echo "ok: ${#to_validate[@]} files against $v"
done

step "ward check-config on the embedded configs"
ward_bin="${WARD_BIN:-$target_dir/debug/ward}"
if [[ ! -x "$ward_bin" ]]; then
    echo "$ward_bin missing: cargo build -p ward"
    cargo build -p ward
fi
extract() { # manifest-file out
    "$py" - "$1" "$2" <<'PY'
import sys, yaml
src, out = sys.argv[1], sys.argv[2]
cms = [d for d in yaml.safe_load_all(open(src))
       if d and d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "ward-config"]
if len(cms) != 1:
    sys.exit(f"{src}: expected one ConfigMap ward-config, found {len(cms)}")
open(out, "w").write(cms[0]["data"]["ward.yaml"])
PY
}
configs=("deploy/base/configmap.yaml")
if [[ -f "$work/base.yaml" ]]; then
    for f in "$work"/overlay-*.yaml; do configs+=("$f"); done
else
    for f in deploy/overlays/*/configmap-patch.yaml; do configs+=("$f"); done
fi
for src in "${configs[@]}"; do
    label="${src#"$work"/}"
    out="$work/ward-$(basename "$src" .yaml).yaml"
    extract "$src" "$out" || fail "extracting ward.yaml from $label"
    "$ward_bin" check-config --config "$out" || fail "ward check-config on the config in $label"
done

printf '\nvalidate-manifests: all checks passed\n'
