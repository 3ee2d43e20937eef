// Ward's `jwt` auth method against a real OpenID provider (tests/oidc/provider.mjs): machine
// tokens signed by the provider, discovery and JWKS fetched from it, bound audiences, bound
// claims and claim mappings checked on real tokens, the groups claim filling an external
// group, and key rotation at the provider (a restart on the same port with new keys).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, createSign, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ROOT, RESOURCE, startWard, startProvider, api, ok, machineToken, decode, tokenCount,
} from './support.mjs';
import { MACHINES } from './identities.mjs';

let ward;
let provider;
let keysDir;

const main = MACHINES['ci-main'];
const feature = MACHINES['ci-feature'];

before(async () => {
  keysDir = mkdtempSync(path.join(tmpdir(), 'ward-oidc-keys-'));
  ward = await startWard('jwt');
  provider = await startProvider({ keys: path.join(keysDir, 'first.json') });
  await ok(ward.base, 'POST', 'sys/auth/jwt', ROOT, { type: 'jwt' });
  await ok(ward.base, 'POST', 'auth/jwt/config', ROOT, { oidc_discovery_url: provider.issuer });
  await ok(ward.base, 'PUT', 'sys/policies/acl/ci', ROOT, { policy: 'path "secret/data/ci/*" { capabilities = ["read"] }' });
  await ok(ward.base, 'PUT', 'sys/policies/acl/deployer', ROOT, { policy: 'path "secret/data/deploy/*" { capabilities = ["read"] }' });
  await ok(ward.base, 'POST', 'auth/jwt/role/payments-main', ROOT, {
    role_type: 'jwt',
    user_claim: 'sub',
    groups_claim: 'groups',
    bound_audiences: [RESOURCE],
    bound_claims_type: 'glob',
    bound_claims: { repository: 'example/payments', ref: 'refs/heads/main' },
    claim_mappings: { repository: 'repository', environment: 'environment' },
    token_policies: ['ci'],
    token_ttl: '10m',
  });
});

after(async () => {
  await provider?.stop();
  await ward?.stop();
  if (keysDir) rmSync(keysDir, { recursive: true, force: true });
});

async function login(jwt, role = 'payments-main') {
  return api(ward.base, 'POST', 'auth/jwt/login', '', { role, jwt });
}

test('discovery: the config write fetched the provider, and a wrong issuer URL is refused', async () => {
  const config = await ok(ward.base, 'GET', 'auth/jwt/config', ROOT);
  assert.equal(config.data.oidc_discovery_url, provider.issuer);
  // The discovery document's issuer must equal the configured URL exactly (Vault's rule).
  const trailing = await api(ward.base, 'POST', 'auth/jwt/config', ROOT, { oidc_discovery_url: `${provider.issuer}/` });
  assert.equal(trailing.status, 400);
  assert.match(trailing.body.errors.join(' '), /error checking oidc discovery URL: issuer did not match/);
  const unchanged = await ok(ward.base, 'GET', 'auth/jwt/config', ROOT);
  assert.equal(unchanged.data.oidc_discovery_url, provider.issuer, 'the refused write changed nothing');
});

