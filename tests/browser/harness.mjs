// Shared support of the browser tests: a `ward server -dev` on port 0 whose server log and
// file audit log are kept for the suite-wide canary scan, API calls, and userpass sign-in.
//
// Servers log at debug level, the most they say. Logs go to WARD_TEST_LOG_DIR when set
// (scripts/test sets it and scans every file there for canary values in clear at the end),
// otherwise to the server's temporary home, removed with it.
// Environment: WARD_BIN (default: target/debug/ward of this repository).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPOSITORY = path.join(here, '..', '..');
export const WARD_BIN = process.env.WARD_BIN || path.join(REPOSITORY, 'target', 'debug', 'ward');
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/**
 * Starts `ward server -dev` on port 0 with `rootToken`, and a file audit device.
 * Answers { base, home, logDir, stop }. `name` names the log files.
 */
export async function startServer(name, rootToken) {
  const home = mkdtempSync(path.join(tmpdir(), `ward-browser-${name}-`));
  const logDir = process.env.WARD_TEST_LOG_DIR || home;
  mkdirSync(logDir, { recursive: true });
  const stamp = `${name}-${process.pid}`;
  const serverLog = createWriteStream(path.join(logDir, `browser-${stamp}-server.log`));
  const server = spawn(WARD_BIN, ['server', '-dev', '-dev-listen-address=127.0.0.1:0', `-dev-root-token-id=${rootToken}`], {
    env: { ...process.env, HOME: home, WARD_LOG_LEVEL: 'debug' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stderr.pipe(serverLog, { end: false });
  let exited = false;
  const base = await new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`ward server did not start: ${output}`)), 30_000);
    server.stdout.on('data', (chunk) => {
      serverLog.write(chunk);
      output += chunk.toString();
      const match = output.match(/Api Address: (http:\/\/[0-9.:]+)/);
      if (match && output.includes('Ward server started')) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    server.on('exit', (code) => {
      exited = true;
      clearTimeout(timer);
      reject(new Error(`ward server exited with ${code}: ${output}`));
    });
  });
  const auditPath = path.join(logDir, `browser-${stamp}-audit.log`);
  await ok(base, 'PUT', 'sys/audit/file', rootToken, { type: 'file', options: { file_path: auditPath } });
  const stop = async () => {
    if (!exited) {
      const gone = new Promise((resolve) => server.once('exit', resolve));
      server.kill('SIGTERM');
      await gone;
    }
    await new Promise((resolve) => serverLog.end(resolve));
    rmSync(home, { recursive: true, force: true });
  };
  return { base, home, logDir, stop };
}

/** One API call; answers the parsed body (or null for 204) and the status. */
export async function api(base, method, apiPath, token, body) {
  const response = await fetch(`${base}/v1/${apiPath}`, {
    method,
    headers: { 'X-Vault-Token': token ?? '', 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** An API call that must succeed; answers the body. */
export async function ok(base, method, apiPath, token, body) {
  const answer = await api(base, method, apiPath, token, body);
  assert.ok(answer.status < 300, `${method} ${apiPath}: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
}

/** A new browser context signed in as `name` through the userpass form, on the inbox. */
export async function signIn(browser, base, name, password) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/ui/`);
  assert.match(page.url(), /\/ui\/login$/);
  await page.getByLabel('Username', { exact: true }).fill(name);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(`${base}/ui/`);
  await page.getByRole('heading', { level: 1, name: 'Approvals inbox' }).waitFor();
  return { context, page };
}
