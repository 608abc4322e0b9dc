// Starting real vcdn processes for the browser tests: free ports, a scratch
// folder, each process's output in artifacts/logs/, readiness by polling
// /healthz (bounded), and a clean stop (or a SIGKILL when a test wants one).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const here = path.resolve(import.meta.dirname, '..');
export const repoRoot = path.resolve(here, '../..');
export const artifacts = path.join(here, 'artifacts');
/** The binary under test: `cargo build -p vcdn` puts it here. */
export const vcdnBin = process.env.VCDN_BIN ?? path.join(repoRoot, 'target/debug/vcdn');
export const sampleVideo = path.join(repoRoot, 'assets/sample/sample.mp4');

const running = new Set();
// Whatever happens to the test process, no vcdn is left behind.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export function checkBinary() {
  if (!fs.existsSync(vcdnBin)) {
    throw new Error(`${vcdnBin} is missing: build it first with \`cargo build -p vcdn\` (scripts/test.sh does)`);
  }
}

/** A fresh scratch folder, removed by `cleanup()`. */
export function scratchDir(name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `vcdn-browser-${name}-`));
}

async function isFree(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port nobody listens on now (the OS picks it). */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** `count` consecutive free ports (`vcdn up` puts its replicas on the
 *  port of `replica.listen` and the ones after it). */
export async function freePortRun(count) {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const base = await freePort();
    if (base + count > 65535) continue;
    let ok = true;
    for (let i = 1; i < count && ok; i += 1) ok = await isFree(base + i);
    if (ok) return base;
  }
  throw new Error(`no run of ${count} free ports found`);
}

/** GET `url` trusting the cluster's CA: `{status, headers, body}` (a Buffer). */
export function get(url, { ca, timeoutMs = 2000, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const request = https.get(url, { ca, headers, timeout: timeoutMs }, (response) => {
      const chunks = [];
      response.on('data', (c) => chunks.push(c));
      response.on('end', () => resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`${url}: no answer within ${timeoutMs} ms`)));
    request.on('error', reject);
  });
}

/** GET `url` as JSON; an HTTP error status rejects. */
export async function getJson(url, options) {
  const response = await get(url, options);
  if (response.status >= 400) throw new Error(`${url}: HTTP ${response.status}`);
  return JSON.parse(response.body.toString('utf8'));
}

/** One vcdn process; its stdout and stderr go to artifacts/logs/<name>.log. */
export class Proc {
  constructor(name, args, { cwd, env = {} }) {
    fs.mkdirSync(path.join(artifacts, 'logs'), { recursive: true });
    this.name = name;
    this.logFile = path.join(artifacts, 'logs', `${name}.log`);
    const log = fs.openSync(this.logFile, 'w');
    this.child = spawn(vcdnBin, args, {
      cwd,
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', ...env },
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    running.add(this.child);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        running.delete(this.child);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  get pid() {
    return this.child.pid;
  }

  logTail(lines = 30) {
    try {
      return fs.readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** Kills the process at once, as a crash would (SIGKILL). */
  async kill() {
    if (this.exit) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Stops gracefully (SIGTERM), or kills after `graceMs`. */
  async stop(graceMs = 10000) {
    if (this.exit) return;
    this.child.kill('SIGTERM');
    const stopped = await Promise.race([this.exited, sleep(graceMs).then(() => null)]);
    if (!stopped) await this.kill();
  }
}

/** Polls `${base}/healthz` until `ready(body)` holds; bounded by `timeoutMs`.
 *  Fails early, with the log's tail, if the process exits. */
export async function waitReady(base, { ca, proc, timeoutMs = 60000, ready = (b) => b.status === 'ok' }) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (proc?.exit) {
      throw new Error(`${proc.name} exited (${JSON.stringify(proc.exit)}) before it was ready:\n${proc.logTail()}`);
    }
    const caPem = typeof ca === 'function' ? ca() : ca;
    if (caPem) {
      try {
        const body = await getJson(`${base}/healthz`, { ca: caPem, timeoutMs: 1000 });
        if (ready(body)) return body;
        last = JSON.stringify(body);
      } catch (e) {
        last = e.message;
      }
    }
    await sleep(100);
  }
  throw new Error(`${base} not ready within ${timeoutMs} ms (${last})${proc ? `:\n${proc.logTail()}` : ''}`);
}

/** Reads a PEM file, or undefined while it does not exist yet. */
export function readIfExists(file) {
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

/** Writes the CA and server certificate the separate processes share. */
export function makeCertificates(dir) {
  const result = spawnSync(vcdnBin, ['cert', '--dir', dir], { encoding: 'utf8', timeout: 60000 });
  if (result.status !== 0) throw new Error(`vcdn cert failed: ${result.stderr}`);
  return fs.readFileSync(path.join(dir, 'ca.pem'));
}

export function cleanup(dir) {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}
