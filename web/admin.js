/* Airlock admin page: sign in with the admin key, then sessions (live), transcripts, stats,
   interfaces (editor + live preview), connectors, dead letters and the audit log.
   Plain modern JS, no framework, no build step. Everything is read from and written to the admin
   API (`/api/v1/admin`) with the key in the Authorization header; the key lives in this tab's
   sessionStorage only. Text from the API is inserted as text, except the assistant's `html`,
   which the bridge has already sanitized. */
(() => {
  'use strict';

  const API = '/api/v1/admin';
  const KEY = 'airlock:admin-key';
  const $ = (id) => document.getElementById(id);

  // -------------------------------------------------------------------------------------------
  // DOM helpers

  /** `h('a', {href, class: 'x', onclick}, 'text', child…)`: an element, children as text or nodes. */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'value') el.value = v;
      else if (k === 'checked' || k === 'selected') el[k] = !!v;
      else el.setAttribute(k, v === true ? '' : v);
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const SVG_NS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs = {}, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }
  let uid = 0;
  const nextId = (p) => `${p}-${++uid}`;

  /** A labelled control: returns [label, control] with the label bound to the control. */
  function field(labelText, control, hint) {
    control.id ||= nextId('f');
    const nodes = [h('label', { for: control.id }, labelText), control];
    if (hint) {
      const hintEl = h('p', { class: 'hint', id: nextId('hint') }, hint);
      control.setAttribute('aria-describedby', hintEl.id);
      nodes.push(hintEl);
    }
    return nodes;
  }
  const fmtTime = (t) => (t ? new Date(t).toLocaleString() : '—');
  const badge = (v) => h('span', { class: 'badge', 'data-v': v }, v);
  const table = (head, rows, empty) =>
    rows.length
      ? h('div', { class: 'table-wrap' },
          h('table', {}, h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))), h('tbody', {}, rows)))
      : h('p', { class: 'empty' }, empty);

  function flash(text, error = false) {
    const el = $('flash');
    el.textContent = text;
    el.classList.toggle('error', error);
    el.hidden = false;
    clearTimeout(flash.t);
    flash.t = setTimeout(() => (el.hidden = true), error ? 8000 : 4000);
  }

  /** A modal question. `typed`: the exact text the admin must type to confirm. Resolves true/false. */
  function ask({ title, text, ok = 'OK', danger = true, typed }) {
    const dialog = $('dialog');
    $('dialog-title').textContent = title;
    $('dialog-text').textContent = text || '';
    const extra = $('dialog-extra');
    extra.replaceChildren();
    const okButton = $('dialog-ok');
    okButton.textContent = ok;
    okButton.className = danger ? 'danger' : 'primary';
    okButton.disabled = false;
    let input;
    if (typed) {
      input = h('input', { autocomplete: 'off', spellcheck: 'false' });
      extra.append(...field(`Type ${typed} to confirm`, input));
      okButton.disabled = true;
      input.addEventListener('input', () => (okButton.disabled = input.value !== typed));
    }
    dialog.returnValue = '';
    dialog.showModal();
    (input || $('dialog-cancel')).focus();
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok' && (!typed || input.value === typed)), { once: true });
    });
  }

  /** Asks for one value in the modal; resolves the text, or null when cancelled. */
  function prompt({ title, label, value = '', ok = 'OK' }) {
    const dialog = $('dialog');
    $('dialog-title').textContent = title;
    $('dialog-text').textContent = '';
    const input = h('input', { value, autocomplete: 'off', spellcheck: 'false' });
    $('dialog-extra').replaceChildren(...field(label, input));
    const okButton = $('dialog-ok');
    okButton.textContent = ok;
    okButton.className = 'primary';
    okButton.disabled = false;
    dialog.returnValue = '';
    dialog.showModal();
    input.focus();
    input.select();
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok' ? input.value.trim() : null), { once: true });
    });
  }

  async function copy(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const area = h('textarea', { value: text, 'aria-hidden': 'true' });
      document.body.append(area);
      area.select();
      document.execCommand('copy');
      area.remove();
    }
    const was = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => (button.textContent = was), 1500);
  }

  // -------------------------------------------------------------------------------------------
  // The admin API

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      Object.assign(this, { status, code, field });
    }
  }

  let key = sessionStorage.getItem(KEY);

  async function request(path, { method = 'GET', body, headers = {} } = {}, withKey = key) {
    const init = { method, cache: 'no-store', headers: { authorization: `Bearer ${withKey}`, ...headers } };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(API + path, init);
    } catch {
      throw new ApiError(0, 'network', 'The bridge cannot be reached. Check your connection and try again.');
    }
    if (res.ok) return res;
    let err = {};
    try {
      err = (await res.json()).error || {};
    } catch {}
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || `${res.status} ${res.statusText}`, err.field);
  }

  /** Calls the admin API and answers its JSON; a 401 anywhere sends the admin back to sign in. */
  async function api(path, options) {
    try {
      const res = await request(path, options);
      return res.status === 204 ? null : res.json();
    } catch (err) {
      if (err.status === 401) signOut('The admin key was not accepted any more. Sign in again.');
      throw err;
    }
  }

  /** Shows an API failure to the admin (a 401 is already handled by `api`). */
  function failed(err) {
    if (err.status === 401) return;
    flash(err.message || String(err), true);
  }

  const query = (params) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, v);
    const text = q.toString();
    return text ? `?${text}` : '';
  };
  const enc = encodeURIComponent;

  /** Downloads an admin API resource: the key goes in a header, so fetch → Blob → object URL. */
  async function download(path, fallbackName) {
    try {
      const res = await request(path);
      const disposition = res.headers.get('content-disposition') || '';
      const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] || fallbackName;
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      if (err.status === 401) signOut('The admin key was not accepted any more. Sign in again.');
      else failed(err);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Live events: `GET /admin/events` read with fetch (EventSource cannot send the key).

  const bus = new EventTarget();
  let live = null;

  function setLive(state, text) {
    const el = $('live');
    el.dataset.state = state;
    el.textContent = text;
  }

  function startEvents() {
    stopEvents();
    const controller = new AbortController();
    live = controller;
    let backoff = 1000;
    (async () => {
      while (!controller.signal.aborted) {
        try {
          const res = await fetch(`${API}/events`, {
            headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' },
            cache: 'no-store',
            signal: controller.signal,
          });
          if (res.status === 401) return signOut('The admin key was not accepted any more. Sign in again.');
          if (!res.ok || !res.body) throw new Error(`events: ${res.status}`);
          setLive('on', 'Live');
          backoff = 1000;
          bus.dispatchEvent(new CustomEvent('reconnected'));
          await readEvents(res.body, controller.signal);
        } catch (err) {
          if (controller.signal.aborted) return;
        }
        setLive('retrying', 'Live: reconnecting…');
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 30_000);
      }
    })();
  }

  function stopEvents() {
    live?.abort();
    live = null;
    setLive('off', 'Live: off');
  }

  /** Parses a `text/event-stream` body and re-dispatches each event on `bus` by its name. */
  async function readEvents(body, signal) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    signal.addEventListener('abort', () => reader.cancel().catch(() => {}), { once: true });
    let buffer = '';
    let name = 'message';
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let nl;
      while ((nl = buffer.search(/\r?\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer[nl] === '\r' ? 2 : 1));
        if (line === '') {
          if (data.length) {
            let payload = data.join('\n');
            try {
              payload = JSON.parse(payload);
            } catch {}
            bus.dispatchEvent(new CustomEvent(name, { detail: payload }));
          }
          name = 'message';
          data = [];
        } else if (line.startsWith(':')) {
          // keep-alive comment
        } else {
          const colon = line.indexOf(':');
          const fieldName = colon < 0 ? line : line.slice(0, colon);
          const fieldValue = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (fieldName === 'event') name = fieldValue;
          else if (fieldName === 'data') data.push(fieldValue);
        }
      }
    }
  }

  /** Subscribes the current view to live events; unsubscribed when the view changes. */
  function onLive(names, fn) {
    for (const n of [names].flat()) {
      bus.addEventListener(n, fn);
      view.cleanups.push(() => bus.removeEventListener(n, fn));
    }
  }

  /** Calls `fn` at most once per `ms`, after the last call. */
  function debounce(fn, ms) {
    let t;
    return (...args) => {
      clearTimeout(t);
      t = setTimeout(() => fn(...args), ms);
    };
  }

  // -------------------------------------------------------------------------------------------
  // Sign in and out

  function showSignIn(message) {
    $('app').hidden = true;
    $('signin').hidden = false;
    const note = $('signin-message');
    note.hidden = !message;
    note.textContent = message || '';
    $('signin-key').value = '';
    $('signin-key').focus();
  }

  function signOut(message) {
    key = null;
    sessionStorage.removeItem(KEY);
    stopEvents();
    view.leave();
    $('main').replaceChildren();
    showSignIn(message);
  }

  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const typed = $('signin-key').value.trim();
    const button = e.submitter || e.target.querySelector('button');
    button.disabled = true;
    const note = $('signin-message');
    try {
      await request('/interfaces', {}, typed);
      key = typed;
      sessionStorage.setItem(KEY, key);
      note.hidden = true;
      start();
    } catch (err) {
      note.textContent = err.status === 401 ? 'That admin key was refused.' : err.message;
      note.hidden = false;
      $('signin-key').select();
    } finally {
      button.disabled = false;
    }
  });
  $('signout').addEventListener('click', () => signOut('Signed out.'));

  function start() {
    $('signin').hidden = true;
    $('app').hidden = false;
    startEvents();
    if (!location.hash || location.hash === '#' || location.hash === '#/') location.hash = '#/sessions';
    else route();
  }

  // -------------------------------------------------------------------------------------------
  // Routing: `#/sessions`, `#/sessions/{id}`, `#/stats`, `#/interfaces`, `#/interfaces/{slug}`,
  // `#/connectors`, `#/dead-letters`, `#/audit`.

  const view = {
    cleanups: [],
    token: 0,
    leave() {
      this.token++;
      for (const fn of this.cleanups.splice(0)) fn();
    },
  };

  const routes = {
    sessions: (id) => (id ? transcriptView(id) : sessionsView()),
    stats: () => statsView(),
    interfaces: (slug) => (slug ? editorView(slug) : interfacesView()),
    connectors: () => connectorsView(),
    'dead-letters': () => deadLettersView(),
    audit: () => auditView(),
  };

  function route() {
    if (!key) return;
    const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
    const render = routes[name];
    if (!render) {
      location.hash = '#/sessions';
      return;
    }
    view.leave();
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const main = $('main');
    main.replaceChildren(h('p', { class: 'empty' }, 'Loading…'));
    const token = view.token;
    const param = rest.length ? decodeURIComponent(rest.join('/')) : undefined;
    Promise.resolve(render(param))
      .then((node) => {
        if (token !== view.token || !node) return;
        main.replaceChildren(node);
        const heading = main.querySelector('h1');
        document.title = `${heading ? heading.textContent + ' — ' : ''}Airlock admin`;
      })
      .catch((err) => {
        if (token !== view.token || err.status === 401) return;
        main.replaceChildren(h('p', { class: 'notice error', role: 'alert' }, err.message || String(err)));
      });
  }
  window.addEventListener('hashchange', route);

  /** True while the view that started an async step is still the one on screen. */
  const current = (token) => token === view.token;

  // -------------------------------------------------------------------------------------------
  // Sessions

  let interfaceList = null;
  async function interfaces(refresh = false) {
    if (!interfaceList || refresh) interfaceList = (await api('/interfaces')).items;
    return interfaceList;
  }

  /** `datetime-local` value → RFC 3339 in UTC, or '' when empty. */
  const rfc3339 = (local) => (local ? new Date(local).toISOString() : '');

  async function sessionsView() {
    const token = view.token;
    const ifaces = await interfaces();
    const f = {
      interface: h('select', { name: 'interface' }, h('option', { value: '' }, 'All interfaces'),
        ifaces.map((i) => h('option', { value: i.slug }, `${i.title} (${i.slug})`))),
      status: h('select', { name: 'status' }, ['', 'active', 'ended', 'expired'].map((v) => h('option', { value: v }, v || 'Any status'))),
      q: h('input', { type: 'search', name: 'q', placeholder: 'Words in messages, or a visitor' }),
      since: h('input', { type: 'datetime-local', name: 'since' }),
      until: h('input', { type: 'datetime-local', name: 'until' }),
    };
    const filters = () => ({
      interface: f.interface.value,
      status: f.status.value,
      q: f.q.value.trim(),
      since: rfc3339(f.since.value),
      until: rfc3339(f.until.value),
    });
    const form = h('form', { class: 'toolbar', role: 'search', 'aria-label': 'Filter sessions' },
      h('div', {}, field('Interface', f.interface)),
      h('div', {}, field('Status', f.status)),
      h('div', { class: 'grow' }, field('Search', f.q)),
      h('div', {}, field('From', f.since)),
      h('div', {}, field('To', f.until)),
      h('button', { type: 'submit', class: 'primary' }, 'Apply'));

    const rows = new Map();
    let order = [];
    let cursor = null;
    const body = h('tbody');
    const list = h('div', { class: 'table-wrap' },
      h('table', { id: 'sessions-table' },
        h('thead', {}, h('tr', {}, ['Last activity', 'Interface', 'Status', 'Messages', 'Last message', 'Visitor'].map((c, i) =>
          h('th', { scope: 'col', class: i === 5 ? 'hide-narrow' : null }, c)))),
        body));
    const empty = h('p', { class: 'empty' }, 'No sessions match.');
    const more = h('button', { type: 'button', class: 'more', hidden: true }, 'Load more');
    const status = h('p', { class: 'hint', role: 'status', 'aria-live': 'polite' });

    const row = (sess, fresh) =>
      h('tr', { 'data-id': sess.id, class: fresh ? 'fresh' : null },
        h('td', { class: 'nowrap' }, h('a', { href: `#/sessions/${enc(sess.id)}` }, fmtTime(sess.last_activity_at))),
        h('td', {}, sess.interface),
        h('td', {}, badge(sess.status)),
        h('td', {}, sess.message_count),
        h('td', { class: 'snippet' }, sess.last_message || ''),
        h('td', { class: 'hide-narrow' }, visitorLabel(sess)));
    const draw = (freshIds = new Set()) => {
      body.replaceChildren(...order.map((id) => row(rows.get(id), freshIds.has(id))));
      empty.hidden = order.length > 0;
      list.hidden = order.length === 0;
      more.hidden = !cursor;
    };

    const load = async (append = false) => {
      const page = await api(`/sessions${query({ ...filters(), cursor: append ? cursor : '', limit: 50 })}`);
      if (!current(token)) return;
      if (!append) {
        rows.clear();
        order = [];
      }
      for (const sess of page.sessions) {
        if (!rows.has(sess.id)) order.push(sess.id);
        rows.set(sess.id, sess);
      }
      cursor = page.next_cursor || null;
      draw();
    };

    // A live event re-reads the first page and merges it: new and changed sessions move to the
    // top, the older pages the admin loaded stay below.
    const refresh = debounce(async (gone) => {
      try {
        if (gone) {
          rows.delete(gone);
          order = order.filter((id) => id !== gone);
        }
        const page = await api(`/sessions${query({ ...filters(), limit: 50 })}`);
        if (!current(token)) return;
        const fresh = new Set();
        const top = page.sessions.map((sess) => {
          const before = rows.get(sess.id);
          if (!before || before.last_activity_at !== sess.last_activity_at || before.status !== sess.status) fresh.add(sess.id);
          rows.set(sess.id, sess);
          return sess.id;
        });
        const seen = new Set(top);
        order = [...top, ...order.filter((id) => !seen.has(id))];
        if (!order.length) cursor = page.next_cursor || null;
        draw(fresh);
        if (fresh.size) status.textContent = `${fresh.size} session${fresh.size > 1 ? 's' : ''} updated`;
      } catch (err) {
        failed(err);
      }
    }, 250);
    onLive(['session', 'message', 'reconnected', 'lagged'], (e) => {
      const d = e.detail || {};
      const kind = d.action || d.kind;
      refresh(e.type === 'session' && kind === 'deleted' ? d.session_id : undefined);
    });

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      load().catch(failed);
    });
    for (const c of [f.interface, f.status]) c.addEventListener('change', () => load().catch(failed));
    more.addEventListener('click', () => load(true).catch(failed));

    const exportButton = (format) =>
      h('button', { type: 'button', onclick: () => download(`/sessions/export${query({ ...filters(), format })}`, `airlock-sessions.${format}`) },
        `Export ${format.toUpperCase()}`);

    await load();
    return h('section', {},
      h('h1', {}, 'Sessions'),
      form,
      h('div', { class: 'actions' }, exportButton('jsonl'), exportButton('csv')),
      status, list, empty, more);
  }

  // -------------------------------------------------------------------------------------------
  // One transcript

  async function transcriptView(id) {
    const token = view.token;
    const root = h('section', { class: 'transcript-view' });
    const draw = async () => {
      const t = await api(`/sessions/${enc(id)}`);
      if (!current(token)) return;
      const sess = t.session;
      const end = h('button', { type: 'button', disabled: sess.status !== 'active' }, 'End session');
      const del = h('button', { type: 'button', class: 'danger' }, 'Delete session');
      const forget = h('button', { type: 'button', class: 'danger' }, 'Forget visitor');
      end.addEventListener('click', async () => {
        if (!(await ask({ title: 'End this session?', text: 'The visitor can no longer send messages in it.', ok: 'End session' }))) return;
        try {
          await api(`/sessions/${enc(id)}/end`, { method: 'POST' });
          flash('Session ended.');
          await draw();
        } catch (err) {
          failed(err);
        }
      });
      del.addEventListener('click', async () => {
        if (!(await ask({ title: 'Delete this session?', text: 'Its whole transcript is deleted. This cannot be undone.', ok: 'Delete' }))) return;
        try {
          await api(`/sessions/${enc(id)}`, { method: 'DELETE' });
          flash('Session deleted.');
          location.hash = '#/sessions';
        } catch (err) {
          failed(err);
        }
      });
      // A request to erase someone's data: every session of this visitor, or of this signed-in
      // user on every interface and device.
      forget.addEventListener('click', async () => {
        const who = sess.identity
          ? { user_id: sess.identity.user_id, text: `the signed-in user ${sess.identity.user_id}, on every interface and device` }
          : { visitor_id: sess.visitor_id, text: `the visitor ${sess.visitor_id}` };
        if (!(await ask({ title: 'Forget this visitor?', text: `Every session of ${who.text} is deleted, with their messages and files. This cannot be undone.`, ok: 'Forget visitor' }))) return;
        try {
          const body = who.user_id ? { user_id: who.user_id } : { visitor_id: who.visitor_id };
          const removed = await api('/visitors/forget', { method: 'POST', body });
          flash(`Deleted ${removed.sessions} session(s), ${removed.messages} message(s) and ${removed.attachments} file(s).`);
          location.hash = '#/sessions';
        } catch (err) {
          failed(err);
        }
      });
      const meta = [
        ['Interface', h('a', { href: `#/interfaces/${enc(sess.interface)}` }, sess.interface)],
        ['Status', badge(sess.status)],
        ['Visitor', visitorLabel(sess, true)],
        ['Started', fmtTime(sess.created_at)],
        ['Last activity', fmtTime(sess.last_activity_at)],
        ['Messages', sess.message_count],
        ['Page', sess.page_url || '—'],
        ['Referrer', sess.referrer || '—'],
      ];
      root.replaceChildren(
        h('p', {}, h('a', { href: '#/sessions' }, '← All sessions')),
        h('h1', {}, `Session ${sess.id}`),
        h('dl', { class: 'meta' }, meta.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
        h('div', { class: 'actions' }, end, del, forget),
        h('h2', {}, 'Transcript'),
        t.messages.length
          ? h('div', { class: 'transcript', role: 'log', 'aria-label': 'Transcript' }, t.messages.map(messageView))
          : h('p', { class: 'empty' }, 'No messages yet.'));
    };
    onLive(['message', 'session', 'lagged'], (e) => {
      const d = e.detail || {};
      if (e.type === 'lagged' || d.session_id === id) draw().catch(failed);
    });
    await draw();
    return root;
  }

  /** Who a session's visitor is: the signed-in user's name or email (with the user id when
   *  `full`), else the anonymous visitor id. */
  function visitorLabel(sess, full) {
    const who = sess.identity;
    if (!who) return sess.visitor_id;
    const name = [who.name, who.email && (who.name ? `<${who.email}>` : who.email)].filter(Boolean).join(' ') || who.user_id;
    return full ? `${name} (signed in as ${who.user_id}; visitor ${sess.visitor_id})` : name;
  }

  function messageView(m) {
    const body = h('div');
    if (m.role === 'assistant' && m.html) {
      body.className = 'html';
      body.innerHTML = m.html; // sanitized by the bridge (render.rs)
    } else {
      body.className = 'text';
      body.textContent = m.text;
    }
    return h('article', { class: 'msg', 'data-role': m.role, 'data-status': m.status, 'data-id': m.id },
      h('header', {}, h('strong', {}, m.role), h('time', { datetime: m.created_at }, fmtTime(m.created_at)), badge(m.status)),
      body,
      m.attachments?.length
        ? h('ul', { class: 'files', 'aria-label': 'Attachments' },
            m.attachments.map((a) => h('li', {}, `${a.filename} — ${a.content_type}, ${size(a.size)} `,
              h('button', { type: 'button', 'aria-label': `Download ${a.filename}`,
                onclick: () => download(`/attachments/${enc(a.id)}`, a.filename) }, 'Download'))))
        : null,
      m.error ? h('p', { class: 'error' }, m.error) : null);
  }
  const size = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n >= 1024 ? `${Math.round(n / 1024)} KB` : `${n} B`);

  // -------------------------------------------------------------------------------------------
  // Stats, with charts drawn as inline SVG

  const PERIODS = [
    ['24h', 'Last 24 hours', 1],
    ['7d', 'Last 7 days', 7],
    ['30d', 'Last 30 days', 30],
    ['90d', 'Last 90 days', 90],
  ];

  async function statsView() {
    const token = view.token;
    const ifaces = await interfaces();
    const period = h('select', {}, PERIODS.map(([v, label]) => h('option', { value: v, selected: v === '7d' }, label)));
    const iface = h('select', {}, h('option', { value: '' }, 'All interfaces'), ifaces.map((i) => h('option', { value: i.slug }, i.slug)));
    const out = h('div', { 'aria-live': 'polite' });
    const draw = async () => {
      const days = PERIODS.find(([v]) => v === period.value)[2];
      const until = new Date();
      const since = new Date(until.getTime() - days * 86_400_000);
      const st = await api(`/stats${query({ interface: iface.value, since: since.toISOString(), until: until.toISOString() })}`);
      if (!current(token)) return;
      const num = (n, label) => h('div', { class: 'stat' }, h('span', { class: 'n' }, n ?? '—'), h('span', { class: 'l' }, label));
      const ms = (v) => (v == null ? '—' : v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);
      const lat = st.reply_latency_ms || {};
      out.replaceChildren(
        h('div', { class: 'cards' },
          num(st.sessions, 'Sessions'),
          num(st.visitors, 'Visitors'),
          num(st.messages?.user, 'Visitor messages'),
          num(st.messages?.assistant, 'Replies'),
          num(ms(lat.p50), 'Reply latency p50'),
          num(ms(lat.p95), 'Reply latency p95'),
          num(st.dead_letters, 'Dead letters')),
        h('div', { class: 'charts' },
          chart('Sessions and messages over time', lineChart(st.series || [], days <= 3),
            h('div', { class: 'legend' }, h('span', { class: 'k-sessions' }, 'Sessions'), h('span', { class: 'k-messages' }, 'Messages'))),
          chart('Messages by hour of day (UTC)', barChart((st.by_hour || []).map((n, i) => [String(i).padStart(2, '0'), n]))),
          chart('Reply latency', barChart([['p50', lat.p50 || 0], ['p95', lat.p95 || 0]], { unit: ms, classes: ['', 'p95'] }))),
        h('h2', {}, 'Top referrers'),
        table(['Referrer', 'Sessions'], (st.top_referrers || []).map((r) => h('tr', {}, h('td', { class: 'snippet' }, r.referrer), h('td', {}, r.sessions))), 'No referrers in this period.'));
    };
    for (const c of [period, iface]) c.addEventListener('change', () => draw().catch(failed));
    await draw();
    return h('section', {},
      h('h1', {}, 'Stats'),
      h('div', { class: 'toolbar' }, h('div', {}, field('Period', period)), h('div', {}, field('Interface', iface))),
      out);
  }

  const chart = (title, svg, legend) => h('figure', { class: 'chart' }, h('figcaption', {}, title), svg, legend);
  const W = 480;
  const H = 200;
  const PAD = { l: 36, r: 8, t: 8, b: 26 };

  /** Axis scale: a round maximum ≥ the data's, and ticks. */
  function niceMax(v) {
    if (v <= 4) return 4;
    const p = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
  }
  function frame(max, fmt = String) {
    const g = s('g');
    for (let i = 0; i <= 4; i++) {
      const y = PAD.t + ((H - PAD.t - PAD.b) * (4 - i)) / 4;
      g.append(s('line', { class: i ? 'grid' : 'axis', x1: PAD.l, x2: W - PAD.r, y1: y, y2: y }));
      g.append(s('text', { x: PAD.l - 4, y: y + 3, 'text-anchor': 'end' }, fmt((max * i) / 4)));
    }
    return g;
  }

  function lineChart(series, hourly) {
    const desc = series.map((p) => `${p.at}: ${p.sessions} sessions, ${p.messages} messages`).join('; ');
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': desc ? `Sessions and messages: ${desc}` : 'No data' });
    const max = niceMax(Math.max(0, ...series.flatMap((p) => [p.sessions, p.messages])));
    svg.append(frame(max, (v) => String(Math.round(v))));
    if (!series.length) return svg;
    const x = (i) => PAD.l + (series.length === 1 ? 0.5 : i / (series.length - 1)) * (W - PAD.l - PAD.r);
    const y = (v) => PAD.t + (1 - v / max) * (H - PAD.t - PAD.b);
    for (const k of ['sessions', 'messages']) {
      svg.append(s('polyline', { class: `s-${k}`, points: series.map((p, i) => `${x(i).toFixed(1)},${y(p[k]).toFixed(1)}`).join(' ') }));
    }
    const step = Math.max(1, Math.ceil(series.length / 6));
    series.forEach((p, i) => {
      if (i % step) return;
      const d = new Date(p.at);
      const label = hourly ? `${String(d.getHours()).padStart(2, '0')}:00` : `${d.getMonth() + 1}/${d.getDate()}`;
      svg.append(s('text', { x: x(i), y: H - 8, 'text-anchor': 'middle' }, label));
    });
    return svg;
  }

  function barChart(bars, { unit = (v) => String(Math.round(v)), classes = [] } = {}) {
    const desc = bars.map(([l, v]) => `${l}: ${unit(v)}`).join(', ');
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': desc || 'No data' });
    const max = niceMax(Math.max(0, ...bars.map(([, v]) => v)));
    svg.append(frame(max, unit));
    const slot = (W - PAD.l - PAD.r) / Math.max(bars.length, 1);
    const labelEvery = bars.length > 12 ? 3 : 1;
    bars.forEach(([label, v], i) => {
      const hgt = (v / max) * (H - PAD.t - PAD.b);
      const x = PAD.l + i * slot + slot * 0.15;
      const bar = s('rect', { class: `bar ${classes[i] || ''}`, x, y: H - PAD.b - hgt, width: slot * 0.7, height: Math.max(hgt, 0) });
      bar.append(s('title', {}, `${label}: ${unit(v)}`));
      svg.append(bar);
      if (i % labelEvery === 0) svg.append(s('text', { x: x + slot * 0.35, y: H - 8, 'text-anchor': 'middle' }, label));
    });
    return svg;
  }

  // -------------------------------------------------------------------------------------------
  // Interfaces: the list and create

  async function interfacesView() {
    const items = await interfaces(true);
    const slug = h('input', { name: 'slug', required: true, pattern: '[a-z0-9][a-z0-9-]*', autocomplete: 'off', spellcheck: 'false' });
    const title = h('input', { name: 'title', required: true });
    const errors = h('p', { class: 'field-error', role: 'alert' });
    const form = h('form', { class: 'toolbar', 'aria-label': 'Create an interface' },
      h('div', {}, field('Slug', slug)),
      h('div', { class: 'grow' }, field('Title', title)),
      h('button', { type: 'submit', class: 'primary' }, 'Create draft'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      errors.textContent = '';
      try {
        const created = await api('/interfaces', { method: 'POST', body: { slug: slug.value.trim(), title: title.value.trim() } });
        interfaceList = null;
        location.hash = `#/interfaces/${enc(created.slug)}`;
      } catch (err) {
        if (err.status !== 401) errors.textContent = err.message;
      }
    });
    return h('section', {},
      h('h1', {}, 'Interfaces'),
      table(['Slug', 'Title', 'Status', 'Updated'], items.map((i) =>
        h('tr', { 'data-slug': i.slug },
          h('td', {}, h('a', { href: `#/interfaces/${enc(i.slug)}` }, i.slug)),
          h('td', {}, i.title),
          h('td', {}, badge(i.status)),
          h('td', { class: 'nowrap' }, fmtTime(i.updated_at)))), 'No interfaces yet.'),
      h('h2', {}, 'New interface'),
      form, errors);
  }

  // -------------------------------------------------------------------------------------------
  // The interface editor and its live preview

  /** Every editable field: [path in the Interface JSON, label, kind, options]. */
  const GROUPS = [
    ['Basics', [
      ['slug', 'Slug', 'text', { hint: 'Part of every embed URL; renaming breaks embeds already in use.' }],
      ['name', 'Internal name', 'text'],
      ['title', 'Title', 'text'],
      ['description', 'Description', 'textarea'],
      ['locale', 'Locale', 'text', { hint: 'e.g. en, de; empty follows the visitor.', nullable: true }],
    ]],
    ['Look', [
      ['appearance.primary_color', 'Primary color', 'color'],
      ['appearance.font', 'Font', 'text', { hint: 'A CSS font-family list; empty uses the system font.', nullable: true }],
      ['appearance.radius', 'Corner radius (px)', 'number', { min: 0, max: 32 }],
      ['appearance.theme', 'Theme', 'select', { options: ['auto', 'light', 'dark'] }],
      ['appearance.icon', 'Header icon', 'text', { hint: 'An emoji, or an https: / data:image/ URL.', nullable: true }],
      ['appearance.cover', 'Header background', 'text', { hint: 'A color or a linear-gradient(…).', nullable: true }],
    ]],
    ['Messages', [
      ['welcome_message', 'Welcome message', 'textarea'],
      ['placeholder', 'Input placeholder', 'text'],
      ['suggested_prompts', 'Suggested prompts', 'prompts'],
    ]],
    ['Launcher', [
      ['launcher.position', 'Position', 'select', { options: ['bottom-right', 'bottom-left'] }],
      ['launcher.icon', 'Icon', 'text', { hint: 'An emoji; empty shows a chat icon.', nullable: true }],
      ['launcher.label', 'Label', 'text', { nullable: true }],
      ['launcher.open', 'Open when the page loads', 'checkbox'],
    ]],
    ['Uploads', [
      ['uploads.enabled', 'Visitors may attach files', 'checkbox'],
      ['uploads.max_files', 'Most files per message', 'number', { min: 1 }],
      ['uploads.max_mb', 'Largest file (MB)', 'number', { min: 1 }],
      ['uploads.allowed_types', 'Allowed types', 'list', { hint: 'MIME types, one per line.' }],
    ]],
    ['Sessions and limits', [
      ['persistence', 'History kept', 'select', { options: ['session', 'local'], labels: ['For the browser tab', 'Across browser restarts'] }],
      ['session_timeout_mins', 'Session timeout (minutes)', 'number', { min: 1, nullable: true }],
      ['rate_limit.messages', 'Rate limit: messages', 'number', { min: 1, nullable: true }],
      ['rate_limit.window_secs', 'Rate limit: per seconds', 'number', { min: 1, nullable: true }],
      ['allowed_origins', 'Allowed origins', 'list', { hint: 'Sites whose pages may embed the chat (script or iframe), one per line, e.g. https://example.com; * alone allows any site. Empty: only this bridge\'s own pages.' }],
    ]],
    ['Signed-in visitors', [
      ['identity.algorithm', 'Identity tokens', 'select', { options: ['', 'HS256', 'RS256'], labels: ['Not accepted (anonymous visitors only)', 'HS256: signed with a shared secret', 'RS256: signed with the site\'s private key'], nullable: true, hint: 'Your site signs a short-lived token (JWT) for its signed-in user; the chat then knows who they are, on every device. See docs/widget.md.' }],
      ['identity.secret', 'HS256 secret', 'secret', { hint: 'At least 32 bytes, e.g. from openssl rand -base64 48. Write-only: leave empty to keep the stored one.' }],
      ['identity.public_key', 'RS256 public key (PEM)', 'textarea', { code: true, nullable: true }],
      ['identity.issuer', 'Required issuer (iss)', 'text', { nullable: true, hint: 'Empty: any.' }],
      ['identity.audience', 'Required audience (aud)', 'text', { nullable: true, hint: 'Empty: any.' }],
      ['require_identity', 'Only signed-in visitors may chat', 'checkbox'],
    ]],
    ['Agent', [
      ['connectors', 'Connectors', 'connectors', { hint: 'Which connectors may serve this interface; none ticked means any.' }],
      ['system_prompt', 'System prompt', 'textarea', { code: true, nullable: true }],
      ['agent_context', 'Agent context (JSON object)', 'json'],
    ]],
  ];

  const path0Nested = new Set(GROUPS.flatMap(([, fs]) => fs.map(([p]) => p)).filter((p) => p.includes('.')).map((p) => p.split('.')[0]));
  const getPath = (obj, path) => path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
  function setPath(obj, path, value) {
    const keys = path.split('.');
    let o = obj;
    for (const k of keys.slice(0, -1)) o = o[k] ??= {};
    o[keys.at(-1)] = value;
  }

  async function editorView(slug) {
    const token = view.token;
    const [iface, connectors] = await Promise.all([api(`/interfaces/${enc(slug)}`), api('/connectors').then((r) => r.items).catch(() => [])]);
    let saved = iface;
    const controls = new Map(); // path → { read(), write(value), el, error }

    const form = h('form', { class: 'editor-form', novalidate: true, 'aria-label': `Settings of ${slug}` });
    for (const [legend, fields] of GROUPS) {
      const set = h('fieldset', {}, h('legend', {}, legend));
      for (const [path, label, kind, opts = {}] of fields) {
        if (!(path.split('.')[0] in iface)) continue; // a field this bridge does not have
        const c = control(path, label, kind, opts, connectors);
        controls.set(path, c);
        set.append(c.node);
      }
      if (set.children.length > 1) form.append(set);
    }
    const statusBadge = h('span');
    const publish = h('button', { type: 'button' });
    const save = h('button', { type: 'submit', class: 'primary' }, 'Save');
    const duplicate = h('button', { type: 'button' }, 'Duplicate');
    const remove = h('button', { type: 'button', class: 'danger' }, 'Delete');
    const formError = h('p', { class: 'field-error', role: 'alert' });
    form.append(h('div', { class: 'sticky-actions' }, formError, h('div', { class: 'actions' }, save, publish, duplicate, remove)));

    const fill = (data) => {
      for (const [path, c] of controls) c.write(getPath(data, path));
      const secret = controls.get('identity.secret');
      if (secret) secret.el.placeholder = data.identity?.secret_set ? '•••••••• stored; type to replace' : '';
      statusBadge.replaceChildren(badge(data.status));
      publish.textContent = data.status === 'published' ? 'Unpublish' : 'Publish';
    };
    fill(iface);

    const clearErrors = () => {
      formError.textContent = '';
      for (const c of controls.values()) c.error('');
    };
    const showError = (err) => {
      if (err.status === 401) return;
      const path = err.field || (err.status === 422 && /^([a-z_.\d[\]]+):/.exec(err.message)?.[1]);
      const c = path && (controls.get(path) || controls.get(path.replace(/\[\d+\].*$/, '')) || [...controls.entries()].find(([p]) => path.startsWith(p))?.[1]);
      if (c) {
        c.error(err.message);
        c.el.focus();
      } else formError.textContent = err.message;
    };

    /** The fields the admin changed, as a PATCH body (only they are sent). */
    const changes = () => {
      const draft = {};
      for (const [path, c] of controls) setPath(draft, path, c.read());
      const patch = {};
      for (const k of Object.keys(draft)) {
        const before = k in saved ? saved[k] : undefined;
        let after = draft[k];
        if (after && typeof after === 'object' && !Array.isArray(after) && path0Nested.has(k)) {
          // A nested group (appearance, launcher, …) is sent whole; all-empty and unset stays unset.
          after = Object.values(after).every((v) => v == null) && before == null ? null : { ...(before || {}), ...after };
          // No algorithm: no identity settings at all.
          if (k === 'identity' && after && !after.algorithm) after = null;
        }
        if (JSON.stringify(after) !== JSON.stringify(before)) patch[k] = after;
      }
      return patch;
    };

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors();
      let patch;
      try {
        patch = changes();
      } catch (err) {
        return showError(err);
      }
      if (!Object.keys(patch).length) return flash('Nothing to save.');
      save.disabled = true;
      try {
        saved = await api(`/interfaces/${enc(saved.slug)}`, { method: 'PATCH', body: patch });
        interfaceList = null;
        flash('Saved.');
        if (saved.slug !== slug) {
          location.hash = `#/interfaces/${enc(saved.slug)}`;
          return;
        }
        fill(saved);
        preview.reload(saved);
      } catch (err) {
        showError(err);
      } finally {
        save.disabled = false;
      }
    });
    publish.addEventListener('click', async () => {
      const verb = saved.status === 'published' ? 'unpublish' : 'publish';
      try {
        saved = await api(`/interfaces/${enc(saved.slug)}/${verb}`, { method: 'POST' });
        interfaceList = null;
        fill(saved);
        flash(verb === 'publish' ? 'Published: visitors can use it now.' : 'Unpublished: visitors see “not available”.');
      } catch (err) {
        showError(err);
      }
    });
    duplicate.addEventListener('click', async () => {
      const newSlug = await prompt({ title: `Duplicate ${saved.slug}`, label: 'Slug of the copy', value: `${saved.slug}-copy`, ok: 'Duplicate' });
      if (!newSlug) return;
      try {
        const copyOf = await api(`/interfaces/${enc(saved.slug)}/duplicate`, { method: 'POST', body: { slug: newSlug } });
        interfaceList = null;
        flash(`Duplicated as ${copyOf.slug} (a draft).`);
        location.hash = `#/interfaces/${enc(copyOf.slug)}`;
      } catch (err) {
        showError(err);
      }
    });
    remove.addEventListener('click', async () => {
      const sure = await ask({
        title: `Delete ${saved.slug}?`,
        text: 'The interface and all its sessions are deleted. Embeds of it stop working. This cannot be undone.',
        ok: 'Delete',
        typed: saved.slug,
      });
      if (!sure) return;
      try {
        const res = await api(`/interfaces/${enc(saved.slug)}`, { method: 'DELETE' });
        interfaceList = null;
        flash(`Deleted ${saved.slug}${res?.sessions != null ? ` and ${res.sessions} sessions` : ''}.`);
        location.hash = '#/interfaces';
      } catch (err) {
        showError(err);
      }
    });

    const preview = previewPane(token);
    preview.reload(saved);
    return h('section', {},
      h('p', {}, h('a', { href: '#/interfaces' }, '← All interfaces')),
      h('h1', {}, `Interface ${slug} `, statusBadge),
      h('div', { class: 'editor' }, form, preview.node));
  }

  /** One editor control for the field at `path`. */
  function control(path, label, kind, opts, connectors) {
    let el;
    let read;
    let write;
    const extra = [];
    const nullable = (v) => (opts.nullable && v === '' ? null : v);
    switch (kind) {
      case 'textarea':
        el = h('textarea', { name: path, class: opts.code ? 'code' : null });
        read = () => nullable(el.value);
        write = (v) => (el.value = v ?? '');
        break;
      case 'number':
        el = h('input', { name: path, type: 'number', min: opts.min, max: opts.max, inputmode: 'numeric' });
        read = () => (el.value === '' ? (opts.nullable ? null : 0) : Number(el.value));
        write = (v) => (el.value = v ?? '');
        break;
      case 'checkbox':
        el = h('input', { name: path, type: 'checkbox' });
        read = () => el.checked;
        write = (v) => (el.checked = !!v);
        break;
      case 'select':
        el = h('select', { name: path }, opts.options.map((o, i) => h('option', { value: o }, opts.labels?.[i] || o)));
        read = () => nullable(el.value);
        write = (v) => (el.value = v ?? opts.options[0]);
        break;
      case 'color': {
        el = h('input', { name: path, spellcheck: 'false', autocomplete: 'off', placeholder: '#3b5bdb' });
        const picker = h('input', { type: 'color', 'aria-label': `${label} picker`, tabindex: '-1' });
        picker.addEventListener('input', () => (el.value = picker.value));
        el.addEventListener('input', () => /^#[0-9a-f]{6}$/i.test(el.value) && (picker.value = el.value.toLowerCase()));
        read = () => el.value.trim();
        write = (v) => {
          el.value = v ?? '';
          const six = /^#[0-9a-f]{3}$/i.test(el.value) ? el.value.replace(/[0-9a-f]/gi, (c) => c + c) : el.value.slice(0, 7);
          if (/^#[0-9a-f]{6}$/i.test(six)) picker.value = six.toLowerCase();
        };
        extra.push(picker);
        break;
      }
      case 'secret':
        // Write-only: the bridge never sends it back; empty keeps the stored one.
        el = h('input', { name: path, type: 'password', autocomplete: 'new-password', spellcheck: 'false' });
        read = () => el.value.trim() || null;
        write = () => (el.value = '');
        break;
      case 'list':
        el = h('textarea', { name: path, class: 'code', rows: 3 });
        read = () => el.value.split('\n').map((l) => l.trim()).filter(Boolean);
        write = (v) => (el.value = (v || []).join('\n'));
        break;
      case 'json':
        el = h('textarea', { name: path, class: 'code', rows: 5 });
        read = () => {
          const text = el.value.trim();
          if (!text) return null;
          try {
            const value = JSON.parse(text);
            if (typeof value !== 'object' || Array.isArray(value)) throw new Error();
            return value;
          } catch {
            throw new ApiError(0, 'invalid_json', `${path}: must be a JSON object, e.g. {"plan": "pro"}`, path);
          }
        };
        write = (v) => (el.value = v == null ? '' : JSON.stringify(v, null, 2));
        break;
      case 'connectors': {
        el = h('div', { class: 'checks', role: 'group', tabindex: '-1' });
        const boxes = connectors.filter((c) => !c.revoked_at).map((c) =>
          h('label', { class: 'inline' }, h('input', { type: 'checkbox', value: c.id }), `${c.name}`));
        el.append(...(boxes.length ? boxes : [h('span', { class: 'hint' }, 'No connectors yet.')]));
        read = () => [...el.querySelectorAll('input:checked')].map((b) => b.value);
        write = (v) => el.querySelectorAll('input').forEach((b) => (b.checked = (v || []).includes(b.value)));
        break;
      }
      case 'prompts': {
        el = h('div', { role: 'group', tabindex: '-1' });
        const rows = h('div');
        const addRow = (p = {}) => {
          const icon = h('input', { 'aria-label': 'Prompt icon (emoji)', value: p.icon || '', placeholder: '💬' });
          const text = h('input', { 'aria-label': 'Prompt text', value: p.text || '' });
          const row = h('div', { class: 'prompt-row' }, icon, text,
            h('button', { type: 'button', 'aria-label': 'Remove this prompt', onclick: () => row.remove() }, '✕'));
          rows.append(row);
          return text;
        };
        el.append(rows, h('button', { type: 'button', onclick: () => addRow().focus() }, 'Add a prompt'));
        read = () => [...rows.children]
          .map((r) => {
            const [icon, text] = r.querySelectorAll('input');
            return icon.value.trim() ? { text: text.value.trim(), icon: icon.value.trim() } : { text: text.value.trim() };
          })
          .filter((p) => p.text);
        write = (v) => {
          rows.replaceChildren();
          for (const p of v || []) addRow(typeof p === 'string' ? { text: p } : p);
        };
        break;
      }
      default:
        el = h('input', { name: path, autocomplete: 'off' });
        read = () => nullable(el.value.trim());
        write = (v) => (el.value = v ?? '');
    }
    el.id = nextId('f');
    el.dataset.field = path;
    const errorEl = h('p', { class: 'field-error', id: nextId('err'), hidden: true });
    const labelEl = kind === 'checkbox'
      ? h('label', { class: 'inline', for: el.id }, el, label)
      : h('label', { for: el.id }, label);
    if (kind === 'prompts' || kind === 'connectors') {
      labelEl.id = nextId('lbl');
      el.setAttribute('aria-labelledby', labelEl.id);
    }
    const hint = opts.hint ? h('p', { class: 'hint', id: nextId('hint') }, opts.hint) : null;
    el.setAttribute('aria-describedby', [hint?.id, errorEl.id].filter(Boolean).join(' '));
    const body = kind === 'checkbox' ? [labelEl] : kind === 'color' ? [labelEl, h('div', { class: 'color-row' }, el, extra)] : [labelEl, el];
    return {
      el,
      read,
      write,
      node: h('div', { class: 'field', 'data-path': path }, body, hint, errorEl),
      error(text) {
        errorEl.textContent = text;
        errorEl.hidden = !text;
        if (text) el.setAttribute('aria-invalid', 'true');
        else el.removeAttribute('aria-invalid');
      },
    };
  }

  /** The three surfaces side by side, loaded with a preview token so a draft renders, and the
   *  embed snippets. `reload(iface)` fetches a fresh token and reloads every frame. */
  function previewPane(token) {
    const surfaces = [
      ['script', 'Script embed (launcher bubble)', (slug, t) => `/admin/preview/${enc(slug)}?preview=${enc(t)}`],
      ['iframe', 'Iframe embed', (slug, t) => `/embed/${enc(slug)}?preview=${enc(t)}`],
      ['link', 'Hosted page', (slug, t) => `/c/${enc(slug)}?preview=${enc(t)}`],
    ];
    const frames = surfaces.map(([name, title]) =>
      h('iframe', { title: `Preview: ${title}`, 'data-surface': name, sandbox: 'allow-scripts allow-same-origin allow-forms', loading: 'lazy' }));
    const snippets = h('div');
    const note = h('p', { class: 'hint', role: 'status' });
    const reloadButton = h('button', { type: 'button' }, 'Reload preview');
    let last;
    reloadButton.addEventListener('click', () => last && reload(last));
    let generation = 0;

    async function reload(iface) {
      last = iface;
      const mine = ++generation;
      try {
        const { token: t } = await api(`/interfaces/${enc(iface.slug)}/preview`, { method: 'POST' });
        if (!current(token) || mine !== generation) return;
        surfaces.forEach(([, , url], i) => {
          frames[i].src = `${url(iface.slug, t)}&v=${mine}`;
        });
        note.textContent = iface.status === 'published' ? 'Showing the saved interface.' : 'Showing the saved draft (visible only to admins).';
      } catch (err) {
        note.textContent = `The preview could not be loaded: ${err.message}`;
      }
      snippets.replaceChildren(...embedSnippets(iface));
    }

    return {
      reload,
      node: h('section', { class: 'preview', 'aria-labelledby': 'preview-title' },
        h('h2', { id: 'preview-title' }, 'Preview'),
        h('p', { class: 'hint' }, 'Save to see changes here. ', reloadButton),
        note,
        h('div', { class: 'surfaces' }, surfaces.map(([, title], i) => h('figure', {}, h('figcaption', {}, title), frames[i]))),
        h('h2', {}, 'Embed code'),
        snippets),
    };
  }

  function embedSnippets(iface) {
    const embed = iface.embed || {};
    const items = [
      ['script', 'Launcher bubble: paste before </body>'],
      ['iframe', 'Iframe: paste where the chat should be'],
      ['link', 'Link to the hosted page'],
    ];
    const boxes = items.filter(([k]) => embed[k]).map(([k, label]) => {
      const area = h('textarea', { readonly: true, class: 'code', rows: k === 'link' ? 1 : 3, 'data-snippet': k }, embed[k]);
      area.value = embed[k];
      const button = h('button', { type: 'button', onclick: () => copy(embed[k], button) }, 'Copy');
      return h('div', { class: 'snippet-box' }, field(label, area), button);
    });
    if (iface.status !== 'published') boxes.unshift(h('p', { class: 'notice' }, 'This interface is a draft: publish it before visitors can use these.'));
    return boxes.length ? boxes : [h('p', { class: 'hint' }, 'This bridge does not provide embed code yet.')];
  }

  // -------------------------------------------------------------------------------------------
  // Connectors

  async function connectorsView() {
    const token = view.token;
    const root = h('section');
    const listBox = h('div');
    const draw = async () => {
      const { items } = await api('/connectors');
      if (!current(token)) return;
      listBox.replaceChildren(table(['Name', 'State', 'Last seen', 'In flight', 'Interfaces', 'Created', ''],
        items.map((c) => {
          const revoke = h('button', { type: 'button', class: 'danger', disabled: !!c.revoked_at }, 'Revoke');
          revoke.addEventListener('click', async () => {
            if (!(await ask({ title: `Revoke ${c.name}?`, text: 'The connector using this key stops at its next request. This cannot be undone.', ok: 'Revoke' }))) return;
            try {
              await api(`/connectors/${enc(c.id)}`, { method: 'DELETE' });
              flash(`Revoked ${c.name}.`);
              await draw();
            } catch (err) {
              failed(err);
            }
          });
          const state = c.revoked_at ? 'revoked' : c.online ? 'online' : 'offline';
          return h('tr', { 'data-id': c.id, 'data-name': c.name },
            h('td', {}, c.name),
            h('td', {}, badge(state)),
            h('td', { class: 'nowrap' }, fmtTime(c.last_seen_at)),
            h('td', {}, c.in_flight ?? '—'),
            h('td', {}, c.interfaces?.length ? c.interfaces.join(', ') : 'all'),
            h('td', { class: 'nowrap' }, fmtTime(c.created_at)),
            h('td', {}, revoke));
        }), 'No connector keys yet.'));
    };
    const name = h('input', { name: 'name', required: true, autocomplete: 'off' });
    const ifaces = h('input', { name: 'interfaces', autocomplete: 'off', spellcheck: 'false', placeholder: 'demo, shop' });
    const made = h('div');
    const form = h('form', { class: 'toolbar', 'aria-label': 'Create a connector key' },
      h('div', {}, field('Name', name)),
      h('div', { class: 'grow' }, field('Interfaces (slugs, comma-separated; empty = all)', ifaces)),
      h('button', { type: 'submit', class: 'primary' }, 'Create key'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const c = await api('/connectors', {
          method: 'POST',
          body: { name: name.value.trim(), interfaces: ifaces.value.split(',').map((v) => v.trim()).filter(Boolean) },
        });
        const keyField = h('input', { readonly: true, value: c.key, class: 'code', spellcheck: 'false' });
        const button = h('button', { type: 'button', onclick: () => copy(c.key, button) }, 'Copy key');
        made.replaceChildren(h('div', { class: 'key-box', role: 'alert' },
          h('strong', {}, `Key for ${c.name}: copy it now. `),
          'It is shown only this once; the bridge keeps only a hash of it.',
          field('Connector key', keyField), button));
        keyField.focus();
        keyField.select();
        name.value = ifaces.value = '';
        await draw();
      } catch (err) {
        failed(err);
      }
    });
    onLive(['connector', 'lagged'], debounce(() => draw().catch(failed), 200));
    const timer = setInterval(() => draw().catch(() => {}), 30_000); // "online" also ends by time passing
    view.cleanups.push(() => clearInterval(timer));
    await draw();
    root.append(h('h1', {}, 'Connectors'), listBox, h('h2', {}, 'New connector key'), form, made);
    return root;
  }

  // -------------------------------------------------------------------------------------------
  // Dead letters

  async function deadLettersView() {
    const token = view.token;
    const listBox = h('div');
    const draw = async () => {
      const { items } = await api('/dead-letters');
      if (!current(token)) return;
      listBox.replaceChildren(table(['Dead since', 'Interface', 'Session', 'Message', 'Attempts', 'Error', ''],
        items.map((d) => {
          const act = (label, method, path, done, cls) => {
            const b = h('button', { type: 'button', class: cls }, label);
            b.addEventListener('click', async () => {
              if (method === 'DELETE' && !(await ask({ title: 'Discard this dead letter?', text: 'The message keeps its error for the visitor; it is not retried.', ok: 'Discard' }))) return;
              b.disabled = true;
              try {
                await api(path, { method });
                flash(done);
                await draw();
              } catch (err) {
                b.disabled = false;
                failed(err);
              }
            });
            return b;
          };
          const id = enc(d.message.id);
          return h('tr', { 'data-id': d.message.id },
            h('td', { class: 'nowrap' }, fmtTime(d.dead_at)),
            h('td', { class: 'nowrap' }, d.interface),
            h('td', {}, h('a', { href: `#/sessions/${enc(d.session_id)}` }, d.session_id)),
            h('td', { class: 'snippet' }, d.message.text),
            h('td', {}, d.attempts),
            h('td', { class: 'snippet' }, d.last_error || '—'),
            h('td', { class: 'nowrap' },
              act('Retry', 'POST', `/dead-letters/${id}/retry`, 'Queued again for the agent.', 'primary'), ' ',
              act('Discard', 'DELETE', `/dead-letters/${id}`, 'Discarded.', 'danger')));
        }), 'No dead letters: every message was answered or is still waiting.'));
    };
    onLive(['dead_letter', 'reconnected', 'lagged'], debounce(() => draw().catch(failed), 200));
    await draw();
    return h('section', {}, h('h1', {}, 'Dead letters'), listBox);
  }

  // -------------------------------------------------------------------------------------------
  // Audit log

  async function auditView() {
    const token = view.token;
    const body = h('tbody');
    const more = h('button', { type: 'button', class: 'more', hidden: true }, 'Load more');
    const empty = h('p', { class: 'empty', hidden: true }, 'No admin actions recorded yet.');
    let cursor = null;
    const load = async (append) => {
      const page = await api(`/audit${query({ cursor: append ? cursor : '', limit: 50 })}`);
      if (!current(token)) return;
      const rows = page.items.map((a) => h('tr', {},
        h('td', { class: 'nowrap' }, fmtTime(a.at)),
        h('td', {}, a.actor),
        h('td', { class: 'code' }, a.action),
        h('td', { class: 'snippet' }, a.target),
        h('td', { class: 'snippet code' }, a.detail == null ? '' : JSON.stringify(a.detail))));
      if (append) body.append(...rows);
      else body.replaceChildren(...rows);
      cursor = page.next_cursor || null;
      more.hidden = !cursor;
      empty.hidden = body.children.length > 0;
    };
    more.addEventListener('click', () => load(true).catch(failed));
    // Live: a new action (by anyone, on this bridge) reloads the newest page.
    onLive(['audit', 'reconnected', 'lagged'], debounce(() => load(false).catch(failed), 200));
    await load(false);
    return h('section', {},
      h('h1', {}, 'Audit log'),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'Target', 'Detail'].map((c) => h('th', { scope: 'col' }, c)))), body)),
      empty, more);
  }

  // -------------------------------------------------------------------------------------------

  if (key) start();
  else showSignIn();
})();
