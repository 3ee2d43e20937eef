// Browser tests of Ward's web UI in headless Debian chromium (playwright-core, node --test).
//
// Two approvers from different identity groups sign in with userpass, approve a
// control-group-held request in their inbox, and the requester's unwrap then yields a
// PostgreSQL credential that did not exist before the approvals (or, when PostgreSQL or psql
// is not available, a KV secret: the test says which on stdout). Also: a POST without the
// CSRF token is refused, and an access request whose event id carries HTML shows as text.
//
// Environment: WARD_BIN (default: target/debug/ward of this repository).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const WARD_BIN = process.env.WARD_BIN || path.join(here, '..', '..', 'target', 'debug', 'ward');
const ROOT = 'root-token-browser-tests';
const PASSWORD = 'browser-test-password';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let server;
let home;
let base;
let browser;

/** Starts `ward server -dev` on port 0 and reads the address it prints. */
async function startServer() {
  home = mkdtempSync(path.join(tmpdir(), 'ward-browser-'));
  server = spawn(WARD_BIN, ['server', '-dev', '-dev-listen-address=127.0.0.1:0', `-dev-root-token-id=${ROOT}`], {
    env: { ...process.env, HOME: home, WARD_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const deadline = Date.now() + 30_000;
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      if (Date.now() > deadline) {
        clearInterval(timer);
        reject(new Error(`ward server did not start: ${output}`));
      }
    }, 200);
    server.stdout.on('data', (chunk) => {
      output += chunk.toString();
      const match = output.match(/Api Address: (http:\/\/[0-9.:]+)/);
      if (match && output.includes('Ward server started')) {
        clearInterval(timer);
        resolve(match[1]);
      }
    });
    server.on('exit', (code) => {
      clearInterval(timer);
      reject(new Error(`ward server exited with ${code}: ${output}`));
    });
  });
}

/** One API call; answers the parsed body (or null for 204) and the status. */
async function api(method, apiPath, token, body) {
  const response = await fetch(`${base}/v1/${apiPath}`, {
    method,
    headers: { 'X-Vault-Token': token ?? '', 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function ok(method, apiPath, token, body) {
  const answer = await api(method, apiPath, token, body);
  assert.ok(answer.status < 300, `${method} ${apiPath}: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
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

/** Sets up the approval of a database credential (or a KV secret); answers the held path. */
async function setup() {
  await ok('POST', 'sys/auth/userpass', ROOT, { type: 'userpass' });
  let heldPath = 'secret/data/prod/payments';
  const usePostgres = psql('select 1') === '1';
  if (usePostgres) {
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
    heldPath = 'database/creds/reporting';
    console.log('# control group guards a PostgreSQL credential (database/creds/reporting)');
  } else {
    await ok('POST', 'secret/data/prod/payments', ROOT, { data: { api_key: 'pay-live-123' } });
    console.log('# PostgreSQL or psql unavailable: the control group guards a KV secret instead');
  }
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
  return { alice, heldPath, usePostgres };
}

/** A new browser context signed in as `name` through the userpass form. */
async function signIn(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/ui/`);
  assert.match(page.url(), /\/ui\/login$/);
  await page.getByLabel('Username', { exact: true }).fill(name);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(`${base}/ui/`);
  await page.getByRole('heading', { level: 1, name: 'Approvals inbox' }).waitFor();
  return { context, page };
}

before(async () => {
  base = await startServer();
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  if (home) rmSync(home, { recursive: true, force: true });
});

test('two approvers approve in the inbox, then the requester unwraps a credential that did not exist before', async () => {
  const { alice, heldPath, usePostgres } = await setup();
  const rolesBefore = usePostgres ? psql("select string_agg(rolname, ',') from pg_roles") : '';

  const held = await ok('GET', heldPath, alice.token);
  assert.equal(held.data, null, 'a held request returns no data');
  const { token: wrapping, accessor } = held.wrap_info;
  assert.equal(held.wrap_info.creation_path, heldPath);

  const early = await api('POST', 'sys/wrapping/unwrap', alice.token, { token: wrapping });
  assert.equal(early.status, 403);
  assert.match(early.body.errors.join(' '), /request is not yet approved/);
  if (usePostgres) {
    assert.equal(psql("select string_agg(rolname, ',') from pg_roles"), rolesBefore, 'no database user before the approvals');
  }

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
  if (usePostgres) {
    const { username, password } = released.data;
    assert.ok(username && password, 'a PostgreSQL credential');
    assert.ok(!rolesBefore.split(',').includes(username), 'the user did not exist before');
    assert.equal(psql(`select count(*) from pg_roles where rolname = '${username.replace(/'/g, "''")}'`), '1', 'and exists now');
    assert.ok(released.lease_id.startsWith('database/creds/reporting/'));
    // Leave nothing behind: revoking the lease drops the user.
    await ok('PUT', 'sys/leases/revoke', ROOT, { lease_id: released.lease_id });
    assert.equal(psql(`select count(*) from pg_roles where rolname = '${username.replace(/'/g, "''")}'`), '0');
  } else {
    assert.equal(released.data.data.api_key, 'pay-live-123');
  }
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
