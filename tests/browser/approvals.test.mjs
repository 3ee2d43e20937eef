// Browser tests of Ward's web UI in headless Debian chromium (playwright-core, node --test).
//
// Two approvers from different identity groups sign in with userpass, approve a
// control-group-held request in their inbox, and the requester's unwrap then yields a
// PostgreSQL credential that did not exist before the approvals (PostgreSQL at 127.0.0.1:5432,
// which scripts/test starts, is required: without it the test fails). Also: a POST without the
// CSRF token is refused, and an access request whose event id carries HTML shows as text.
//
// Environment: WARD_BIN (default: target/debug/ward of this repository); WARD_TEST_LOG_DIR
// (harness.mjs: where the server and audit logs are kept).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import * as harness from './harness.mjs';

const ROOT = 'root-token-browser-tests';
// A canary: the suite-wide log scan (scripts/scan-canaries) fails if it reaches a log in clear.
const PASSWORD = 'CANARY-browser-test-password';

let ward;
let base;
let browser;

/** One API call; answers the parsed body (or null for 204) and the status. */
function api(method, apiPath, token, body) {
  return harness.api(base, method, apiPath, token, body);
}

function ok(method, apiPath, token, body) {
  return harness.ok(base, method, apiPath, token, body);
}

/** PostgreSQL through psql, or null when it cannot be reached. */
function psql(sql) {
  try {
    return execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-tAc', sql], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000,
    }).trim();
  } catch {
    return null;
  }
}

async function user(name, policies) {
  await ok('POST', `auth/userpass/users/${name}`, ROOT, { password: PASSWORD, token_policies: policies });
  const login = await ok('POST', `auth/userpass/login/${name}`, '', { password: PASSWORD });
  await ok('POST', `identity/entity/id/${login.auth.entity_id}`, ROOT, { name });
  return { token: login.auth.client_token, entityId: login.auth.entity_id };
}

/** Sets up the approval of a database credential; answers the held path. */
async function setup() {
  await ok('POST', 'sys/auth/userpass', ROOT, { type: 'userpass' });
  assert.equal(psql('select 1'), '1', 'PostgreSQL at 127.0.0.1:5432 with psql (scripts/ensure-databases sets it up)');
  await ok('POST', 'sys/mounts/database', ROOT, { type: 'database' });
  await ok('POST', 'database/config/pg', ROOT, {
    plugin_name: 'postgresql-database-plugin',
    connection_url: 'postgresql://{{username}}@127.0.0.1:5432/postgres',
    username: 'postgres',
    allowed_roles: ['reporting'],
  });
  await ok('POST', 'database/roles/reporting', ROOT, {
    db_name: 'pg',
    creation_statements: ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
    default_ttl: '10m',
  });
  const heldPath = 'database/creds/reporting';
  const requesterPolicy = `
path "${heldPath}" {
  capabilities = ["read"]
  control_group = {
    ttl = "1h"
    factor "mlops"  { identity { group_names = ["mlops"]  approvals = 1 } }
    factor "secops" { identity { group_names = ["secops"] approvals = 1 } }
  }
}`;
  await ok('PUT', 'sys/policies/acl/requester', ROOT, { policy: requesterPolicy });
  await ok('PUT', 'sys/policies/acl/approver', ROOT, { policy: 'path "sys/control-group/authorize" { capabilities = ["update"] }' });
  const alice = await user('alice', 'requester');
  const mel = await user('mel', 'approver');
  const sam = await user('sam', 'approver');
  await ok('POST', 'identity/group', ROOT, { name: 'mlops', member_entity_ids: [mel.entityId] });
  await ok('POST', 'identity/group', ROOT, { name: 'secops', member_entity_ids: [sam.entityId] });
  await ok('POST', 'identity/group', ROOT, { name: 'agents', member_entity_ids: [alice.entityId] });
  return { alice, heldPath };
}

/** A new browser context signed in as `name` through the userpass form. */
function signIn(name) {
  return harness.signIn(browser, base, name, PASSWORD);
}

before(async () => {
  ward = await harness.startServer('approvals', ROOT);
  base = ward.base;
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: harness.CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await ward?.stop();
});

