#!/usr/bin/env python3
"""Regenerate the committed seed corpora (fuzz/corpus/<target>/): python3 fuzz/seeds.py

Seeds for the structured targets start with four zero bytes, which `arbitrary` reads as the
first enum variant: the raw-text variant of every target (see the Input enums)."""
import base64, json, os, pathlib
from cryptography.hazmat.primitives.asymmetric import ec, rsa, ed25519
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils

ROOT = pathlib.Path(__file__).parent / "corpus"
RAW = b"\0\0\0\0"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def put(target, name, data):
    p = ROOT / target / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data if isinstance(data, bytes) else data.encode())


def jwt(header, claims, key=None):
    h = b64(json.dumps(header, separators=(",", ":")).encode())
    p = b64(json.dumps(claims, separators=(",", ":")).encode())
    msg = f"{h}.{p}".encode()
    if key is None:
        sig = os.urandom(64)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = utils.decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    else:
        sig = key.sign(msg)
    return f"{h}.{p}.{b64(sig)}"


def ec_jwk(k, kid, crv="P-256"):
    n = k.public_key().public_numbers()
    size = 32 if crv == "P-256" else 48
    return {"kty": "EC", "crv": crv, "kid": kid, "use": "sig", "alg": "ES256" if size == 32 else "ES384",
            "x": b64(n.x.to_bytes(size, "big")), "y": b64(n.y.to_bytes(size, "big"))}


def rsa_jwk(k, kid):
    n = k.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")), "e": b64(n.e.to_bytes(3, "big"))}


def ed_jwk(k, kid):
    from cryptography.hazmat.primitives import serialization as s
    raw = k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(raw)}


iss, now = "https://idp.fuzz.test", 1_760_000_000
p256 = ec.generate_private_key(ec.SECP256R1())
p384 = ec.generate_private_key(ec.SECP384R1())
rsa_k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ed = ed25519.Ed25519PrivateKey.generate()
claims = {"iss": iss, "sub": "alice", "aud": "api", "iat": now, "exp": now + 600,
          "groups": ["admin", "dev"], "realm_access": {"roles": ["reader"]}}

# token
put("token", "es256", RAW + jwt({"alg": "ES256", "kid": "fuzz-es256", "typ": "JWT"}, claims, p256).encode())
put("token", "rs256", RAW + jwt({"alg": "RS256", "kid": "r1"}, claims, rsa_k).encode())
put("token", "eddsa", RAW + jwt({"alg": "EdDSA"}, claims, ed).encode())
put("token", "alg-none", RAW + (jwt({"alg": "none"}, claims).rsplit(".", 1)[0] + ".").encode())
put("token", "hs256", RAW + jwt({"alg": "HS256"}, claims).encode())
put("token", "jwe-shape", RAW + b"eyJhbGciOiJSU0EtT0FFUCJ9.ZW5j.aXY.Y2lwaGVy.dGFn")
put("token", "crit", RAW + jwt({"alg": "ES256", "crit": ["exp"], "exp": 1}, claims).encode())
put("token", "dup-claims", RAW + (b64(b'{"alg":"ES256"}') + "." + b64(b'{"iss":"x","iss":"' + iss.encode() + b'"}') + ".c2ln").encode())
put("token", "deep", RAW + jwt({"alg": "ES256"}, {"iss": iss, "x": json.loads("[" * 20 + "]" * 20)}).encode())

