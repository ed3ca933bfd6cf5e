// Slicebed status page. Embedded in slice-service (src/web/assets.rs); no build step.
//
// The token a person pastes stays in this tab's sessionStorage and is sent only as
// "Authorization: Bearer" to this origin's /api/ endpoints: never in a URL, a cookie or a
// form post. Everything the server sends about slices is HTML it escaped; events are JSON and
// are written with textContent, never as markup.
'use strict';

(function () {
  const KEY = 'slicebed.token';
  const OVERVIEW_EVERY_MS = 5000;
  const MINE_EVERY_MS = 10000;
  const RECONNECT_MS = 2000;
  const MAX_EVENTS = 50;

  const $ = (id) => document.getElementById(id);
  let stream = null; // { ctl: AbortController, slices: string }
  let lastEvent = 0;
  let refreshSoon = null;

  function token() {
    return sessionStorage.getItem(KEY);
  }

  function say(text) {
    $('mine-status').textContent = text;
  }

  function replaceFromHtml(id, html) {
    const tpl = document.createElement('template');
    tpl.innerHTML = html;
    const fresh = tpl.content.firstElementChild;
    if (fresh && fresh.id === id) {
      $(id).replaceWith(fresh);
    }
  }

  async function refreshOverview() {
    try {
      const r = await fetch('/overview', { cache: 'no-store' });
      if (r.ok) {
        replaceFromHtml('overview', await r.text());
      }
    } catch (e) {
      // The service may be restarting; the next tick tries again.
    }
  }

  function signedOut(message) {
    sessionStorage.removeItem(KEY);
    stopStream();
    $('mine-content').textContent = '';
    $('token-form').hidden = false;
    $('events').hidden = true;
    document.querySelector('.events-title').hidden = true;
    $('events').textContent = '';
    lastEvent = 0;
    say(message);
  }

  async function loadMine() {
    const t = token();
    if (!t) {
      return;
    }
    let r;
    try {
      r = await fetch('/api/mine', { headers: { Authorization: 'Bearer ' + t }, cache: 'no-store' });
    } catch (e) {
      say('The service does not answer; trying again.');
      return;
    }
    if (r.status === 401 || r.status === 403) {
      signedOut('Token refused: ' + (await r.text()).trim());
      return;
    }
    if (!r.ok) {
      say('Could not load your slices (' + r.status + '): ' + (await r.text()).trim());
      return;
    }
    const html = await r.text();
    if (!token()) {
      return; // Forgotten while the answer was on its way.
    }
    $('mine-content').innerHTML = html;
    $('token-form').hidden = true;
    say('');
    ensureStream();
  }

  function scheduleMine() {
    if (refreshSoon === null) {
      refreshSoon = setTimeout(() => {
        refreshSoon = null;
        loadMine();
      }, 150);
    }
  }

  function showEvent(e) {
    const list = $('events');
    const li = document.createElement('li');
    const at = new Date(e.time).toISOString().replace('T', ' ').slice(0, 19);
    li.dataset.action = e.action;
    li.textContent = at + '  ' + e.actor + '  ' + e.action + '  ' + e.object +
      (e.detail ? '  ' + e.detail : '');
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) {
      list.lastElementChild.remove();
    }
    list.hidden = false;
    document.querySelector('.events-title').hidden = false;
  }

  function stopStream() {
    if (stream) {
      stream.ctl.abort();
      stream = null;
    }
  }

  // The stream watches the slices listed when it opened; when the list changes it reopens.
  function ensureStream() {
    const who = document.querySelector('#mine-content [data-slices]');
    const slices = who ? who.dataset.slices : '';
    if (stream && stream.slices === slices) {
      return;
    }
    stopStream();
    const mine = { ctl: new AbortController(), slices: slices };
    stream = mine;
    readStream(mine);
  }

  async function readStream(mine) {
    const t = token();
    try {
      const r = await fetch('/api/events?after=' + lastEvent, {
        headers: { Authorization: 'Bearer ' + t },
        cache: 'no-store',
        signal: mine.ctl.signal,
      });
      if (r.status === 401 || r.status === 403) {
        signedOut('Token refused: ' + (await r.text()).trim());
        return;
      }
      if (!r.ok) {
        say('Live events unavailable (' + r.status + '): ' + (await r.text()).trim());
      } else {
        await readLines(r.body.getReader(), mine);
      }
    } catch (e) {
      // Aborted, or the connection dropped: reconnect below unless replaced.
    }
    if (stream === mine && token()) {
      stream = null;
      setTimeout(ensureStream, RECONNECT_MS);
    }
  }

  async function readLines(reader, mine) {
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done || stream !== mine) {
        return;
      }
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const text = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (!text) {
          continue;
        }
        const msg = JSON.parse(text);
        if (msg.end !== undefined) {
          if (msg.signed_out) {
            signedOut('Signed out: ' + msg.end);
          }
          return; // Otherwise readStream reconnects.
        }
        lastEvent = Math.max(lastEvent, msg.id);
        showEvent(msg);
        scheduleMine();
      }
    }
  }

  function start() {
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = $('token');
      const t = input.value.trim();
      input.value = '';
      if (!t.startsWith('sbu_')) {
        say('A user token starts with sbu_ (slicectl token create prints one).');
        return;
      }
      sessionStorage.setItem(KEY, t);
      say('Loading your slices…');
      loadMine();
    });
    $('mine-content').addEventListener('click', (ev) => {
      if (ev.target && ev.target.id === 'forget') {
        signedOut('Token forgotten.');
      }
    });
    setInterval(refreshOverview, OVERVIEW_EVERY_MS);
    setInterval(loadMine, MINE_EVERY_MS);
    loadMine();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
