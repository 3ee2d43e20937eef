// The OIDC authorization-code flow of Ward's `oidc` auth method against a real OpenID provider
// (tests/oidc/provider.mjs), with a person signing in at the provider in headless chromium:
// through the API (`oidc/auth_url`, `oidc/callback`), and through `ward login -method=oidc`.
// Also the attacks: a replayed state, a redirect URI off the allow list, PKCE and nonce
// tampering.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  ROOT, CLIENT_SECRET, WARD_BIN, startWard, startProvider, api, ok, tokenCount, launchChromium, signInAtProvider,
  startCallbackListener,
} from './support.mjs';
import { CLIENT_ID, USERS } from './identities.mjs';

const REPLAYED = 'Vault login failed. Expired or missing OAuth state.';

let ward;
let provider;
let browser;
let secops;
let listener;
let callbackUri;

before(async () => {
  ward = await startWard('authcode');
  provider = await startProvider();
  browser = await launchChromium();
  listener = await startCallbackListener();
  callbackUri = listener.redirectUri;
  await ok(ward.base, 'POST', 'sys/auth/oidc', ROOT, { type: 'oidc' });
  await ok(ward.base, 'POST', 'auth/oidc/config', ROOT, {
    oidc_discovery_url: provider.issuer,
    oidc_client_id: CLIENT_ID,
    oidc_client_secret: CLIENT_SECRET,
    default_role: 'person',
  });
  await ok(ward.base, 'POST', 'auth/oidc/role/person', ROOT, {
    user_claim: 'email',
    groups_claim: 'groups',
    oidc_scopes: ['email', 'profile', 'groups'],
    claim_mappings: { name: 'name' },
    // The CLI's default redirect URI: loopback, so it matches the listener's port too.
    allowed_redirect_uris: ['http://localhost:8250/oidc/callback'],
    token_policies: ['person'],
  });
  await ok(ward.base, 'PUT', 'sys/policies/acl/person', ROOT, { policy: 'path "secret/data/people/*" { capabilities = ["read"] }' });
  await ok(ward.base, 'PUT', 'sys/policies/acl/secops', ROOT, { policy: 'path "secret/data/secops/*" { capabilities = ["read"] }' });
  secops = await ok(ward.base, 'POST', 'identity/group', ROOT, { name: 'secops', type: 'external', policies: ['secops'] });
  const mounts = await ok(ward.base, 'GET', 'sys/auth', ROOT);
  await ok(ward.base, 'POST', 'identity/group-alias', ROOT, {
    name: 'secops', mount_accessor: mounts.data['oidc/'].accessor, canonical_id: secops.data.id,
  });
});

after(async () => {
  await browser?.close();
  await listener?.close();
  await provider?.stop();
  await ward?.stop();
});

async function authUrl(redirectUri = callbackUri, clientNonce = 'client-nonce-1') {
  return api(ward.base, 'POST', 'auth/oidc/oidc/auth_url', '', { role: 'person', redirect_uri: redirectUri, client_nonce: clientNonce });
}

/**
 * Opens `url` in a fresh browser context, signs in at the provider as `user` (when it asks),
 * and answers the query the provider sent to the redirect URI (a loopback listener of the
 * test, as a native app would run).
 */
/** `ward login -method=oidc role=person port=0 skip_browser=true` with more `flags` and
 * `params`, against this file's server; its output collects in `stdout` and `stderr`, and
 * `exited` gives the exit code. */
