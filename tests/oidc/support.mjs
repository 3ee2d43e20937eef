// Shared by the tests of Ward's jwt/oidc auth against a real OpenID provider: start and stop
// `ward server -dev` and tests/oidc/provider.mjs (both on port 0), call Ward's API, get
// machine tokens, and drive the provider's login page in headless chromium.
//
// Environment: WARD_BIN (default: target/debug/ward of this repository).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WARD_BIN = process.env.WARD_BIN || path.join(here, '..', '..', 'target', 'debug', 'ward');
export const ROOT = 'root-token-oidc-tests';
export const RESOURCE = 'https://ward.example.test';
/** Ward's client secret at the provider in the tests: a canary the log scan looks for. */
export const CLIENT_SECRET = 'CANARY-oidc-client-secret';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Waits until `output()` matches `pattern`, the process exits, or the deadline passes. */
function waitFor(child, output, pattern, what) {
  const deadline = Date.now() + 30_000;
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = output().match(pattern);
      if (match) {
        cleanup();
        resolve(match);
      } else if (Date.now() > deadline) {
        cleanup();
        reject(new Error(`${what} did not start in time: ${output()}`));
      }
    };
    const onExit = (code) => {
      cleanup();
      reject(new Error(`${what} exited with ${code}: ${output()}`));
    };
    const timer = setInterval(check, 50);
    const cleanup = () => {
      clearInterval(timer);
      child.off('exit', onExit);
    };
    child.on('exit', onExit);
  });
}

/** Stops a child process and waits for it to be gone. */
export async function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await gone;
}

/**
 * `ward server -dev` on port 0 with a file audit device; answers { base, home, stop }. The
 * server log and the audit log go to WARD_TEST_LOG_DIR when set (scripts/test scans every file
 * there for secrets in clear once all suites ran), else to the server's temporary home.
 */
export async function startWard(name) {
  const home = mkdtempSync(path.join(tmpdir(), 'ward-oidc-'));
  const logDir = process.env.WARD_TEST_LOG_DIR || home;
  mkdirSync(logDir, { recursive: true });
  const stamp = `${name}-${process.pid}`;
  const serverLog = createWriteStream(path.join(logDir, `oidc-${stamp}-server.log`));
  const child = spawn(WARD_BIN, ['server', '-dev', '-dev-listen-address=127.0.0.1:0', `-dev-root-token-id=${ROOT}`], {
    env: { ...process.env, HOME: home, WARD_LOG_LEVEL: 'debug' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
    serverLog.write(chunk);
  });
  child.stderr.pipe(serverLog, { end: false });
  const [, base] = await waitFor(child, () => output, /Api Address: (http:\/\/[0-9.:]+)[\s\S]*Ward server started/, 'ward server');
  await ok(base, 'PUT', 'sys/audit/file', ROOT, { type: 'file', options: { file_path: path.join(logDir, `oidc-${stamp}-audit.log`) } });
  return {
    base,
    home,
    async stop() {
      await stop(child);
      await new Promise((resolve) => serverLog.end(resolve));
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/**
 * tests/oidc/provider.mjs; answers { issuer, port, kids, stop }. Options: port (to restart on
 * the same one), keys (a key file), redirectUris. Ward's client secret is CLIENT_SECRET.
 */
export async function startProvider({ port = 0, keys, redirectUris = [] } = {}) {
  const args = [path.join(here, 'provider.mjs'), '--port', String(port), '--client-secret', CLIENT_SECRET];
  if (keys) args.push('--keys', keys);
  for (const uri of redirectUris) args.push('--redirect-uri', uri);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let errors = '';
  child.stdout.on('data', (chunk) => { output += chunk; });
  // The provider warns about Node 20 and its in-memory store; keep it for failure messages.
  child.stderr.on('data', (chunk) => { errors += chunk; });
  const [line] = await waitFor(child, () => output + errors, /^\{.*"issuer".*\}$/m, 'oidc provider');
  return { ...JSON.parse(line), stop: () => stop(child) };
}

/** One API call to Ward; answers { status, body }. */
export async function api(base, method, apiPath, token, body) {
  const response = await fetch(`${base}/v1/${apiPath}`, {
    method,
    headers: { 'X-Vault-Token': token ?? '', 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

export async function ok(base, method, apiPath, token, body) {
  const answer = await api(base, method, apiPath, token, body);
  assert.ok(answer.status < 300, `${method} ${apiPath}: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
}

/** A JWT access token from the provider for a machine client (client_credentials). */
export async function machineToken(issuer, clientId, secret, resource = RESOURCE) {
  const response = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      Authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`,
      'Content-Type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body.access_token;
}

/** The decoded header and payload of a JWT (no verification: for assertions only). */
export function decode(jwt) {
  const [header, payload] = jwt.split('.').slice(0, 2).map((part) => JSON.parse(Buffer.from(part, 'base64url')));
  return { header, payload };
}

/** How many tokens Ward holds: `auth/token/accessors`, listed with the root token. */
export async function tokenCount(base) {
  const answer = await api(base, 'LIST', 'auth/token/accessors', ROOT);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body.data.keys.length;
}

export function launchChromium() {
  return chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

/** Fills the provider's login form on `page` (which shows it) and submits it. */
export async function signInAtProvider(page, username, password) {
  await page.getByRole('heading', { name: 'Example IdP' }).waitFor();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/**
 * A stand-in for a native app's loopback redirect target: an HTTP listener on localhost port 0
 * that answers 200 and keeps the query of each `/oidc/callback` it receives. Answers
 * { redirectUri, received: () => the queries so far, close }.
 */
export async function startCallbackListener() {
  const received = [];
  const server = createServer((request, response) => {
    const url = new URL(request.url, 'http://localhost');
    if (url.pathname === '/oidc/callback') received.push(url.searchParams);
    response.writeHead(url.pathname === '/oidc/callback' ? 200 : 404, { 'content-type': 'text/plain' });
    response.end('received by the test');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    redirectUri: `http://localhost:${server.address().port}/oidc/callback`,
    received: () => received,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}
