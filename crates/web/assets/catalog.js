// The catalog: every video the controller lists (from the origin), as a
// grid of cards with a search filter. It refreshes by itself, so a file
// dropped into the origin's videos/ folder shows up without a reload.

import { el, bytes, duration, title, folder, hue } from './format.js';

/** How often the list is asked again while on screen. */
const REFRESH_MS = 5000;

/** Types the catalog lists; whether this browser plays each is asked of it. */
function playability(entry) {
  const probe = document.createElement('video');
  const type = entry.content_type ?? '';
  if (type === 'application/dash+xml') return { ok: false, why: 'DASH: needs a DASH player' };
  if (type && probe.canPlayType(type) === '') return { ok: false, why: `${type} does not play in this browser` };
  return { ok: true };
}

function card(entry) {
  const name = title(entry.path);
  const where = folder(entry.path);
  const play = playability(entry);
  const tile = el(
    'span',
    { class: 'tile', 'aria-hidden': 'true' },
    el('span', { class: 'tile-play' }),
    entry.duration_seconds != null ? el('span', { class: 'tile-duration' }, duration(entry.duration_seconds)) : null,
  );
  tile.style.setProperty('--hue', hue(entry.path));
  const meta = [where, bytes(entry.size), entry.duration_seconds != null ? duration(entry.duration_seconds) : null]
    .filter(Boolean)
    .join(' · ');
  return el(
    'li',
    { dataset: { path: entry.path } },
    el(
      'a',
      {
        class: `card${play.ok ? '' : ' unplayable'}`,
        href: `/watch${entry.path}`,
        'data-link': true,
        'aria-label': `${name}, ${meta}${play.ok ? '' : `, ${play.why}`}`,
      },
      tile,
      el('span', { class: 'card-title' }, name),
      el('span', { class: 'card-meta' }, meta),
      play.ok ? null : el('span', { class: 'card-note' }, play.why),
    ),
  );
}

function emptyState() {
  return el(
    'div',
    { class: 'empty', role: 'status' },
    el('h2', {}, 'No videos yet'),
    el('p', {}, 'Put .mp4 files in the origin\u2019s ', el('code', {}, 'videos/'), ' folder (subfolders work too). They appear here within a few seconds, no restart needed.'),
    el('pre', {}, el('code', {}, 'cp my-film.mp4 videos/')),
    el('p', { class: 'hint' }, 'For instant seeking, move the index to the front first: ', el('code', {}, 'ffmpeg -i in.mp4 -c copy -movflags +faststart out.mp4')),
  );
}

export function showCatalog(root, controller) {
  const search = el('input', {
    type: 'search',
    class: 'search',
    placeholder: 'Search videos',
    'aria-label': 'Search videos',
    autocomplete: 'off',
    spellcheck: 'false',
  });
  const count = el('span', { class: 'count', 'aria-live': 'polite' });
  const list = el('ul', { class: 'grid', 'aria-label': 'Videos' });
  const message = el('div', { class: 'catalog-message' });
  root.append(
    el(
      'section',
      { class: 'catalog' },
      el('div', { class: 'catalog-head' }, el('h1', {}, 'Videos'), count, search),
      message,
      list,
    ),
  );

  let entries = null;
  let shownKey = '';
  let timer = 0;
  const abort = new AbortController();

  function draw() {
    if (entries === null) return;
    const query = search.value.trim().toLowerCase();
    const shown = query
      ? entries.filter((e) => `${title(e.path)} ${folder(e.path)}`.toLowerCase().includes(query))
      : entries;
    const key = `${query}\n${shown.map((e) => `${e.path} ${e.etag}`).join('\n')}`;
    if (key === shownKey) return;
    shownKey = key;
    count.textContent = entries.length === 0 ? '' : query ? `${shown.length} of ${entries.length}` : `${entries.length}`;
    list.replaceChildren(...shown.map(card));
    if (entries.length === 0) message.replaceChildren(emptyState());
    else if (shown.length === 0) message.replaceChildren(el('p', { class: 'notice' }, `No video matches \u201c${search.value.trim()}\u201d.`));
    else message.replaceChildren();
  }

  async function refresh() {
    try {
      const catalog = await controller.videos({ signal: abort.signal });
      entries = catalog.videos ?? [];
      draw();
      if (catalog.truncated) {
        message.append(el('p', { class: 'hint' }, 'The origin lists only its first files; the folder holds more.'));
      }
    } catch (e) {
      if (abort.signal.aborted) return;
      if (entries === null) {
        message.replaceChildren(
          el('p', { class: 'notice error', role: 'alert' }, `Could not reach the controller at ${controller.base}: ${e.message}. Retrying\u2026`),
        );
      }
    }
    if (!abort.signal.aborted) timer = setTimeout(refresh, REFRESH_MS);
  }

  search.addEventListener('input', draw);
  function onKey(event) {
    // "/" jumps to the search box, as on most sites with one.
    if (event.key === '/' && document.activeElement !== search && !event.target.closest('input, textarea')) {
      event.preventDefault();
      search.focus();
    } else if (event.key === 'Escape' && document.activeElement === search) {
      search.value = '';
      draw();
    }
  }
  document.addEventListener('keydown', onKey);
  refresh();

  return {
    stop() {
      abort.abort();
      clearTimeout(timer);
      document.removeEventListener('keydown', onKey);
    },
  };
}