test('a real RS256 machine token logs in: groups become external groups, claims become metadata, entity and alias', async () => {
  const deployers = await ok(ward.base, 'POST', 'identity/group', ROOT, {
    name: 'deployers', type: 'external', policies: ['deployer'],
  });
  const mounts = await ok(ward.base, 'GET', 'sys/auth', ROOT);
  const accessor = mounts.data['jwt/'].accessor;
  await ok(ward.base, 'POST', 'identity/group-alias', ROOT, {
    name: 'deployers', mount_accessor: accessor, canonical_id: deployers.data.id,
  });

  const jwt = await machineToken(provider.issuer, 'ci-main', main.secret);
  const { header, payload } = decode(jwt);
  assert.equal(header.alg, 'RS256');
  assert.ok(provider.kids.includes(header.kid), 'signed with a key the provider generated');
  assert.equal(payload.iss, provider.issuer);
  assert.equal(payload.aud, RESOURCE);

  const answer = await login(jwt);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  const { auth } = answer.body;
  assert.deepEqual(auth.token_policies, ['ci', 'default']);
  assert.deepEqual(auth.identity_policies, ['deployer'], 'the external group "deployers" came from the groups claim');
  assert.deepEqual(auth.metadata, { role: 'payments-main', repository: 'example/payments', environment: 'production' });
  assert.ok(auth.entity_id);

  const self = await ok(ward.base, 'GET', 'auth/token/lookup-self', auth.client_token);
  assert.equal(self.data.display_name, `jwt-${main.claims.sub}`);
  assert.equal(self.data.path, 'auth/jwt/login');

  const entity = await ok(ward.base, 'GET', `identity/entity/id/${auth.entity_id}`, ROOT);
  const alias = entity.data.aliases.find((a) => a.mount_accessor === accessor);
  assert.ok(alias, JSON.stringify(entity.data.aliases));
  assert.equal(alias.name, main.claims.sub, 'the alias is the user claim (sub)');
  assert.equal(alias.metadata.repository, 'example/payments');
  assert.ok(entity.data.group_ids.includes(deployers.data.id), 'member of the external group');

  // The same workload again maps to the same entity.
  const again = await login(await machineToken(provider.issuer, 'ci-main', main.secret));
  assert.equal(again.status, 200);
  assert.equal(again.body.auth.entity_id, auth.entity_id);
});

test('bound_claims, bound_audiences and claim_mappings refuse real tokens that do not fit', async () => {
  const tokensBefore = await tokenCount(ward.base);

  // The feature branch (ES256, signed by the provider's EC key) does not match ref=refs/heads/main.
  const branch = await machineToken(provider.issuer, 'ci-feature', feature.secret);
  assert.equal(decode(branch).header.alg, 'ES256');
  const wrongRef = await login(branch);
  assert.equal(wrongRef.status, 400);
  assert.deepEqual(wrongRef.body.errors, ['error validating claims: claim "ref" does not match any associated bound claim values']);

  // A glob role for any branch lets the same ES256 token in.
  await ok(ward.base, 'POST', 'auth/jwt/role/payments-any', ROOT, {
    role_type: 'jwt', user_claim: 'sub', bound_audiences: [RESOURCE], bound_claims_type: 'glob',
    bound_claims: { ref: 'refs/heads/*', repository: 'example/*' }, token_policies: ['ci'],
  });
  const anyBranch = await login(branch, 'payments-any');
  assert.equal(anyBranch.status, 200, JSON.stringify(anyBranch.body));
  await ok(ward.base, 'POST', 'auth/token/revoke', ROOT, { token: anyBranch.body.auth.client_token });

  // A token for another audience (resource) is refused.
  const otherAudience = await machineToken(provider.issuer, 'ci-main', main.secret, 'https://other.example.test');
  const wrongAud = await login(otherAudience);
  assert.equal(wrongAud.status, 400);
  assert.deepEqual(wrongAud.body.errors, ['error validating token: invalid audience (aud) claim: audience claim does not match any expected audience']);

  // A claim mapping whose claim the token lacks fails the login.
  await ok(ward.base, 'POST', 'auth/jwt/role/needs-team', ROOT, {
    role_type: 'jwt', user_claim: 'sub', bound_audiences: [RESOURCE], claim_mappings: { team: 'team' },
  });
  const noTeam = await login(await machineToken(provider.issuer, 'ci-main', main.secret), 'needs-team');
  assert.equal(noTeam.status, 400);
  assert.deepEqual(noTeam.body.errors, ['claim "team" not found in token']);

  // A tampered payload (the feature token claiming ref=main) fails the signature.
  const [h, , s] = branch.split('.');
  const forged = { ...decode(branch).payload, ref: 'refs/heads/main' };
  const tampered = `${h}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${s}`;
  const refused = await login(tampered);
  assert.equal(refused.status, 400);
  assert.deepEqual(refused.body.errors, ['error validating token: error verifying token signature: failed to verify id token signature']);

  assert.equal(await tokenCount(ward.base), tokensBefore, 'no refused login left a token behind');
});