function spawnLogin({ flags = [], params = [] } = {}) {
  const cli = spawn(WARD_BIN, [
    'login', '-method=oidc', '-no-store', ...flags, 'role=person', 'port=0', 'skip_browser=true', ...params,
  ], {
    env: { ...process.env, WARD_ADDR: ward.base, HOME: ward.home, WARD_TOKEN: '', VAULT_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const login = { cli, stdout: '', stderr: '' };
  cli.stdout.on('data', (chunk) => { login.stdout += chunk; });
  cli.stderr.on('data', (chunk) => { login.stderr += chunk; });
  login.exited = new Promise((resolve) => cli.once('exit', resolve));
  return login;
}

async function authorize(url, user = 'alice') {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const seen = listener.received().length;
    await page.goto(url);
    if (await page.getByRole('heading', { name: 'Example IdP' }).isVisible()) {
      await signInAtProvider(page, user, USERS[user].password);
    }
    await page.getByText('received by the test').waitFor();
    assert.equal(listener.received().length, seen + 1);
    return listener.received()[seen];
  } finally {
    await context.close();
  }
}

function callback(params) {
  return api(ward.base, 'GET', `auth/oidc/oidc/callback?${new URLSearchParams(params)}`, '');
}

test('a person signs in at the provider; the callback yields a token once, and the state cannot be replayed', async () => {
  const started = await authUrl();
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const url = new URL(started.body.data.auth_url);
  assert.equal(url.origin + url.pathname, `${provider.issuer}/auth`);
  const query = url.searchParams;
  assert.equal(query.get('client_id'), CLIENT_ID);
  assert.equal(query.get('redirect_uri'), callbackUri);
  assert.equal(query.get('response_type'), 'code');
  assert.equal(query.get('scope'), 'openid email profile groups');
  assert.equal(query.get('code_challenge_method'), 'S256', 'PKCE is sent');
  assert.match(query.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/);
  assert.ok(query.get('state') && query.get('nonce'));

  const sentBack = await authorize(url.href);
  assert.equal(sentBack.get('state'), query.get('state'));
  assert.equal(sentBack.get('iss'), provider.issuer);
  const params = { state: sentBack.get('state'), code: sentBack.get('code'), client_nonce: 'client-nonce-1' };

  const tokensBefore = await tokenCount(ward.base);
  const answer = await callback(params);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  const { auth } = answer.body;
  assert.deepEqual(auth.token_policies, ['default', 'person']);
  assert.deepEqual(auth.identity_policies, ['secops'], 'alice is in the provider group "secops"');
  assert.deepEqual(auth.metadata, { role: 'person', name: USERS.alice.name });
  const self = await ok(ward.base, 'GET', 'auth/token/lookup-self', auth.client_token);
  assert.equal(self.data.display_name, 'oidc-alice@example.test');
  const entity = await ok(ward.base, 'GET', `identity/entity/id/${auth.entity_id}`, ROOT);
  assert.deepEqual(entity.data.aliases.map((a) => a.name), ['alice@example.test']);
  assert.ok(entity.data.group_ids.includes(secops.data.id));
  assert.equal(await tokenCount(ward.base), tokensBefore + 1);

  // The same callback again (a replayed redirect, say from browser history) is refused.
  const replay = await callback(params);
  assert.equal(replay.status, 400);
  assert.deepEqual(replay.body.errors, [REPLAYED]);
  assert.equal(await tokenCount(ward.base), tokensBefore + 1, 'the replay minted nothing');
});

test('a callback with another client nonce is refused and spends the state', async () => {
  const started = await authUrl(callbackUri, 'the-cli-nonce');
  const sentBack = await authorize(started.body.data.auth_url, 'bob');
  const params = { state: sentBack.get('state'), code: sentBack.get('code') };
  const stolen = await callback({ ...params, client_nonce: 'an-attacker-nonce' });
  assert.equal(stolen.status, 400);
  assert.deepEqual(stolen.body.errors, ['invalid client_nonce']);
  const retried = await callback({ ...params, client_nonce: 'the-cli-nonce' });
  assert.deepEqual(retried.body.errors, [REPLAYED]);
});

test('redirect URIs off the role\'s allow list get no auth_url; loopback ones match on any port, as in Vault', async () => {
  for (const redirect of ['https://evil.example/oidc/callback', 'http://localhost:8250/elsewhere', 'http://127.0.0.1:8250/oidc/callback', 'https://localhost:8250/oidc/callback']) {
    // Vault answers 200 with an empty auth_url and says why only in its log.
    const refused = await authUrl(redirect);
    assert.equal(refused.status, 200, redirect);
    assert.equal(refused.body.data.auth_url, '', redirect);
  }
  const anyPort = await authUrl('http://localhost:41999/oidc/callback');
  assert.equal(anyPort.status, 200, JSON.stringify(anyPort.body));
});

test('PKCE: the provider refuses a request without it, and a code for another challenge fails the exchange', async () => {
  const started = await authUrl();
  const url = new URL(started.body.data.auth_url);

  // Without code_challenge the provider sends an error back instead of a code.
  const stripped = new URL(url);
  stripped.searchParams.delete('code_challenge');
  stripped.searchParams.delete('code_challenge_method');
  const refused = await authorize(stripped.href);
  assert.equal(refused.get('error'), 'invalid_request');
  assert.match(refused.get('error_description'), /requires PKCE/);
  const relayed = await callback({ state: refused.get('state'), error: refused.get('error'), error_description: refused.get('error_description'), client_nonce: 'client-nonce-1' });
  assert.equal(relayed.status, 400);
  assert.match(relayed.body.errors[0], /^Vault login failed\. Error from OIDC provider: invalid_request /);

  // A code bound to an attacker's challenge: Ward's verifier does not fit, so no token.
  const second = new URL((await authUrl()).body.data.auth_url);
  const attackerVerifier = randomBytes(32).toString('base64url');
  second.searchParams.set('code_challenge', createHash('sha256').update(attackerVerifier).digest('base64url'));
  const sentBack = await authorize(second.href);
  assert.ok(sentBack.get('code'));
  const tokensBefore = await tokenCount(ward.base);
  const exchanged = await callback({ state: sentBack.get('state'), code: sentBack.get('code'), client_nonce: 'client-nonce-1' });
  assert.equal(exchanged.status, 400);
  assert.deepEqual(exchanged.body.errors, ['Vault login failed. Error exchanging oidc code: token endpoint answered 400']);
  assert.equal(await tokenCount(ward.base), tokensBefore);
});

test('nonce: an id_token issued for another nonce is refused', async () => {
  const url = new URL((await authUrl()).body.data.auth_url);
  url.searchParams.set('nonce', randomBytes(16).toString('base64url'));
  const sentBack = await authorize(url.href);
  const tokensBefore = await tokenCount(ward.base);
  const answer = await callback({ state: sentBack.get('state'), code: sentBack.get('code'), client_nonce: 'client-nonce-1' });
  assert.equal(answer.status, 400);
  assert.deepEqual(answer.body.errors, ['error validating token: invalid ID token nonce']);
  assert.equal(await tokenCount(ward.base), tokensBefore);
});

test('ward login -method=oidc skip_browser=true: the printed URL, signed in at the provider, ends with a token on stdout', async () => {
  const login = spawnLogin({ flags: ['-format=json'] });
  const { cli, exited } = login;
  try {
    const deadline = Date.now() + 20_000;
    let printed;
    while (!(printed = login.stderr.match(/^\s+(http:\/\/\S+\/auth\?\S+)$/m)) && Date.now() < deadline && cli.exitCode === null) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(printed, `the CLI printed no URL: ${login.stderr}`);
    const url = new URL(printed[1]);
    const redirect = new URL(url.searchParams.get('redirect_uri'));
    assert.equal(redirect.hostname, 'localhost');
    assert.notEqual(redirect.port, '8250', 'port=0 picked a free port');
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');

    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(url.href);
    await signInAtProvider(page, 'bob', USERS.bob.password);
    // The provider sends the browser to the CLI's own listener, which finishes the login.
    await page.getByText('Signed in to Ward.').waitFor();
    await context.close();

    assert.equal(await exited, 0, login.stderr);
    const response = JSON.parse(login.stdout);
    const token = response.auth.client_token;
    assert.match(token, /\S{20,}/);
    const self = await ok(ward.base, 'GET', 'auth/token/lookup-self', token);
    assert.equal(self.data.display_name, 'oidc-bob@example.test');
    assert.deepEqual(self.data.meta, { role: 'person', name: USERS.bob.name });
  } finally {
    if (cli.exitCode === null) cli.kill('SIGTERM');
  }
});

test('ward login -method=oidc with a callback the role does not allow stops with the reason, as Vault\'s CLI does', async () => {
  const login = spawnLogin({ params: ['callbackhost=127.0.0.1'] });
  const code = await login.exited;
  assert.notEqual(code, 0, login.stderr);
  assert.match(login.stderr, /the server returned no auth_url: check that the role's allowed_redirect_uris include http:\/\/127\.0\.0\.1:\d+\/oidc\/callback/);
});
