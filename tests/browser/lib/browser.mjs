// Debian's Chromium, headless, driven by playwright-core (no browser
// download: see shared notes on browsers). The flags are the ones that work
// as root on a machine with no network beyond loopback.

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { artifacts, repoRoot } from './cluster.mjs';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export async function launch() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A fresh context: the cluster's certificates are self-signed. */
export async function newPage(browser, { width = 1200, height = 760 } = {}) {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width, height },
    deviceScaleFactor: 1,
  });
  const page = await context.newPage();
  page.consoleLines = [];
  page.on('console', (m) => page.consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => page.consoleLines.push(`[pageerror] ${e.message}`));
  return page;
}

/** Saves a screenshot under artifacts/; with VCDN_UPDATE_SCREENSHOTS=1 also
 *  as `docs/screenshots/<docsName>` (the README's pictures). */
export async function screenshot(page, name, docsName) {
  fs.mkdirSync(artifacts, { recursive: true });
  const file = path.join(artifacts, name);
  await page.screenshot({ path: file, fullPage: false });
  if (docsName && process.env.VCDN_UPDATE_SCREENSHOTS === '1') {
    const docs = path.join(repoRoot, 'docs/screenshots');
    fs.mkdirSync(docs, { recursive: true });
    fs.copyFileSync(file, path.join(docs, docsName));
  }
  return file;
}

/** Writes the page's console to artifacts/ (kept for failed runs). */
export function saveConsole(page, name) {
  fs.mkdirSync(artifacts, { recursive: true });
  fs.writeFileSync(path.join(artifacts, `${name}.console.txt`), `${page.consoleLines.join('\n')}\n`);
}

/** The <video>'s state, as the viewer would see it. */
export function videoState(page) {
  return page.evaluate(() => {
    const v = document.querySelector('video');
    const d = document.querySelector('.delivery')?.dataset ?? {};
    return v
      ? {
          currentTime: v.currentTime,
          duration: v.duration,
          paused: v.paused,
          readyState: v.readyState,
          currentSrc: v.currentSrc,
          error: v.error?.code ?? null,
          state: d.state,
          replica: d.replica,
          replicaUrl: d.replicaUrl,
          cache: d.cache,
          arrivalCache: d.arrivalCache,
        }
      : null;
  });
}

/** Waits until playback has moved past `after` seconds, and is still moving. */
export async function waitPlayingPast(page, after, timeoutMs) {
  await page.waitForFunction(
    (t) => {
      const v = document.querySelector('video');
      return v && !v.paused && v.readyState >= 3 && v.currentTime > t;
    },
    after,
    { timeout: timeoutMs, polling: 100 },
  );
  return videoState(page);
}
