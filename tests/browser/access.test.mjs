// Browser tests of access requests gated by a local webhook (issue #8), following the README.
//
// The README's walk-through ("Walk-through: an access request gated by a local webhook") is
// run as written: its shell blocks are read from README.md and run by bash with the `ward`
// binary on PATH (only the two loopback addresses are replaced by this run's ports), against
// examples/gatekeeper/gatekeeper.py, the signed-webhook gatekeeper it starts. The approvers'
// steps happen in headless chromium: mel (mlops) and sam (secops) sign in with userpass, find
// the request in their inbox with its requester, role, reason, event, age and approvals so
// far, and approve; the requester then takes its elevated child token once and reads the
// payment secret with it; an approver revokes the grant in the UI and the token stops working.
// Also: a gatekeeper that denies shows the request as denied with its reason, a gatekeeper
// that does not trust the signature denies, an approver denies in the UI, two approvals from
// one team do not satisfy the two-team rule (`from_each_group`), and an operator sees leases
// and tokens by mount, the audit chain and recent alerts.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { REPOSITORY, WARD_BIN, CHROMIUM_ARGS, startServer, api, ok, signIn } from './harness.mjs';

// The README's root token and addresses; the run's own addresses replace the latter.
const ROOT = 'root';
const README_WARD_ADDR = 'http://127.0.0.1:8200';
const README_GATEKEEPER = 'http://127.0.0.1:9000';
const PAYMENT_KEY = 'sk_live_51example';
const password = (name) => `${name}-password-2026`;

let ward;
let browser;
let gatekeeper;
let gatekeeperUrl;
let gatekeeperLog = '';
let cliHome;
// The webhook secret, a canary: the suite-wide log scan fails if it reaches a log in clear.
const secret = `CANARY-gatekeeper-${randomBytes(16).toString('hex')}`;
const blocks = walkThrough();

/** The README's walk-through blocks by name (`<!-- access walk-through: NAME -->` before a sh block). */
function walkThrough() {
  const readme = readFileSync(path.join(REPOSITORY, 'README.md'), 'utf8');
  const found = {};
  for (const match of readme.matchAll(/<!-- access walk-through: ([a-z]+) -->\n```sh\n([\s\S]*?)```/g)) {
    found[match[1]] = match[2];
  }
  for (const name of ['gatekeeper', 'setup', 'request', 'use']) {
    assert.ok(found[name], `README.md has the walk-through block ${name}`);
  }
  return found;
}

/** Runs a README block with bash as a user would paste it; answers stdout. */
function runBlock(name, { env = {}, epilogue = '' } = {}) {
  const script = blocks[name]
    .replaceAll(README_WARD_ADDR, ward.base)
    .replaceAll(README_GATEKEEPER, gatekeeperUrl);
  // stdin is /dev/null: bash run with a socket as stdin would read the system bashrc.
  const child = spawn('bash', ['-euo', 'pipefail', '-c', `${script}\n${epilogue}`], {
    cwd: REPOSITORY,
    env: {
      PATH: `${path.dirname(WARD_BIN)}:${process.env.PATH}`,
      HOME: cliHome,
      GATEKEEPER_SECRET: secret,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => { stdout += chunk; });
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  return new Promise((resolve, reject) => {
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`README block ${name} failed with ${code}:\n${script}\n${stdout}\n${stderr}`));
    });
  });
}

/** Starts the example gatekeeper the way the README does, on a free port. */
async function startGatekeeper() {
  assert.match(blocks.gatekeeper, /python3 examples\/gatekeeper\/gatekeeper\.py --listen 127\.0\.0\.1:9000 &/);
  assert.match(blocks.gatekeeper, /export GATEKEEPER_SECRET=/);
  gatekeeper = spawn('python3', ['examples/gatekeeper/gatekeeper.py', '--listen', '127.0.0.1:0'], {
    cwd: REPOSITORY,
    env: { ...process.env, GATEKEEPER_SECRET: secret },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the gatekeeper did not start: ${gatekeeperLog}`)), 15_000);
    gatekeeper.stdout.on('data', (chunk) => {
      gatekeeperLog += chunk.toString();
      const match = gatekeeperLog.match(/gatekeeper listening on (http:\/\/[0-9.:]+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    gatekeeper.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the gatekeeper exited with ${code}: ${gatekeeperLog}`));
    });
  });
}

async function login(name) {
  const answer = await ok(ward.base, 'POST', `auth/userpass/login/${name}`, '', { password: password(name) });
  return answer.auth.client_token;
}

/** The inbox table row of the request whose reason is `reason`, in the table named `caption`. */
function inboxRow(page, caption, reason) {
  return page.getByRole('table', { name: caption }).getByRole('row').filter({ hasText: reason });
}

