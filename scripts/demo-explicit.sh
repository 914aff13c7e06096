#!/usr/bin/env bash
# The ward demo without root: the same story through an explicit listener on loopback.
# Called by demo.sh when not root; `--ci` asserts each status code.
set -euo pipefail
CI_MODE=0
[[ "${1:-}" == "--ci" ]] && CI_MODE=1
WARD="$(readlink -f "${WARD_BIN:?set WARD_BIN to the ward binary}")"
WORK="$(mktemp -d /tmp/ward-demo.XXXXXX)"
FAILED=0
# shellcheck source=scripts/demo-lib.sh
source "$(dirname "$0")/demo-lib.sh"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
IDP_PORT=$(free_port) BACKEND_PORT=$(free_port) LISTEN_PORT=$(free_port) ADMIN_PORT=$(free_port)

cleanup() {
  set +e
  kill ${WARD_PID:-} ${IDP_PID:-} ${BACKEND_PID:-} 2>/dev/null
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

write_backend "$WORK/backend.py"
bold "1. A backend (no auth of its own) and a local OIDC issuer"
python3 -u "$WORK/backend.py" 127.0.0.1 $BACKEND_PORT > "$WORK/backend.log" 2>&1 & BACKEND_PID=$!
ISSUER="http://127.0.0.1:$IDP_PORT"
"$WARD" dev-idp --listen "127.0.0.1:$IDP_PORT" --issuer "$ISSUER" --audience my-backend-client > "$WORK/idp.log" 2>&1 & IDP_PID=$!
cat > "$WORK/ward.yaml" <<YAML
issuers:
  - issuer: $ISSUER
    audiences: [my-backend-client]
    outputClaimToHeaders: [{header: x-user-email, claim: email}]
policies:
  - name: backend-authz
    action: ALLOW
    rules:
      - to: [{operation: {methods: ["GET"]}}]
        when: [{key: "request.auth.claims[email]", values: ["user@example.com"]}]
listeners:
  - {name: backend, listen: "127.0.0.1:$LISTEN_PORT", upstream: "127.0.0.1:$BACKEND_PORT"}
admin:
  listen: 127.0.0.1:$ADMIN_PORT
YAML
bold "2. ward in front of the backend (explicit listener 127.0.0.1:$LISTEN_PORT)"
"$WARD" run --config "$WORK/ward.yaml" > "$WORK/audit.log" 2> "$WORK/ward.log" & WARD_PID=$!
for _ in $(seq 100); do
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz")" == 200 ]] && break; sleep 0.1
done
expect 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz")" "ward /readyz"
mint() { curl -s -X POST -d "$1" "http://127.0.0.1:$IDP_PORT/mint"; }
call() {
  local auth=(); [[ -n "$1" ]] && auth=(-H "Authorization: Bearer $1")
  curl -s -o "$WORK/body" -w '%{http_code}' --max-time 5 "${auth[@]}" "http://127.0.0.1:$LISTEN_PORT/data" || true
}
GOOD=$(mint '{"sub":"alice","email":"user@example.com"}')
WRONG=$(mint '{"sub":"mallory","email":"mallory@example.com"}')
pause
bold "3. Requests"
expect 401 "$(call "")" "no token"; say "ward answered: $(cat "$WORK/body")"
expect 403 "$(call "$WRONG")" "email=mallory@example.com"; say "ward answered: $(cat "$WORK/body")"
expect 200 "$(call "$GOOD")" "email=user@example.com"
sed 's/^/      /' "$WORK/backend.log"
expect 1 "$(grep -c 'backend got' "$WORK/backend.log")" "requests that reached the backend"
pause
bold "4. Key rotation"
curl -s -X POST "http://127.0.0.1:$IDP_PORT/rotate" > /dev/null
expect 200 "$(call "$(mint '{"sub":"alice","email":"user@example.com"}')")" "token signed with the new key"
bold "5. What ward recorded"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^ward_(requests_total|verified_cache_hits_total|jwks_fetches_total)' | grep -v ' 0$' | sed 's/^/      /'
jq -c '{source, destination, method, path, sub, decision, reason, latency_us}' "$WORK/audit.log" | head -4 | sed 's/^/      /'
[[ $FAILED == 0 ]] || { echo "demo: some steps did not give the expected status" >&2; exit 1; }
echo "demo: done"
