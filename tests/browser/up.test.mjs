// `vcdn up` (every role in one process) seen from a browser: the catalog
// lists the sample video, the player plays it through a replica and says
// which one and whether it was a hit, seeking works, and the dashboard shows
// the cluster.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Proc, checkBinary, cleanup, freePort, freePortRun, getJson, get, readIfExists, scratchDir, waitReady } from './lib/cluster.mjs';
import { launch, newPage, saveConsole, screenshot, videoState, waitPlayingPast } from './lib/browser.mjs';

const REPLICAS = 3;

describe('vcdn up in a browser', { timeout: 240000 }, () => {
  let dir;
  let up;
  let browser;
  let page;
  let ca;
  const urls = {};

  before(async () => {
    checkBinary();
    dir = scratchDir('up');
    const [origin, replica, controller, web] = [await freePort(), await freePortRun(REPLICAS), await freePort(), await freePort()];
    urls.origin = `https://localhost:${origin}`;
    urls.controller = `https://localhost:${controller}`;
    urls.web = `https://localhost:${web}`;
    fs.writeFileSync(
      path.join(dir, 'vcdn.toml'),
      [
        '[origin]',
        `listen = "127.0.0.1:${origin}"`,
        '[replica]',
        `listen = "127.0.0.1:${replica}"`,
        '[controller]',
        `listen = "127.0.0.1:${controller}"`,
        '[web]',
        `listen = "127.0.0.1:${web}"`,
        '[up]',
        `replicas = ${REPLICAS}`,
        '',
      ].join('\n'),
    );
    // Started in an empty folder: vcdn makes its CA in cert/ and puts the
    // sample video into videos/ by itself.
    up = new Proc('up', ['up'], { cwd: dir });
    const caFile = path.join(dir, 'cert/ca.pem');
    const caNow = () => readIfExists(caFile);
    await waitReady(urls.web, { ca: caNow, proc: up });
    await waitReady(urls.controller, { ca: caNow, proc: up, ready: (b) => b.status === 'ok' && b.healthy === REPLICAS });
    ca = caNow();
    browser = await launch();
    page = await newPage(browser);
  });

  after(async () => {
    if (page) saveConsole(page, 'up');
    await browser?.close();
    await up?.stop();
    cleanup(dir);
  });

  test('the catalog lists the sample video, with search', async () => {
    await page.goto(urls.web);
    const card = page.locator('a.card[href="/watch/sample.mp4"]');
    await card.waitFor({ timeout: 15000 });
    const text = await card.innerText();
    assert.match(text, /sample/);
    assert.match(text, /0:10/, 'duration from the catalog');
    assert.match(text, /KB/, 'size from the catalog');

    await page.fill('input.search', 'no-such-video');
    await page.getByText('No video matches').waitFor({ timeout: 5000 });
    assert.equal(await page.locator('a.card').count(), 0);
    await page.fill('input.search', 'SAMP');
    await card.waitFor({ timeout: 5000 });
    await page.fill('input.search', '');
    await page.locator('input.search').blur();
    await screenshot(page, 'catalog.png', 'catalog.png');
  });

  test('the sample plays through a replica, says which one and whether it was a hit, and seeks', async () => {
    await page.click('a.card[href="/watch/sample.mp4"]');
    await page.waitForURL(/\/watch\/sample\.mp4$/);

    const first = await waitPlayingPast(page, 0.5, 20000);
    const later = await waitPlayingPast(page, first.currentTime + 0.5, 10000);
    assert.ok(later.currentTime > first.currentTime, 'playback advances');

    // The line under the player names the replica the video comes from.
    const videoOrigin = new URL(later.currentSrc).origin;
    assert.equal(later.replicaUrl, videoOrigin, 'the line names the replica <video> plays from');
    const cluster = await getJson(`${urls.controller}/api/cluster`, { ca });
    const serving = cluster.replicas.find((r) => r.url === videoOrigin);
    assert.ok(serving, `${videoOrigin} is one of the controller's replicas`);
    assert.equal(later.replica, serving.name);
    // ...and so does the replica itself.
    const direct = await get(later.currentSrc.split('#')[0], { ca, headers: { Range: 'bytes=0-0' } });
    assert.equal(direct.status, 206);
    assert.equal(direct.headers['x-served-by'], later.replica);

    // A fresh cluster: this first view was a miss; what is under the
    // playhead is a hit once the replica has it.
    assert.equal(later.arrivalCache, 'MISS');
    await page.waitForFunction(() => document.querySelector('.delivery')?.dataset.cache === 'HIT', null, { timeout: 15000 });
    const line = await page.locator('.delivery').innerText();
    assert.match(line, new RegExp(`Served by ${later.replica}`));
    assert.match(line, /HIT/);

    // Seek to the middle with the keyboard ("5" = 50%), as a viewer would.
    await page.keyboard.press('5');
    const middle = later.duration / 2;
    const afterSeek = await waitPlayingPast(page, middle + 0.3, 15000);
    assert.ok(afterSeek.currentTime < middle + 4, `resumed at the middle, not elsewhere (${afterSeek.currentTime})`);
    await screenshot(page, 'player.png', 'player.png');
  });

  test('the pages fit a phone screen', async () => {
    const phone = await newPage(browser, { width: 390, height: 844 });
    try {
      for (const [route, ready, name] of [
        ['/', 'a.card', 'catalog'],
        ['/watch/sample.mp4', '.delivery[data-replica]', 'player'],
        ['/dashboard', '.replica', 'dashboard'],
      ]) {
        await phone.goto(`${urls.web}${route}`);
        await phone.waitForSelector(ready, { timeout: 15000 });
        const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${route} is ${overflow}px wider than the phone`);
        await screenshot(phone, `phone-${name}.png`);
      }
    } finally {
      await phone.context().close();
    }
  });

  test('the dashboard shows every replica healthy, with figures', async () => {
    await page.click('a[data-nav="dashboard"]');
    await page.waitForFunction(
      (n) => document.querySelectorAll('.replica[data-state="healthy"]').length === n,
      REPLICAS,
      { timeout: 10000 },
    );
    const summary = await page.locator('.summary').innerText();
    assert.match(summary, new RegExp(`${REPLICAS} of ${REPLICAS}`));
    // The replica that served the sample reports traffic and a filled cache.
    await page.waitForFunction(
      () => [...document.querySelectorAll('.replica')].some((c) => /Viewers routed\s*[1-9]/.test(c.innerText)),
      null,
      { timeout: 10000 },
    );
    // Let the charts gather a few points before the picture.
    await page.waitForFunction(() => document.querySelectorAll('.replica .spark-line').length > 0, null, { timeout: 10000 });
    await screenshot(page, 'dashboard.png');
  });
});