before(async () => {
  cliHome = mkdtempSync(path.join(tmpdir(), 'ward-access-cli-'));
  ward = await startServer('access', ROOT);
  gatekeeperUrl = await startGatekeeper();
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  await runBlock('setup');
});

after(async () => {
  await browser?.close();
  gatekeeper?.kill('SIGTERM');
  await ward?.stop();
  if (cliHome) rmSync(cliHome, { recursive: true, force: true });
});

test('README walk-through: the webhook allows, two teams approve in the browser, the requester reads the secret, an approver revokes in the UI', async () => {
  const requested = await runBlock('request', { epilogue: 'printf "REQUEST-ID=%s\\n" "$id"' });
  const id = requested.match(/REQUEST-ID=([0-9a-f-]{36})/)?.[1];
  assert.ok(id, `the request block printed an id: ${requested}`);
  assert.match(requested, /pending-approval/);
  assert.match(gatekeeperLog, new RegExp(`allow request ${id} for role 'billing'`), 'the gatekeeper was asked and allowed');
  const reason = 'nightly billing report needs the payment API';

  // The requester cannot approve its own request: no button in its own inbox.
  {
    const { context, page } = await signIn(browser, ward.base, 'alice', password('alice'));
    const own = inboxRow(page, 'Your access requests', reason);
    await own.getByText('pending-approval').waitFor();
    assert.equal(await own.getByRole('button').count(), 0);
    await context.close();
  }

  for (const [name, before] of [['mel', '0 of 2, none yet from mlops, secops'], ['sam', '1 of 2, none yet from secops']]) {
    const { context, page } = await signIn(browser, ward.base, name, password(name));
    const row = inboxRow(page, 'Access requests waiting for you', reason);
    const cells = await row.getByRole('cell').allInnerTexts();
    assert.match(cells[0], /^alice\s+entity [0-9a-f-]{36}$/, 'requester identity');
    assert.equal(cells[1], 'billing', 'role');
    assert.equal(cells[2], reason);
    assert.equal(cells[3], 'nightly-billing-report run-2026-11-28', 'event');
    assert.match(cells[4], /^\d+[smh] ago$/, 'age');
    assert.equal(cells[5], 'pending-approval');
    assert.equal(cells[6], before, 'approvals so far');
    await row.getByRole('button', { name: 'Approve' }).click();
    await page.getByText('Your approval was recorded.').waitFor();
    await page.getByRole('heading', { level: 1, name: 'Access request' }).waitFor();
    await page.getByRole('table', { name: 'Who approved' }).getByRole('cell', { name, exact: true }).waitFor();
    await context.close();
  }

  // The walk-through's last block: the token, once, and the secret read with it.
  // Alice's shell from the request block: WARD_ADDR and id are still set there.
  const used = await runBlock('use', { env: { id, WARD_ADDR: ward.base }, epilogue: 'printf "\\nGRANT-TOKEN=%s\\n" "$token"' });
  assert.equal(used.split('\n')[0], PAYMENT_KEY, 'the requester read the payment secret with the grant');
  const token = used.match(/GRANT-TOKEN=(\S+)/)?.[1];
  assert.ok(token);
  const aliceToken = readFileSync(path.join(cliHome, '.ward-token'), 'utf8').trim();
  const granted = await ok(ward.base, 'GET', 'auth/token/lookup-self', token);
  assert.deepEqual(granted.data.policies, ['default', 'payments-read']);
  assert.equal(granted.data.meta.access_request, id);
  assert.ok(granted.data.ttl > 0 && granted.data.ttl <= 3600, `short-lived: ${granted.data.ttl}s`);
  const alice = await ok(ward.base, 'GET', 'auth/token/lookup-self', aliceToken);
  assert.equal(granted.data.entity_id, alice.data.entity_id, 'the grant belongs to alice');
  assert.equal((await api(ward.base, 'GET', 'secret/data/payments/stripe', aliceToken)).status, 403, 'alice alone cannot read it');
  const again = await ok(ward.base, 'GET', `sys/access/requests/${id}`, aliceToken);
  assert.equal(again.data.state, 'active');
  assert.equal(again.data.token, undefined, 'the token is handed out once');

  // An approver revokes the grant from the inbox; the token ends with it.
  const { context, page } = await signIn(browser, ward.base, 'mel', password('mel'));
  const grant = inboxRow(page, 'Access granted with your group\'s approval (you can revoke it)', reason);
  await grant.getByText('active').waitFor();
  await grant.getByRole('link', { name: 'Details' }).click();
  await page.getByRole('heading', { level: 1, name: 'Access request' }).waitFor();
  const revokeForm = page.locator('form').filter({ has: page.getByRole('button', { name: 'Revoke the grant' }) });
  await revokeForm.getByLabel('Reason (optional)').fill('job finished early');
  await revokeForm.getByRole('button', { name: 'Revoke the grant' }).click();
  await page.getByText('The grant was revoked.').waitFor();
  assert.match(await page.locator('dl').innerText(), /State\s+revoked/);
  await page.getByRole('listitem').filter({ hasText: 'revoked by mel: job finished early' }).waitFor();
  await context.close();

  assert.equal((await api(ward.base, 'GET', 'auth/token/lookup-self', token)).status, 403, 'the grant token is revoked');
  assert.equal((await api(ward.base, 'GET', 'secret/data/payments/stripe', token)).status, 403);
  assert.equal((await api(ward.base, 'GET', 'auth/token/lookup-self', aliceToken)).status, 200, 'alice\'s own token lives on');
  const ended = await ok(ward.base, 'GET', `sys/access/requests/${id}`, aliceToken);
  assert.equal(ended.data.state, 'revoked');
});

