# Shared by demo.sh and demo-explicit.sh: narration, assertions and the demo backend.
# Expects CI_MODE (1: no pauses) and FAILED (set to 1 by a failed expectation).

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
say() { printf '  %s\n' "$*"; }
pause() { [[ $CI_MODE == 1 ]] || sleep "${DEMO_PAUSE:-1}"; }

expect() { # expect WANT GOT WHAT
  if [[ "$2" == "$1" ]]; then
    printf '  \033[32m✓\033[0m %s → %s\n' "$3" "$2"
  else
    printf '  \033[31m✗\033[0m %s → %s (expected %s)\n' "$3" "$2" "$1"
    FAILED=1
  fi
}

# write_backend FILE: a backend with no auth of its own that logs every request it gets.
# Run it as `python3 -u FILE HOST PORT`. (socketserver, not http.server.HTTPServer, whose
# bind does a reverse DNS lookup that hangs in a namespace without a resolver.)
write_backend() {
  cat > "$1" <<'PY'
import socketserver, http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        sys.stdout.write(f"backend got {self.command} {self.path} (x-user-email: {self.headers.get('x-user-email')})\n"); sys.stdout.flush()
        body = b"Data from backend!\n"
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
S((sys.argv[1], int(sys.argv[2])), H).serve_forever()
PY
}
