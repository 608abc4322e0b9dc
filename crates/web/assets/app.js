// The page's entry point: reads /config.json, then shows the view the URL
// names and keeps the URL and the view in step (history API, no reloads).
//
//   /                    the catalog        (catalog.js)
//   /watch/<path>        a player           (player.js; shareable, ?t=<seconds>)
//   /dashboard           the cluster        (dashboard.js)

import { loadConfig, Controller } from './api.js';
import { showCatalog } from './catalog.js';
import { showPlayer } from './player.js';
import { showDashboard } from './dashboard.js';
import { el } from './format.js';

const main = document.getElementById('main');
let settings = null;
let controller = null;
// The view on screen; its stop() ends its timers and requests.
let view = null;

function setActiveNav(section) {
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function render() {
  view?.stop();
  view = null;
  main.replaceChildren();
  const path = location.pathname;
  const base = settings.title;
  if (path === '/dashboard') {
    setActiveNav('dashboard');
    document.title = `Dashboard · ${base}`;
    view = showDashboard(main, controller);
  } else if (path.startsWith('/watch/')) {
    setActiveNav('videos');
    const videoPath = path.slice('/watch'.length);
    const start = Number(new URLSearchParams(location.search).get('t'));
    view = showPlayer(main, controller, videoPath, {
      start: Number.isFinite(start) && start > 0 ? start : 0,
      setTitle: (name) => {
        document.title = `${name} · ${base}`;
      },
    });
  } else {
    setActiveNav('videos');
    document.title = base;
    view = showCatalog(main, controller);
  }
}

/** Goes to `href` inside the page (pushState) and shows its view. */
export function navigate(href) {
  if (href === location.pathname + location.search) return;
  history.pushState(null, '', href);
  render();
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

document.addEventListener('click', (event) => {
  const link = event.target.closest('a[data-link]');
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(link.getAttribute('href'));
});
window.addEventListener('popstate', render);

async function start() {
  try {
    settings = await loadConfig();
  } catch (e) {
    main.replaceChildren(
      el('p', { class: 'notice error' }, `Could not load the page's settings (${e.message}). Reload to try again.`),
    );
    return;
  }
  controller = new Controller(settings.controller);
  render();
}

start();
