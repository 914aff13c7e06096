// A real OpenID Provider (panva/oidc-provider, OpenID Certified) for ward's interop tests.
// FOR TESTS ONLY: fixed client secret, in-memory state, plain HTTP on loopback.
//
//   node server.mjs [PORT]        (or PORT=...; 0 or nothing picks a free port)
//
// Prints one line `listening on http://127.0.0.1:PORT` on stdout once it accepts connections.
//
// - client `ward-test` / `ward-test-secret` may use the client-credentials grant;
// - the resource indicator `urn:ward:agent-api` (also the default resource) yields a JWT
//   access token (RS256, `aud: agent-api`, `typ: at+jwt`);
// - POST /admin/rotate: generate a new RSA key and put it FIRST in the provider's `jwks`
//   (oidc-provider signs with the first key fitting the algorithm), keeping the old keys
//   published; the provider is rebuilt in place, on the same port.
// - POST /admin/retire-old: publish only the current key.
//
// oidc-provider reads its keys once, from the configuration, so rotation means building a new
// Provider with the new key list; requests are handed to whichever instance is current.

import http from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const RESOURCE = 'urn:ward:agent-api';
const AUDIENCE = 'agent-api';

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `rsa-${randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' };
}

function makeProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'ward-test',
        client_secret: 'ward-test-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    jwks: { keys },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo(_ctx, resourceIndicator) {
          if (resourceIndicator !== RESOURCE) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: 'api:read api:write',
            audience: AUDIENCE,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  return provider;
}

let keys = [newKey()];
let issuer;
let provider;
let handler;

function rebuild() {
  provider = makeProvider(issuer, keys);
  handler = provider.callback();
}

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/admin/rotate') {
    keys = [newKey(), ...keys];
    rebuild();
    return reply(res, 200, { current: keys[0].kid, published: keys.map((k) => k.kid) });
  }
  if (req.method === 'POST' && req.url === '/admin/retire-old') {
    keys = [keys[0]];
    rebuild();
    return reply(res, 200, { current: keys[0].kid, published: keys.map((k) => k.kid) });
  }
  return handler(req, res);
});

server.listen(port, HOST, () => {
  const { port: bound } = server.address();
  issuer = `http://${HOST}:${bound}`;
  rebuild();
  process.stdout.write(`listening on ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