test('a gatekeeper that denies shows the request as denied with its reason; a wrong signature is a deny', async () => {
  const aliceToken = await login('alice');
  const denied = await ok(ward.base, 'POST', 'sys/access/requests', aliceToken, {
    role: 'billing', reason: 'poking around in production', event: { type: 'ad-hoc-debugging', id: 'tty-7' },
  });
  assert.equal(denied.data.state, 'denied');
  const why = "denied by the gatekeeper: no running job has event type 'ad-hoc-debugging'";
  assert.equal(denied.data.gatekeeper_reason, why);

  // The same gatekeeper, but a role whose secret it does not know: its 401 is a deny.
  const otherSecret = `CANARY-other-${randomBytes(16).toString('hex')}`;
  await ok(ward.base, 'PUT', 'sys/access/roles/billing-unsigned', ROOT, {
    policies: ['payments-read'], max_ttl: '1h',
    allowed_requesters: { group_names: ['billing-agents'] },
    gatekeeper: { webhook_url: `${gatekeeperUrl}/validate`, secret: otherSecret },
  });
  const forged = await ok(ward.base, 'POST', 'sys/access/requests', aliceToken, {
    role: 'billing-unsigned', reason: 'signed with the wrong key', event: { type: 'nightly-billing-report', id: 'run-x' },
  });
  assert.equal(forged.data.state, 'denied');
  assert.equal(forged.data.gatekeeper_reason, 'gatekeeper answered HTTP 401');
  assert.match(gatekeeperLog, /refused a call with a wrong signature/);

  // The requester sees both in the browser, denied, with the reason.
  const { context, page } = await signIn(browser, ward.base, 'alice', password('alice'));
  const row = inboxRow(page, 'Your access requests', 'poking around in production');
  await row.getByRole('cell', { name: `denied: ${why}` }).waitFor();
  await inboxRow(page, 'Your access requests', 'signed with the wrong key')
    .getByRole('cell', { name: 'denied: gatekeeper answered HTTP 401' }).waitFor();
  await row.getByRole('link', { name: 'Details' }).click();
  assert.match(await page.locator('dl').innerText(), new RegExp(`State\\s+denied[\\s\\S]*Gatekeeper\\s+${why}`));
  await context.close();

  // Nothing reached the approvers.
  const mel = await signIn(browser, ward.base, 'mel', password('mel'));
  assert.equal(await mel.page.getByText('poking around in production').count(), 0);
  await mel.context.close();
});