/** An RS256 JWT signed by a key the provider never had, claiming to be from it. */
function foreignToken(kid, claims) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const header = Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'at+jwt', kid })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const signature = createSign('RSA-SHA256').update(`${header}.${payload}`).sign(privateKey).toString('base64url');
  return `${header}.${payload}.${signature}`;
}

test('key rotation at the provider: new keys are fetched on an unknown kid; unknown and retired kids are refused', async () => {
  const oldJwt = await machineToken(provider.issuer, 'ci-main', main.secret);
  const oldKid = decode(oldJwt).header.kid;
  assert.equal((await login(oldJwt)).status, 200, 'the current key works before the rotation');

  // A kid the provider never had: Ward fetches the JWKS again (or not, rate-limited), finds
  // nothing, refuses with Vault's message, and mints no token.
  const tokensBefore = await tokenCount(ward.base);
  const now = Math.floor(Date.now() / 1000);
  const forged = foreignToken(`rsa-${randomBytes(6).toString('hex')}`, {
    ...decode(oldJwt).payload, iat: now, exp: now + 300,
  });
  const unknownKid = await login(forged);
  assert.equal(unknownKid.status, 400);
  assert.deepEqual(unknownKid.body.errors, ['error validating token: error verifying token signature: failed to verify id token signature']);
  // The same forged key under the provider's real kid fails just the same.
  const underRealKid = foreignToken(oldKid, { ...decode(oldJwt).payload, iat: now, exp: now + 300 });
  assert.deepEqual((await login(underRealKid)).body.errors, unknownKid.body.errors);
  assert.equal(await tokenCount(ward.base), tokensBefore, 'a refused token leaves no token behind');

  // Rotate: the same issuer (same port) restarts with new keys.
  const { port, issuer } = provider;
  await provider.stop();
  provider = await startProvider({ port, keys: path.join(keysDir, 'second.json') });
  assert.equal(provider.issuer, issuer);
  assert.ok(!provider.kids.includes(oldKid), 'the new key set does not hold the old kid');

  const newJwt = await machineToken(provider.issuer, 'ci-main', main.secret);
  const newKid = decode(newJwt).header.kid;
  assert.ok(provider.kids.includes(newKid));
  // Ward refetches the JWKS on an unknown kid, at most once per 10 s (so a flood of made-up
  // kids cannot make it hammer the provider). The rotation happened within seconds of the
  // last fetch, so the first attempts may be refused; poll until the new key is picked up.
  const deadline = Date.now() + 20_000;
  let answer;
  const refusals = new Set();
  for (;;) {
    answer = await login(newJwt);
    if (answer.status === 200 || Date.now() > deadline) break;
    refusals.add(answer.body.errors.join(' '));
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  assert.equal(answer.status, 200, `the new key is picked up: ${JSON.stringify(answer.body)}`);
  for (const message of refusals) {
    assert.equal(message, 'error validating token: error verifying token signature: failed to verify id token signature');
  }
  assert.equal(decode(newJwt).payload.iss, issuer);

  // The old key is gone from the provider, so its tokens (still unexpired) are refused, as in
  // Vault: keys come from the provider's current JWKS only.
  const retired = await login(oldJwt);
  assert.equal(retired.status, 400);
  assert.deepEqual(retired.body.errors, ['error validating token: error verifying token signature: failed to verify id token signature']);

  // Restarting with the first key file again (a rollback) brings the old kid back.
  await provider.stop();
  provider = await startProvider({ port, keys: path.join(keysDir, 'first.json') });
  assert.ok(provider.kids.includes(oldKid));
  const rollbackDeadline = Date.now() + 20_000;
  let back;
  for (;;) {
    back = await login(oldJwt);
    if (back.status === 200 || Date.now() > rollbackDeadline) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  assert.equal(back.status, 200, `the old key is accepted again once the provider serves it: ${JSON.stringify(back.body)}`);
});
