// A small, real OpenID provider for Ward's tests and walk-throughs: panva's `oidc-provider`
// on loopback, issuing real signed tokens.
//
//   node provider.mjs [--port N] [--keys FILE] [--redirect-uri URI ...] [--client-secret S]
//
// It prints one JSON line when ready: {"issuer", "port", "kids"}. The issuer is
// http://127.0.0.1:<port> (port 0, the default, picks a free one; also OIDC_PORT).
//
// Keys: an RS256 and an ES256 signing key. Without --keys they are generated at start; with
// --keys FILE they are read from FILE when it exists, else generated and written there. A
// restart on the same port with another (or no) key file is therefore a key rotation.
//
// What it serves:
//   - the authorization-code flow for the confidential client `ward` (secret `ward-secret`, or
//     --client-secret),
//     PKCE (S256) required. The client is a native one, so a loopback redirect URI matches on
//     any port (RFC 8252 §7.3): Ward's CLI (http://localhost:8250/oidc/callback) and Ward's web
//     UI on loopback (http://127.0.0.1:8200/ui/oidc/callback); more with --redirect-uri.
//     Its login page checks the users below (no consent screen: a company's own IdP).
//     The id_token carries `sub`, `email`, `name` and `groups` (scopes `email profile groups`).
//   - machine tokens for Ward's `jwt` roles: client_credentials for the clients below returns a
//     JWT access token (RFC 9068) whose `aud` is the `resource` asked for (RFC 8707; default
//     https://ward.example.test), signed with the client's algorithm and carrying CI-shaped claims.
//
// Stop it with SIGTERM or SIGINT.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import Provider from 'oidc-provider';
import {
  CLIENT_ID, CLIENT_SECRET, DEFAULT_RESOURCE, MACHINES, USERS,
} from './identities.mjs';

const { values: options } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OIDC_PORT ?? '0' },
    keys: { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true, default: [] },
    'client-secret': { type: 'string', default: CLIENT_SECRET },
  },
});

/** A private signing key as a JWK with a fresh `kid`. */
function signingKey(type) {
  const kid = `${type}-${randomBytes(6).toString('hex')}`;
  const { privateKey } = type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const alg = type === 'rsa' ? 'RS256' : 'ES256';
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

function loadKeys(file) {
  if (file && existsSync(file)) {
    return JSON.parse(readFileSync(file, 'utf8'));
  }
  const jwks = { keys: [signingKey('rsa'), signingKey('ec')] };
  if (file) writeFileSync(file, JSON.stringify(jwks), { mode: 0o600 });
  return jwks;
}

function sameSecret(given, expected) {
  const a = Buffer.from(String(given ?? ''));
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, error) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Example IdP sign-in</title></head>
<body><h1>Example IdP</h1>${error ? `<p role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<p><label for="username">Username</label> <input id="username" name="username" autocomplete="username" required></p>
<p><label for="password">Password</label> <input id="password" name="password" type="password" required></p>
<p><button type="submit">Sign in</button></p>
</form></body></html>`;
}

async function readForm(request) {
  let body = '';
  for await (const chunk of request) {
    body += chunk;
    if (body.length > 64 * 1024) throw new Error('form too large');
  }
  return Object.fromEntries(new URLSearchParams(body));
}

function build(issuer, jwks) {
  const machineClients = Object.entries(MACHINES).map(([clientId, machine]) => ({
    client_id: clientId,
    client_secret: machine.secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  }));
  return new Provider(issuer, {
    jwks,
    cookies: { keys: [randomBytes(32).toString('hex')] },
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: options['client-secret'],
        application_type: 'native',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        // Ward's CLI and Ward's web UI at its default address; loopback, so any port.
        redirect_uris: [
          'http://localhost:8250/oidc/callback',
          'http://127.0.0.1:8200/ui/oidc/callback',
          ...options['redirect-uri'],
        ],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      ...machineClients,
    ],
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: { email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    // The claims go into the id_token itself: Ward reads the id_token, not userinfo.
    conformIdTokenClaims: false,
    async findAccount(_ctx, id) {
      const user = USERS[id];
      if (!user) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: `${id}@example.test`, email_verified: true, name: user.name, groups: user.groups };
        },
      };
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Only machine tokens get a resource (and so a JWT access token); the browser flow
        // asks for an id_token only.
        defaultResource: async (_ctx, client) => (MACHINES[client.clientId] ? DEFAULT_RESOURCE : undefined),
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource, client) => ({
          scope: 'ward:login',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: MACHINES[client.clientId]?.alg ?? 'RS256' } },
        }),
      },
    },
    formats: {
      customizers: {
        // Runs after the standard claims are set, so `sub` can be replaced.
        async jwt(_ctx, token, jwt) {
          const machine = MACHINES[token.clientId];
          if (machine && token.kind === 'ClientCredentials') Object.assign(jwt.payload, machine.claims);
        },
      },
    },
  });
}

/** The login page and its form: a password check, then login and grant in one step. */
async function interaction(provider, request, response) {
  const details = await provider.interactionDetails(request, response);
  const { uid, prompt, params } = details;
  if (request.method === 'GET') {
    if (prompt.name === 'login') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      response.end(loginPage(uid));
      return;
    }
    // Already signed in at the IdP: grant what the client asked for, without a consent page.
    await finish(provider, request, response, details.session.accountId, params);
    return;
  }
  const form = await readForm(request);
  const user = USERS[form.username];
  if (!user || !sameSecret(form.password, user.password)) {
    response.writeHead(401, { 'content-type': 'text/html; charset=utf-8' });
    response.end(loginPage(uid, 'Invalid username or password.'));
    return;
  }
  await finish(provider, request, response, form.username, params);
}

async function finish(provider, request, response, accountId, params) {
  const grant = new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(String(params.scope ?? 'openid'));
  const grantId = await grant.save();
  await provider.interactionFinished(request, response, { login: { accountId }, consent: { grantId } }, {
    mergeWithLastSubmission: false,
  });
}

const jwks = loadKeys(options.keys);
const server = createServer();
server.listen(Number(options.port), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = build(issuer, jwks);
  const callback = provider.callback();
  server.on('request', (request, response) => {
    if (request.url.startsWith('/interaction/')) {
      interaction(provider, request, response).catch((error) => {
        response.writeHead(400, { 'content-type': 'text/plain' });
        response.end(`interaction failed: ${error.message}`);
      });
      return;
    }
    callback(request, response);
  });
  const kids = jwks.keys.map((key) => key.kid);
  process.stdout.write(`${JSON.stringify({ issuer, port, kids })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
