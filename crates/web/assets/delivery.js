// How a video reaches the <video> element through the CDN, and what happens
// when the replica serving it dies.
//
// Routing. The controller's /api/route/<path> names a replica and the URL to
// play. The page first asks that URL for one byte (which shows the replica
// answers, and whether it had the video cached), then hands the URL to
// <video>, which fetches every range from that replica. Asking for the route
// as JSON instead of following the controller's 302 lets the page know who
// serves (a <video> never tells where a redirect went) and ask again with the
// position when it has to switch. <video> gets no `crossorigin`, so the
// video itself needs no CORS; only the page's fetch() probes do, and vcdn
// answers them with `*` and exposes X-Served-By, X-Cache and Content-Range.
//
// Failover. A <video> may not notice for a long while that its replica died:
// it plays what it has buffered (a short video is buffered whole) and
// Chromium retries a broken download quietly. So the page watches the
// replica itself, asking its /healthz every second (not a viewer request in
// the replica's statistics). A refused connection fails over at once, an
// unanswered check on the second in a row; so do a media error from a
// replica that no longer answers, and playback stuck for several seconds.
// Failing over means: remember the replica as dead for a while, ask the
// controller for a route until it names one that answers (round-robin
// usually names another at once; any strategy drops the dead one within
// about 1.5 s), and load it at the position playback had reached.

import { checkAlive, probeCache } from './api.js';

/** How often the serving replica is checked. */
const WATCH_MS = 1000;
/** A liveness check with no answer by then counts as failed. */
const ALIVE_TIMEOUT_MS = 1200;
/** The cache status at the playhead is asked every this many checks. */
const CACHE_EVERY_TICKS = 4;
/** Playback wanted but not moving for this long switches replicas. */
const STALL_MS = 8000;
/** A replica that failed is not used again for this long. */
const DEAD_FOR_MS = 15000;
/** One attempt to find a working route gives up after this long... */
const CONNECT_DEADLINE_MS = 30000;
/** ...and tries again after this long. */
const RETRY_FAILED_MS = 5000;
/** Pauses between route attempts. */
const BACKOFF_MS = [0, 100, 200, 300, 500, 800, 1000];

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/**
 * Plays `path` (percent-encoded, leading slash) in `video` through the
 * controller. Fires `change` whenever what it shows changes.
 *
 * `state`: connecting | loading | playing | paused | switching | failed.
 * `source`: where the video comes from now:
 *   {url, origin, replica, servedBy, fallback, strategy, arrivalCache, cache, total}.
 * `failovers`: every switch, with timestamps (Date.now()) and positions:
 *   {reason, from, position, detectedAt, to, switchedAt, resumedAt, resumedPosition}.
 */
export class Delivery extends EventTarget {
  constructor(video, controller, path) {
    super();
    this.video = video;
    this.controller = controller;
    this.path = path;
    this.state = 'connecting';
    this.message = '';
    this.source = null;
    this.failovers = [];
    this.wantPlay = true;
    this.mutedByPolicy = false;
    // Set when retrying cannot help (the video does not exist).
    this.fatal = false;
    this.dead = new Map();
    this.failures = 0;
    this.ticks = 0;
    this.pending = null;
    this.progress = { time: 0, at: Date.now() };
    this.abort = new AbortController();
    this.retryTimer = 0;
    this.watchTimer = 0;
    this.watch();
    this.listen();
  }

  /** Starts playback at `position` seconds. */
  async start(position = 0) {
    if (!(await this.connect(position, false))) this.failed();
  }

  stop() {
    this.abort.abort();
    clearTimeout(this.retryTimer);
    clearTimeout(this.watchTimer);
    this.video.removeAttribute('src');
    this.video.load();
  }

  /** Tries again now after giving up. */
  retry() {
    clearTimeout(this.retryTimer);
    this.dead.clear();
    this.failover('retry');
  }

  emit() {
    this.dispatchEvent(new Event('change'));
  }

  isDead(origin) {
    const until = this.dead.get(origin);
    return until !== undefined && until > Date.now();
  }

  markDead(origin) {
    this.dead.set(origin, Date.now() + DEAD_FOR_MS);
  }

  /** The byte at `seconds` into the video, roughly (for cache probes). */
  offsetAt(seconds) {
    const total = this.source?.total;
    const length = this.video.duration;
    if (!total || !Number.isFinite(length) || length <= 0) return 0;
    return Math.min(total - 1, Math.max(0, Math.floor((total * seconds) / length)));
  }

