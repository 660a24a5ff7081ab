// What the browser tests share: where the bridge is, a browser per test file, a third-party
// site on another origin to embed the widget in, and waits that poll a condition until a
// deadline (never a fixed sleep).
//
// The bridge, its interfaces (`demo`, `shop`, `offline`, `files`) and the connectors are started by
// demo/tests/browser.rs, which runs these files; run them with
// `cargo test -p airlock-demo --test browser`.

import { after, before, test } from 'node:test';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { chromium } from 'playwright-core';

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests with cargo test -p airlock-demo --test browser`);
  }
  return value;
}

export const BRIDGE = required('AIRLOCK_BRIDGE_URL');
export const ARTIFACTS = required('AIRLOCK_ARTIFACTS');
const ADMIN_KEY = required('AIRLOCK_ADMIN_KEY');
fs.mkdirSync(ARTIFACTS, { recursive: true });

/** The widget's host element; Playwright's CSS selectors pierce its open shadow root. */
export const HOST = 'div[data-airlock-widget]';
/** A selector for something inside the widget. */
export const w = (selector) => `${HOST} ${selector}`;

/** The public configuration of an interface, as the widget itself reads it. */
export async function interfaceConfig(slug) {
  const response = await fetch(`${BRIDGE}/api/v1/interfaces/${slug}`);
  if (!response.ok) throw new Error(`GET interface ${slug}: ${response.status}`);
  return response.json();
}

/** What the bridge stored, as an operator sees it: `GET /api/v1/admin{path}` with the admin key. */
export async function admin(path) {
  const response = await fetch(`${BRIDGE}/api/v1/admin${path}`, {
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
  });
  if (!response.ok) throw new Error(`GET admin${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

export function artifact(name) {
  return path.join(ARTIFACTS, name);
}

// ---------------------------------------------------------------------------------------------
// A browser per test file, a fresh context (storage, cookies) per page.

/**
 * Declares the file's browser and returns `journey(name, fn)`, which defines a test whose `fn`
 * gets `open(contextOptions)` → a new page in a new context. On failure every open page is
 * screenshotted into the artifacts directory and the browser's errors are added to the message.
 */
export function browserSuite() {
  let browser;
  before(async () => {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });
  after(async () => {
    await browser?.close();
  });

  return function journey(name, fn, { timeout = 45_000 } = {}) {
    test(name, { timeout }, async () => {
      const contexts = [];
      const log = [];
      const open = async (options = {}) => {
        const context = await browser.newContext(options);
        contexts.push(context);
        const page = await context.newPage();
        page.setDefaultTimeout(10_000);
        page.on('pageerror', (err) => log.push(`page error: ${err.message}`));
        page.on('console', (msg) => {
          if (msg.type() === 'error' || msg.type() === 'warning') {
            log.push(`console.${msg.type()}: ${msg.text()}`);
          }
        });
        return page;
      };
      try {
        await fn({ open });
      } catch (err) {
        const stem = name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
        let n = 0;
        for (const context of contexts) {
          for (const page of context.pages()) {
            await page
              .screenshot({ path: artifact(`failed-${stem}-${n++}.png`) })
              .catch(() => {});
          }
        }
        if (log.length && err instanceof Error) {
          err.message += `\n  browser said:\n    ${log.join('\n    ')}`;
        }
        throw err;
      } finally {
        for (const context of contexts) await context.close().catch(() => {});
      }
    });
  };
}

// ---------------------------------------------------------------------------------------------
// The third-party site: a tiny HTTP server on another port, so another origin than the bridge.

/**
 * The port demo/tests/browser.rs reserved for this journey file's site: the interfaces list
 * `http://127.0.0.1:<port>` as an allowed origin (AIRLOCK_SITE_PORTS is `file=port,…`).
 */
function listedPort() {
  const file = path.basename(process.argv[1] ?? '');
  const entry = (process.env.AIRLOCK_SITE_PORTS ?? '')
    .split(',')
    .map((pair) => pair.split('='))
    .find(([name]) => name === file);
  if (!entry) throw new Error(`no site port reserved for ${file}: run with cargo test -p airlock-demo --test browser`);
  return Number(entry[1]);
}

/**
 * Starts a third-party site. `listed`: on this file's reserved port, an origin every interface
 * allows; `listed: false`: on a port of its own, an origin no interface lists.
 */
export async function startHostSite({ listed = true } = {}) {
  const pages = new Map();
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url, 'http://host').pathname;
    if (pathname === '/favicon.ico') {
      res.writeHead(204);
      res.end();
      return;
    }
    const html = pages.get(pathname);
    if (html === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(html);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listed ? listedPort() : 0, '127.0.0.1', resolve);
  });
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    /** Serves `html` at `pathname` and returns its URL. */
    page(pathname, html) {
      pages.set(pathname, html);
      return origin + pathname;
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const escapeAttr = (value) =>
  String(value).replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll('<', '&lt;');

/** An ordinary shop's stylesheet. */
export const PAGE_CSS = `
  body { margin: 0; font: 17px/1.6 Georgia, serif; color: #2b2b2b; background: #fbfaf7; }
  header.site { background: #233043; color: #fff; padding: 14px 28px; }
  header.site a { color: #ffd479; margin-right: 16px; }
  main { padding: 24px 28px; max-width: 640px; }
  .lead { font-size: 1.3rem; color: #51606f; }
  .buy { background: #c0392b; color: #fff; border: 0; border-radius: 4px; padding: 10px 18px; font: inherit; }
  .notes { display: block; width: 320px; height: 60px; margin-top: 16px; }
`;

/**
 * A third-party page. `widget`: the embed script's data attributes without `data-` (e.g.
 * `{ interface: 'shop', transport: 'poll' }`), or null for a page without the widget.
 */
export function hostPage({ widget = { interface: 'shop' }, css = PAGE_CSS, head = '', body } = {}) {
  const script = widget
    ? `<script src="${BRIDGE}/widget.js" ${Object.entries(widget)
        .map(([key, value]) => `data-${key}="${escapeAttr(value)}"`)
        .join(' ')} async></script>`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme outdoor gear</title>
<style>${css}</style>
${head}
</head>
<body>
${
  body ??
  `<header class="site"><strong>Acme outdoor gear</strong>
  <nav><a href="#tents">Tents</a><a href="#boots">Boots</a></nav></header>
<main>
  <h1>Trail boots, built to last</h1>
  <p class="lead">Free returns within 30 days.</p>
  <button class="buy" type="button">Add to cart</button>
  <textarea class="notes" aria-label="Order notes"></textarea>
  <div class="airlock-panel airlock-msg airlock-body airlock-input decoy">The page's own box, with the widget's class names.</div>
</main>`
}
${script}
</body>
</html>`;
}

// ---------------------------------------------------------------------------------------------
// Reading the widget as a visitor sees it. `target` is a Playwright Page or Frame.

/** What the widget shows right now (rendered visibility, texts, statuses). */
export async function widgetState(target) {
  return target.evaluate(() => {
    const host = document.querySelector('div[data-airlock-widget]');
    const root = host?.shadowRoot;
    if (!root) return { mounted: false, hasShadowRoot: !!host };
    const shown = (el) => {
      if (!el || !el.checkVisibility({ visibilityProperty: true, opacityProperty: true })) {
        return false;
      }
      const rect = el.getBoundingClientRect();
      return rect.width > 0 && rect.height > 0;
    };
    const one = (selector) => root.querySelector(selector);
    const launcher = one('button.airlock-launcher');
    const banner = one('.airlock-banner');
    const active = root.activeElement;
    return {
      mounted: true,
      mode: host.dataset.mode ?? null,
      launcher: launcher
        ? { shown: shown(launcher), expanded: launcher.getAttribute('aria-expanded') }
        : null,
      panelShown: shown(one('.airlock-panel')),
      title: one('.airlock-title')?.textContent.trim() ?? null,
      description: one('.airlock-description')?.textContent.trim() ?? null,
      typing: shown(one('.airlock-typing')),
      banner: shown(banner) ? { state: banner.dataset.state, text: banner.textContent.trim() } : null,
      chips: [...root.querySelectorAll('.airlock-chips button.airlock-chip')]
        .filter(shown)
        .map((chip) => chip.textContent.trim()),
      messages: [...root.querySelectorAll('.airlock-msg')].map((m) => ({
        role: m.dataset.role,
        status: m.dataset.status,
        id: m.dataset.id,
        text: (m.querySelector('.airlock-body')?.textContent ?? '').trim(),
        shownText: (m.querySelector('.airlock-body')?.innerText ?? '').trim(),
        shown: shown(m),
        attachments: [...m.querySelectorAll('.airlock-attachments .airlock-attachment')].map((a) => ({
          name: a.querySelector('bdi')?.textContent ?? null,
          text: a.textContent.trim(),
          title: a.title,
          shown: shown(a),
        })),
      })),
      // Files chosen for the next message.
      files: [...root.querySelectorAll('.airlock-files .airlock-file-chip')].map((chip) => ({
        state: chip.dataset.state,
        text: chip.textContent.trim(),
        shown: shown(chip),
        progress: shown(chip.querySelector('progress')),
      })),
      input: one('textarea.airlock-input')?.value ?? null,
      focus: active
        ? {
            className: active.className,
            tag: active.tagName.toLowerCase(),
            inPanel: !!one('.airlock-panel')?.contains(active),
          }
        : null,
      transport: window.Airlock?.transport ?? null,
    };
  });
}

/** Polls `widgetState` until `predicate(state)` holds; fails after `timeout` ms with the last state. */
export async function waitFor(target, what, predicate, { timeout = 10_000 } = {}) {
  const deadline = Date.now() + timeout;
  let state;
  for (;;) {
    state = await widgetState(target);
    if (state.mounted && predicate(state)) return state;
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeout} ms waiting for ${what}; the widget showed:\n${JSON.stringify(state, null, 2)}`,
      );
    }
    await delay(25);
  }
}

