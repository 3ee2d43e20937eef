// The web UI's OIDC sign-in (crates/server/src/ui) against a real OpenID provider
// (tests/oidc/provider.mjs) in headless chromium: the sign-in page sends the browser to the
// provider, the person signs in there, and the UI ends on the approvals inbox signed in as
// that person. Signing out revokes the token the sign-in created.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  ROOT, CLIENT_SECRET, startWard, startProvider, api, ok, tokenCount, launchChromium, signInAtProvider,
} from './support.mjs';
import { CLIENT_ID, USERS } from './identities.mjs';

let ward;
let provider;
let browser;

before(async () => {
  ward = await startWard('ui');
  provider = await startProvider();
  browser = await launchChromium();
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
    oidc_scopes: ['email', 'groups'],
    // Ward's web UI at its default address; a loopback URI matches on any port.
    allowed_redirect_uris: ['http://127.0.0.1:8200/ui/oidc/callback'],
    token_policies: ['person'],
  });
});

after(async () => {
  await browser?.close();
  await provider?.stop();
  await ward?.stop();
});

test('OIDC sign-in in the web UI ends on the inbox, signed in as the provider\'s user', async () => {
  const tokensBefore = await tokenCount(ward.base);
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${ward.base}/ui/`);
  assert.match(page.url(), /\/ui\/login$/);
  await page.getByRole('button', { name: 'Continue to your identity provider' }).click();
  await page.waitForURL((url) => url.href.startsWith(`${provider.issuer}/`));
  await signInAtProvider(page, 'alice', USERS.alice.password);

  await page.waitForURL(`${ward.base}/ui/`);
  await page.getByRole('heading', { level: 1, name: 'Approvals inbox' }).waitFor();
  await page.getByText('Signed in as oidc-alice@example.test').waitFor();
  assert.equal(await tokenCount(ward.base), tokensBefore + 1, 'the sign-in created one token');

  // The session's token is alice's: her entity carries the provider's user as its alias.
  const accessors = await api(ward.base, 'LIST', 'auth/token/accessors', ROOT);
  const looked = await Promise.all(accessors.body.data.keys.map((accessor) => ok(ward.base, 'POST', 'auth/token/lookup-accessor', ROOT, { accessor })));
  const alice = looked.find((l) => l.data.display_name === 'oidc-alice@example.test');
  assert.ok(alice, 'a token for alice exists');
  assert.deepEqual(alice.data.policies, ['default', 'person']);
  const entity = await ok(ward.base, 'GET', `identity/entity/id/${alice.data.entity_id}`, ROOT);
  assert.deepEqual(entity.data.aliases.map((a) => a.name), ['alice@example.test']);

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/ui\/login$/);
  assert.equal(await tokenCount(ward.base), tokensBefore, 'signing out revoked the token');
  await context.close();
});

test('a callback this browser did not start is refused by the web UI', async () => {
  // Another browser starts a sign-in; the provider's answer is replayed into a fresh browser.
  const first = await browser.newContext();
  const page = await first.newPage();
  // The provider sends the browser to /ui/oidc/callback, whose page moves on to
  // /ui/oidc/finish with the same query: stop it there and keep the query.
  let sentBack;
  await page.route((url) => url.pathname === '/ui/oidc/finish', (route) => {
    sentBack = new URL(route.request().url()).search;
    return route.fulfill({ status: 200, contentType: 'text/plain', body: 'caught by the test' });
  });
  await page.goto(`${ward.base}/ui/login`);
  await page.getByRole('button', { name: 'Continue to your identity provider' }).click();
  await signInAtProvider(page, 'bob', USERS.bob.password);
  await page.getByText('caught by the test').waitFor();
  await first.close();
  assert.match(sentBack, /state=.*code=|code=.*state=/);

  const tokensBefore = await tokenCount(ward.base);
  const other = await browser.newContext();
  const victim = await other.newPage();
  await victim.goto(`${ward.base}/ui/oidc/callback${sentBack}`);
  await victim.getByText('OIDC sign-in failed: this browser did not start it, or it expired').waitFor();
  assert.equal(await tokenCount(ward.base), tokensBefore, 'no token was minted');
  await other.close();
});