test('two approvers approve in the inbox, then the requester unwraps a credential that did not exist before', async () => {
  const { alice, heldPath } = await setup();
  const rolesBefore = psql("select string_agg(rolname, ',') from pg_roles");

  const held = await ok('GET', heldPath, alice.token);
  assert.equal(held.data, null, 'a held request returns no data');
  const { token: wrapping, accessor } = held.wrap_info;
  assert.equal(held.wrap_info.creation_path, heldPath);

  const early = await api('POST', 'sys/wrapping/unwrap', alice.token, { token: wrapping });
  assert.equal(early.status, 403);
  assert.match(early.body.errors.join(' '), /request is not yet approved/);
  assert.equal(psql("select string_agg(rolname, ',') from pg_roles"), rolesBefore, 'no database user before the approvals');

  for (const name of ['mel', 'sam']) {
    const { context, page } = await signIn(name);
    const row = page.getByRole('row').filter({ hasText: heldPath });
    await row.getByText('alice').first().waitFor();
    await row.getByRole('button', { name: 'Approve' }).click();
    await page.getByText('Your approval was recorded.').waitFor();
    await page.getByRole('cell', { name }).first().waitFor();
    await context.close();
  }

  const status = await ok('POST', 'sys/control-group/request', alice.token, { accessor });
  assert.equal(status.data.approved, true);
  assert.deepEqual(status.data.authorizations.map((a) => a.entity_name), ['mel', 'sam']);

  const released = await ok('POST', 'sys/wrapping/unwrap', alice.token, { token: wrapping });
  const { username, password } = released.data;
  assert.ok(username && password, 'a PostgreSQL credential');
  assert.ok(!rolesBefore.split(',').includes(username), 'the user did not exist before');
  assert.equal(psql(`select count(*) from pg_roles where rolname = '${username.replace(/'/g, "''")}'`), '1', 'and exists now');
  assert.ok(released.lease_id.startsWith('database/creds/reporting/'));
  // Leave nothing behind: revoking the lease drops the user.
  await ok('PUT', 'sys/leases/revoke', ROOT, { lease_id: released.lease_id });
  assert.equal(psql(`select count(*) from pg_roles where rolname = '${username.replace(/'/g, "''")}'`), '0');
  const replay = await api('POST', 'sys/wrapping/unwrap', alice.token, { token: wrapping });
  assert.equal(replay.status, 400, 'a used wrapping token cannot be replayed');
});

test('a POST without the CSRF token is refused, and HTML in an event field is shown as text', async () => {
  const { context, page } = await signIn('mel');
  const alice = await user('alice', 'requester');
  await ok('POST', 'sys/access/roles/billing', ROOT, {
    policies: ['default'],
    allowed_requesters: { group_names: ['agents'] },
    approvals: { group_names: ['mlops', 'secops'], count: 2 },
  });
  const hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">';
  const request = await ok('POST', 'sys/access/requests', alice.token, {
    role: 'billing', reason: 'nightly billing report', event: { type: 'nightly-billing-report', id: hostile },
  });
  assert.equal(request.data.state, 'pending-approval');

  await page.goto(`${base}/ui/`);
  const row = page.getByRole('row').filter({ hasText: 'nightly billing report' });
  await row.getByText(hostile).waitFor();
  assert.equal(await page.locator('main script, main img').count(), 0, 'no element came from the event id');
  assert.equal(await page.evaluate(() => window.__pwned), undefined);

  // The session cookie goes along (same context), the form's CSRF field does not.
  const forged = await context.request.post(`${base}/ui/requests/access/${request.data.id}/approve`, {
    form: { reason: 'forged' }, maxRedirects: 0,
  });
  assert.equal(forged.status(), 403);
  const after = await ok('GET', `sys/access/requests/${request.data.id}`, alice.token);
  assert.equal(after.data.approvals.received, 0, 'the forged approval was not recorded');

  // With the form's token, the same approval goes through.
  await row.getByRole('button', { name: 'Approve' }).click();
  await page.getByText('Your approval was recorded.').waitFor();
  const recorded = await ok('GET', `sys/access/requests/${request.data.id}`, alice.token);
  assert.equal(recorded.data.approvals.received, 1);

  const headers = (await page.request.get(`${base}/ui/`)).headers();
  assert.equal(headers['content-security-policy'], "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
  await context.close();
});