/** Polls `probe()` until it returns something truthy; fails after `timeout` ms with the last value. */
export async function until(what, probe, { timeout = 10_000 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last saw ${JSON.stringify(last)}`);
    }
    await delay(25);
  }
}

export const byRole = (state, role) => state.messages.filter((m) => m.role === role);
export const squash = (text) => text.replace(/\s+/g, ' ').trim();

/** Waits for the `n`-th reply (1-based) to be complete, and returns the state. */
export function waitForReply(target, n, { timeout = 15_000 } = {}) {
  return waitFor(
    target,
    `reply #${n} to be complete`,
    (s) => byRole(s, 'assistant').length >= n && byRole(s, 'assistant')[n - 1].status === 'complete',
    { timeout },
  );
}

/** Types `text` into the widget's input and clicks send. */
export async function sendText(target, text) {
  await target.locator(w('textarea.airlock-input')).fill(text);
  await target.locator(w('button.airlock-send')).click();
}

/** Opens the bubble when it is closed (a visitor clicking the launcher). */
export async function ensureOpen(page) {
  const state = await waitFor(page, 'the widget to show a launcher or a panel', (s) => s.panelShown || s.launcher?.shown);
  if (!state.panelShown) {
    await page.locator(w('button.airlock-launcher')).click();
    await waitFor(page, 'the panel to open', (s) => s.panelShown);
  }
}

