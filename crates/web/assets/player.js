// The player view: a <video> fed through the CDN by delivery.js, the line
// under it telling which replica serves and whether it was a cache hit, a
// shareable link, and keyboard shortcuts.

import { Delivery } from './delivery.js';
import { el, bytes, duration, title, folder, host } from './format.js';

const SHORTCUTS = [
  ['Space or K', 'play / pause'],
  ['\u2190 / \u2192', 'back / forward 5 s'],
  ['J / L', 'back / forward 10 s'],
  ['0 \u2013 9', 'jump to 0% \u2013 90%'],
  ['\u2191 / \u2193', 'volume'],
  ['M', 'mute'],
  ['F', 'full screen'],
];

function badge(status) {
  const text = status ?? '\u2014';
  return el('span', { class: `badge badge-${text.toLowerCase()}` }, text);
}

export function showPlayer(root, controller, path, { start = 0, setTitle }) {
  const name = title(path);
  setTitle(name);

  const video = el('video', {
    controls: true,
    playsinline: true,
    preload: 'auto',
    'aria-label': `Video: ${name}`,
  });
  const overlay = el('div', { class: 'overlay', role: 'status', hidden: true });
  const stage = el('div', { class: 'stage' }, video, overlay);

  const meta = el('p', { class: 'video-meta' }, folder(path));
  // What is known about the file: from the catalog, then from the video.
  const facts = { folder: folder(path), duration: null, size: null, resolution: null };
  function renderMeta() {
    meta.textContent = [facts.folder, facts.duration, facts.resolution, facts.size].filter(Boolean).join(' \u00b7 ');
  }
  // Not a live region: it changes every few seconds. The overlay (a
  // status) announces switches, and failures are alerts.
  const delivery = el('div', { class: 'delivery' });
  const loop = el('input', { type: 'checkbox', class: 'loop' });
  const atTime = el('input', { type: 'checkbox', class: 'share-at' });
  const shareUrl = el('input', { type: 'text', class: 'share-url', readonly: true, 'aria-label': 'Link to this video' });
  const copy = el('button', { type: 'button', class: 'button' }, 'Copy link');
  const unmute = el('button', { type: 'button', class: 'button', hidden: true }, 'Unmute');

  root.append(
    el(
      'section',
      { class: 'player' },
      el('a', { class: 'back', href: '/', 'data-link': true }, '\u2190 All videos'),
      stage,
      delivery,
      el(
        'div',
        { class: 'player-head' },
        el('div', {}, el('h1', {}, name), meta),
        el(
          'div',
          { class: 'player-actions' },
          unmute,
          el('label', { class: 'toggle' }, loop, ' Loop'),
        ),
      ),
      el(
        'div',
        { class: 'share' },
        shareUrl,
        copy,
        el('label', { class: 'toggle' }, atTime, ' at current time'),
      ),
      el(
        'details',
        { class: 'shortcuts' },
        el('summary', {}, 'Keyboard shortcuts'),
        el('dl', {}, SHORTCUTS.map(([key, what]) => [el('dt', {}, el('kbd', {}, key)), el('dd', {}, what)])),
      ),
    ),
  );

  const session = new Delivery(video, controller, path);
  // For a look from the browser's developer tools.
  window.vcdnPlayer = session;

  function link() {
    const url = new URL(`/watch${path}`, location.origin);
    if (atTime.checked && video.currentTime >= 1) url.searchParams.set('t', Math.floor(video.currentTime));
    return url.href;
  }
  function updateLink() {
    shareUrl.value = link();
  }

  function renderDelivery() {
    const { state, source, failovers, message } = session;
    delivery.dataset.state = state;
    const parts = [];
    if (source) {
      delivery.dataset.replica = source.servedBy ?? '';
      delivery.dataset.replicaUrl = source.origin;
      delivery.dataset.cache = source.cache ?? '';
      delivery.dataset.arrivalCache = source.arrivalCache ?? '';
      parts.push(
        el('span', { class: `live-dot live-${state}`, 'aria-hidden': 'true' }),
        el(
          'span',
          {},
          source.fallback ? 'Served by the origin (no replica is healthy) ' : 'Served by ',
          source.fallback ? null : el('strong', { class: 'replica-name' }, source.servedBy ?? '?'),
          ' ',
          el('span', { class: 'muted' }, host(source.url)),
        ),
      );
      if (!source.fallback) {
        parts.push(
          el('span', { title: 'How the replica serves the bytes at the playhead, checked every few seconds' }, 'cache ', badge(source.cache)),
          el('span', { class: 'muted', title: 'What the replica had when this playback started' }, 'on arrival ', source.arrivalCache ?? '\u2014'),
        );
      }
    }
    const done = failovers.filter((f) => f.resumedAt);
    if (done.length > 0) {
      const last = done.at(-1);
      delivery.dataset.failovers = String(done.length);
      parts.push(
        el(
          'span',
          { class: 'muted failover-note' },
          `${done.length} failover${done.length > 1 ? 's' : ''}: ${last.from} \u2192 ${last.to}, resumed in ${((last.resumedAt - last.detectedAt) / 1000).toFixed(1)} s`,
        ),
      );
    }
    if (state === 'failed') {
      const retry = el('button', { type: 'button', class: 'button', onclick: () => session.retry() }, 'Retry now');
      parts.push(el('span', { class: 'error', role: 'alert' }, message, ' '), session.fatal ? null : retry);
    }
    delivery.replaceChildren(...parts.filter(Boolean));

    overlay.hidden = !(state === 'switching' || state === 'connecting' || (state === 'loading' && video.readyState < 3));
    overlay.textContent =
      state === 'switching'
        ? `${failovers.at(-1)?.from ?? 'The replica'} stopped answering \u2014 switching replica\u2026`
        : 'Connecting\u2026';
    unmute.hidden = !session.mutedByPolicy;
  }

  session.addEventListener('change', renderDelivery);
  video.addEventListener('loadedmetadata', () => {
    facts.duration = duration(video.duration);
    facts.resolution = video.videoWidth ? `${video.videoWidth}\u00d7${video.videoHeight}` : null;
    renderMeta();
  });
  video.addEventListener('canplay', renderDelivery);
  video.addEventListener('pause', updateLink);
  video.addEventListener('seeked', updateLink);
  atTime.addEventListener('change', updateLink);
  loop.addEventListener('change', () => {
    video.loop = loop.checked;
  });
  unmute.addEventListener('click', () => {
    video.muted = false;
  });
  copy.addEventListener('click', async () => {
    updateLink();
    try {
      await navigator.clipboard.writeText(shareUrl.value);
      copy.textContent = 'Copied';
    } catch {
      shareUrl.select();
      copy.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => {
      copy.textContent = 'Copy link';
    }, 2000);
  });

  // The catalog entry adds the size; the player works without it.
  controller
    .videos()
    .then(({ videos }) => {
      const entry = videos?.find((v) => v.path === path);
      if (!entry) return;
      facts.size = bytes(entry.size);
      facts.duration ??= entry.duration_seconds != null ? duration(entry.duration_seconds) : null;
      renderMeta();
    })
    .catch(() => {});

  function seekBy(seconds) {
    const end = Number.isFinite(video.duration) ? video.duration : Infinity;
    video.currentTime = Math.min(Math.max(0, video.currentTime + seconds), end);
  }
  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest('input, textarea, select, button, a, summary, [contenteditable]')) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    let handled = true;
    if (key === ' ' || key === 'k') {
      if (video.paused) session.play();
      else video.pause();
    } else if (key === 'ArrowLeft') seekBy(-5);
    else if (key === 'ArrowRight') seekBy(5);
    else if (key === 'j') seekBy(-10);
    else if (key === 'l') seekBy(10);
    else if (key === 'ArrowUp') video.volume = Math.min(1, video.volume + 0.1);
    else if (key === 'ArrowDown') video.volume = Math.max(0, video.volume - 0.1);
    else if (key === 'm') video.muted = !video.muted;
    else if (key === 'f') {
      if (document.fullscreenElement) document.exitFullscreen();
      else stage.requestFullscreen?.().catch(() => {});
    } else if (/^[0-9]$/.test(key) && Number.isFinite(video.duration)) {
      video.currentTime = (video.duration * Number(key)) / 10;
    } else handled = false;
    if (handled) event.preventDefault();
  }
  // Capture, so the keys work the same whether or not the video has focus.
  document.addEventListener('keydown', onKey, true);

  updateLink();
  renderDelivery();
  session.start(start);

  return {
    stop() {
      document.removeEventListener('keydown', onKey, true);
      session.stop();
      if (window.vcdnPlayer === session) delete window.vcdnPlayer;
    },
  };
}