# jwks: two documents separated by NUL (old set, new set: a rotation)
a = {"keys": [ec_jwk(p256, "k1"), rsa_jwk(rsa_k, "k2")]}
b = {"keys": [ec_jwk(p256, "k1"), ed_jwk(ed, "k3"), ec_jwk(p384, "k4", "P-384")]}
dup = {"keys": [ec_jwk(p256, "k1"), ec_jwk(p384, "k1", "P-384"), {"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}
enc = {"keys": [dict(rsa_jwk(rsa_k, "e1"), use="enc"), dict(ec_jwk(p256, "v"), key_ops=["verify"])]}
put("jwks", "rotation", RAW + json.dumps(a).encode() + b"\0" + json.dumps(b).encode())
put("jwks", "duplicate-kid", RAW + json.dumps(dup).encode() + b"\0" + json.dumps(a).encode())
put("jwks", "enc-and-ops", RAW + json.dumps(enc).encode())
put("jwks", "not-jwks", RAW + b"<html><body>login</body></html>")

# config
config = """issuers:
- issuer: "https://idp.example.com"
  audiences: [api, web]
  algorithms: [RS256, ES256]
  maxLifetimeSeconds: 3600
  fromHeaders: [{name: x-jwt}, {name: x-auth, prefix: "Token "}]
  fromParams: [access_token]
  fromCookies: [session]
  outputClaimToHeaders: [{header: x-user, claim: sub}, {header: x-roles, claim: realm_access.roles}]
  forwardOriginalToken: false
  jwks: {minRefreshSeconds: 60, maxRefreshSeconds: 3600, maxStalenessSeconds: 600, unknownKidCooldownSeconds: 10, fetchTimeoutMillis: 2000, maxResponseBytes: 65536}
policies:
- name: deny-admin
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
- name: readers
  action: ALLOW
  target: {addresses: [10.0.0.0/8, "fd00::/64"], ports: [8080], hosts: ["*.example"]}
  rules:
  - from: [{source: {requestPrincipals: ["https://idp.example.com/*"], notIpBlocks: [10.9.0.0/16]}}]
    to: [{operation: {methods: [GET, HEAD], paths: ["/api/*"], notPaths: ["*.secret"], ports: ["8080"]}}]
    when:
    - {key: "request.auth.claims[realm_access][roles]", values: [reader]}
    - {key: "request.headers[x-team]", notValues: ["evil*"]}
    - {key: destination.port, values: ["8080"]}
- name: audit-all
  action: AUDIT
  rules: [{}]
listeners:
- {name: api, listen: "127.0.0.1:18080", upstream: "127.0.0.1:19090"}
admin: {listen: "127.0.0.1:15020"}
proxy: {maxConnections: 100, headerReadTimeoutMillis: 2000, maxHeaderBytes: 16384}
cache: {maxEntries: 1000, maxBytes: 1048576}
audit: {enabled: true, allowSampleRate: 0.5}
"""
put("config", "full", config)
put("config", "minimal", 'issuers:\n- issuer: "https://idp"\n  audiences: [a]\n')
put("config", "unknown-field", 'issuers:\n- issuer: "https://idp"\n  audiences: [a]\n  audience: b\n')
put("config", "bad-cidr", 'policies:\n- name: x\n  action: ALLOW\n  target: {addresses: [10.0.0.0/33]}\n')
put("config", "anchors", 'x: &a [1]\nissuers: *a\n')
put("config", "capture", 'capture: {cgroup: kubepods, listen: "0.0.0.0:15001", listenV6: "[::]:15006", skMsg: true}\n')

# policy: <config>\0<claims>\0<path>
pol_claims = json.dumps({"sub": "alice", "realm_access": {"roles": ["reader", "admin"]}, "groups": ["dev"], "n": 3})
put("policy", "readers", RAW + (config + "\0" + pol_claims + "\0/api/items").encode())
put("policy", "admin", RAW + (config + "\0" + pol_claims + "\0/admin/x").encode())
put("policy", "unicode", RAW + ('policies:\n- name: u\n  action: DENY\n  rules: [{when: [{key: "request.auth.claims[name]", values: ["ñandú*"]}]}]\n'
                                + "\0" + json.dumps({"name": "ñandú-7"}) + "\0/").encode())

# path
for name, p in {"simple": "/api/v1/items", "dots": "/public/%2e%2e/admin", "slashes": "//a///b/./c/../d",
                "escapes": "/a%41%7e%2f", "unicode": "/caf\u00e9/%C3%A9", "trailing": "/a/b/..",
                "backslash": "/a\\b", "nul": "/a%00b"}.items():
    put("path", name, RAW + p.encode())