/**
 * Starts recording, inside the page, every text each reply shows and whether the typing
 * indicator was ever shown, on every DOM change (a MutationObserver, so short-lived states are
 * not missed). Read it back with `recorded`.
 */
export async function recordReplies(target) {
  await target.evaluate(() => {
    const root = document.querySelector('div[data-airlock-widget]').shadowRoot;
    const seen = { texts: {}, typingShown: false };
    window.__airlockSeen = seen;
    const look = () => {
      const typing = root.querySelector('.airlock-typing');
      if (typing?.checkVisibility({ visibilityProperty: true, opacityProperty: true })) {
        const rect = typing.getBoundingClientRect();
        if (rect.width > 0 && rect.height > 0) seen.typingShown = true;
      }
      root.querySelectorAll('.airlock-msg[data-role=assistant]').forEach((m, i) => {
        const key = m.dataset.id || `#${i}`;
        const text = (m.querySelector('.airlock-body')?.textContent ?? '').trim();
        const texts = (seen.texts[key] ??= []);
        if (texts.at(-1) !== text) texts.push(text);
      });
    };
    new MutationObserver(look).observe(root, {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
    });
    look();
  });
}

export async function recorded(target) {
  return target.evaluate(() => window.__airlockSeen);
}

/** The texts a reply showed before its final one, when it grew: non-empty strict prefixes. */
export function partialTexts(seen, finalText) {
  return Object.values(seen.texts)
    .flat()
    .filter((t) => t.length > 0 && t.length < finalText.length && finalText.startsWith(t));
}