test('an approver denies in the browser, with a reason; the requester gets no token', async () => {
  const aliceToken = await login('alice');
  const reason = 'rerun of the nightly billing report';
  const request = await ok(ward.base, 'POST', 'sys/access/requests', aliceToken, {
    role: 'billing', reason, event: { type: 'nightly-billing-report', id: 'run-2026-11-28-rerun' },
  });
  assert.equal(request.data.state, 'pending-approval');

  const { context, page } = await signIn(browser, ward.base, 'sam', password('sam'));
  await inboxRow(page, 'Access requests waiting for you', reason).getByRole('link', { name: 'Details' }).click();
  const denyForm = page.locator('form').filter({ has: page.getByRole('button', { name: 'Deny', exact: true }) });
  await denyForm.getByLabel('Reason (optional)').fill('no rerun during the change freeze');
  await denyForm.getByRole('button', { name: 'Deny', exact: true }).click();
  await page.getByText('The request was denied.').waitFor();
  assert.match(await page.locator('dl').innerText(), /State\s+denied/);
  await page.getByRole('listitem').filter({ hasText: 'denied by sam: no rerun during the change freeze' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Approve' }).count(), 0, 'a denied request cannot be approved');
  await context.close();

  const after = await ok(ward.base, 'GET', `sys/access/requests/${request.data.id}`, aliceToken);
  assert.equal(after.data.state, 'denied');
  assert.equal(after.data.token, undefined);
  const late = await api(ward.base, 'POST', `sys/access/requests/${request.data.id}/approve`, await login('mel'), {});
  assert.equal(late.status, 400, 'approving after a denial is refused');

  const alice = await signIn(browser, ward.base, 'alice', password('alice'));
  await inboxRow(alice.page, 'Your access requests', reason)
    .getByRole('cell', { name: 'denied by sam: no rerun during the change freeze' }).waitFor();
  await alice.context.close();
});

test('two-team rule: two approvals from mlops do not grant; sam from secops completes it in the browser', async () => {
  // A second mlops member, max.
  await ok(ward.base, 'POST', 'auth/userpass/users/max', ROOT, { password: password('max') });
  const maxLogin = await ok(ward.base, 'POST', 'auth/userpass/login/max', '', { password: password('max') });
  await ok(ward.base, 'POST', `identity/entity/id/${maxLogin.auth.entity_id}`, ROOT, { name: 'max' });
  const mlops = await ok(ward.base, 'GET', 'identity/group/name/mlops', ROOT);
  await ok(ward.base, 'POST', 'identity/group/name/mlops', ROOT, {
    member_entity_ids: [...mlops.data.member_entity_ids, maxLogin.auth.entity_id],
  });

  const aliceToken = await login('alice');
  const reason = 'month-end billing report';
  const request = await ok(ward.base, 'POST', 'sys/access/requests', aliceToken, {
    role: 'billing', reason, event: { type: 'nightly-billing-report', id: 'run-2026-11-30' },
  });
  assert.equal(request.data.state, 'pending-approval');
  for (const name of ['mel', 'max']) {
    const approved = await ok(ward.base, 'POST', `sys/access/requests/${request.data.id}/approve`, await login(name), {});
    assert.equal(approved.data.state, 'pending-approval', `after ${name}: still waiting for secops`);
  }

  const { context, page } = await signIn(browser, ward.base, 'sam', password('sam'));
  const row = inboxRow(page, 'Access requests waiting for you', reason);
  assert.equal((await row.getByRole('cell').allInnerTexts())[6], '2 of 2, none yet from secops');
  await row.getByRole('button', { name: 'Approve' }).click();
  await page.getByText('Your approval was recorded.').waitFor();
  assert.match(await page.locator('dl').innerText(), /State\s+approved[\s\S]*Approvals\s+3 of 2 \(groups: mlops, secops; at least one from each\)/);
  await context.close();
  const granted = await ok(ward.base, 'POST', `sys/access/requests/${request.data.id}/revoke`, aliceToken, {});
  assert.equal(granted.data.state, 'revoked');
});

test('an operator signed in with a token sees leases and tokens by mount, the audit chain and recent alerts', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${ward.base}/ui/login`);
  await page.getByLabel('Ward token', { exact: true }).fill(ROOT);
  await page.getByRole('button', { name: 'Sign in with a token', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: 'Approvals inbox' }).waitFor();

  await page.getByRole('link', { name: 'Leases and tokens' }).click();
  await page.getByRole('heading', { level: 1, name: 'Leases and tokens' }).waitFor();
  const tokens = page.getByRole('table', { name: 'Live tokens' });
  await tokens.getByRole('columnheader', { name: 'Mount' }).waitFor();
  assert.equal(await page.getByText('The server is counting').count(), 0, 'counted since start-up');
  // The token store's own tokens (root, access grants) count under auth/token/.
  await tokens.getByRole('row').filter({ hasText: 'auth/token/' }).waitFor();
  const userpassRow = tokens.getByRole('row').filter({ hasText: 'auth/userpass/' });
  await userpassRow.waitFor();
  const userpassTokens = Number((await userpassRow.getByRole('cell').nth(1).innerText()).trim());
  assert.ok(userpassTokens >= 3, `logins of alice, mel and sam: ${userpassTokens}`);

  await page.getByRole('link', { name: 'Audit and alerts' }).click();
  await page.getByRole('heading', { level: 1, name: 'Audit and alerts' }).waitFor();
  const device = page.getByRole('table', { name: 'Enabled audit devices' }).getByRole('row').filter({ hasText: 'file/' });
  await device.getByText(/^intact: \d+ entries verified$/).waitFor();
  const alerts = page.getByRole('table', { name: 'Alerts, newest first' });
  await alerts.getByRole('row').filter({ hasText: 'access-request' }).first().waitFor();
  await context.close();
});