  /** Finds a route whose replica answers and loads it; false if none did
   *  before the deadline (or the video does not exist). */
  async connect(position, isFailover) {
    const signal = this.abort.signal;
    const deadline = Date.now() + CONNECT_DEADLINE_MS;
    for (let attempt = 0; !signal.aborted && Date.now() < deadline; attempt += 1) {
      if (attempt > 0) await sleep(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)], signal);
      let route;
      try {
        route = await this.controller.route(this.path, { signal });
      } catch (e) {
        if (signal.aborted) return false;
        this.message = `The controller did not give a route: ${e.message}`;
        if (e.status === 400) {
          this.fatal = true;
          return false;
        }
        continue;
      }
      const origin = new URL(route.url).origin;
      // The controller may not have noticed yet; ask again.
      if (this.isDead(origin)) continue;
      let probe;
      try {
        probe = await probeCache(route.url, this.offsetAt(position), ALIVE_TIMEOUT_MS);
      } catch (e) {
        if (signal.aborted) return false;
        if (e.status === 404) {
          this.message = 'This video is not on the origin (404).';
          this.fatal = true;
          return false;
        }
        this.message = `${route.replica} did not answer: ${e.message}`;
        this.markDead(origin);
        continue;
      }
      this.load(route, probe, isFailover ? this.resumePosition(position) : position, isFailover);
      return true;
    }
    return false;
  }

  /** Where to resume: playback may have gone on from the buffer while a
   *  new route was sought, unless a load was still under way or failed. */
  resumePosition(fallback) {
    if (this.pending) return this.pending.at;
    if (this.video.error || this.video.readyState === 0) return fallback;
    return this.video.currentTime;
  }

  load(route, probe, at, isFailover) {
    const previous = this.source;
    this.source = {
      url: route.url,
      origin: new URL(route.url).origin,
      replica: route.replica,
      servedBy: probe.servedBy ?? route.replica,
      fallback: route.fallback,
      strategy: route.strategy,
      arrivalCache: probe.cache,
      cache: probe.cache,
      total: probe.total ?? previous?.total ?? null,
    };
    this.failures = 0;
    this.pending = { at, isFailover, since: Date.now() };
    this.progress = { time: at, at: Date.now() };
    this.state = 'loading';
    // A media fragment makes the load start at the position directly.
    this.video.src = at > 0.05 ? `${route.url}#t=${at.toFixed(3)}` : route.url;
    if (this.wantPlay) this.play();
    this.emit();
  }

  play() {
    this.video.play().catch((e) => {
      if (e.name !== 'NotAllowedError' || this.video.muted) return;
      // Autoplay with sound needs a gesture; start muted and say so.
      this.video.muted = true;
      this.mutedByPolicy = true;
      this.emit();
      this.video.play().catch(() => {});
    });
  }

  failed() {
    if (this.abort.signal.aborted) return;
    this.state = 'failed';
    if (!this.message) this.message = 'No replica could serve this video.';
    this.emit();
    if (!this.fatal) {
      this.retryTimer = setTimeout(() => this.failover('retry after failure'), RETRY_FAILED_MS);
    }
  }

  /** Leaves the serving replica for another one, at the same position. */
  async failover(reason) {
    if (this.state === 'switching' || this.abort.signal.aborted) return;
    const from = this.source;
    const event = {
      reason,
      from: from?.servedBy ?? null,
      fromUrl: from?.url ?? null,
      position: this.video.currentTime,
      detectedAt: Date.now(),
    };
    if (reason !== 'retry' && reason !== 'retry after failure') this.failovers.push(event);
    if (from && !reason.startsWith('retry')) this.markDead(from.origin);
    this.state = 'switching';
    this.message = reason;
    this.emit();
    const position = this.pending?.at ?? this.video.currentTime;
    if (await this.connect(position, true)) {
      event.to = this.source.servedBy;
      event.switchedAt = Date.now();
    } else {
      this.failed();
    }
  }

  /** Checks the serving replica every second; see the top of this file. */
  watch() {
    const tick = async () => {
      if (this.abort.signal.aborted) return;
      try {
        await this.check();
      } finally {
        if (!this.abort.signal.aborted) this.watchTimer = setTimeout(tick, WATCH_MS);
      }
    };
    this.watchTimer = setTimeout(tick, WATCH_MS);
  }

  async check() {
    const source = this.source;
    if (!source || this.state === 'switching' || this.state === 'failed') return;
    this.ticks += 1;
    const alive = await checkAlive(source.url, ALIVE_TIMEOUT_MS);
    if (this.source !== source || this.state === 'switching') return;
    if (!alive.ok) {
      this.failures += 1;
      const refused = alive.network && !alive.why.includes('no answer');
      if (refused || this.failures >= 2) {
        this.failover(`${source.servedBy} stopped answering (${alive.why})`);
        return;
      }
    } else {
      this.failures = 0;
    }
    const video = this.video;
    const moving = video.currentTime !== this.progress.time;
    if (moving || video.paused || video.ended || !this.wantPlay) {
      this.progress = { time: video.currentTime, at: Date.now() };
    } else if (Date.now() - this.progress.at > STALL_MS) {
      this.failover(`playback stalled on ${source.servedBy}`);
      return;
    }
    if (this.ticks % CACHE_EVERY_TICKS === 0 && !video.paused) this.refreshCache();
  }

  /** Asks the replica how it serves the bytes at the playhead now. */
  async refreshCache() {
    const source = this.source;
    if (!source || source.fallback) return;
    try {
      const probe = await probeCache(source.url, this.offsetAt(this.video.currentTime), ALIVE_TIMEOUT_MS);
      if (this.source !== source) return;
      source.cache = probe.cache;
      if (probe.servedBy) source.servedBy = probe.servedBy;
      this.emit();
    } catch {
      // The liveness check decides what a failure means.
    }
  }

  listen() {
    const video = this.video;
    const on = (type, handler) => video.addEventListener(type, handler, { signal: this.abort.signal });
    on('loadedmetadata', () => {
      // Where media fragments are not honoured, seek by hand.
      const at = this.pending?.at ?? 0;
      if (at > 0 && Math.abs(video.currentTime - at) > 0.5) video.currentTime = at;
    });
    on('timeupdate', () => {
      const pending = this.pending;
      if (!pending || video.paused || video.seeking) return;
      const ahead = video.currentTime > pending.at + 0.1;
      const wrapped = video.loop && video.currentTime > 0.1 && video.currentTime < pending.at - 1;
      if (!ahead && !wrapped) return;
      this.pending = null;
      const last = this.failovers.at(-1);
      if (pending.isFailover && last && !last.resumedAt) {
        last.resumedAt = Date.now();
        last.resumedPosition = video.currentTime;
      }
      this.state = 'playing';
      this.message = '';
      this.emit();
    });
    on('canplay', () => {
      if (this.wantPlay || !this.pending) return;
      this.pending = null;
      this.state = 'paused';
      this.emit();
    });
    on('play', () => {
      this.wantPlay = true;
      if (this.state === 'paused') {
        this.state = 'playing';
        this.emit();
      }
    });
    on('pause', () => {
      // A new source pauses the element by itself; only the viewer's pauses count.
      if (this.pending || this.state === 'switching' || video.ended) return;
      this.wantPlay = false;
      this.state = 'paused';
      this.emit();
    });
    on('ended', () => {
      this.wantPlay = false;
      this.state = 'paused';
      this.emit();
    });
    on('seeked', () => {
      this.progress = { time: video.currentTime, at: Date.now() };
      this.refreshCache();
    });
    on('volumechange', () => {
      if (!video.muted && this.mutedByPolicy) {
        this.mutedByPolicy = false;
        this.emit();
      }
    });
    on('error', () => this.onMediaError());
  }

  async onMediaError() {
    const source = this.source;
    if (!source || this.state === 'switching' || this.state === 'failed') return;
    const code = this.video.error?.code ?? 0;
    const alive = await checkAlive(source.url, ALIVE_TIMEOUT_MS);
    if (this.source !== source) return;
    if (alive.ok && (code === 3 || code === 4)) {
      // The replica is fine: the file is what the browser cannot play.
      this.message = code === 4 ? 'This browser cannot play this video\u2019s format.' : 'The video could not be decoded.';
      this.state = 'failed';
      this.emit();
      return;
    }
    this.failover(`media error ${code} from ${source.servedBy}`);
  }
}
