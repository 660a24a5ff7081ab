// The launcher bubble on somebody else's site: `<script src=…/widget.js data-interface=shop>`
// on a page served from another origin, as a shop would embed it.

import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import {
  PAGE_CSS,
  artifact,
  browserSuite,
  byRole,
  ensureOpen,
  hostPage,
  interfaceConfig,
  partialTexts,
  recordReplies,
  recorded,
  sendText,
  squash,
  startHostSite,
  until,
  w,
  waitFor,
  waitForReply,
  widgetState,
} from './harness.mjs';

const journey = browserSuite();
let site;
let shop;
before(async () => {
  site = await startHostSite();
  shop = await interfaceConfig('shop');
});
after(() => site?.close());

/** A stylesheet that tries everything a careless (or hostile) site does to everything. */
const HOSTILE_CSS = `
  body * { all: unset; }
  * {
    color: red !important; font-size: 3px !important; line-height: 0.4 !important;
    font-family: "Comic Sans MS", cursive !important; font-weight: 900 !important;
    letter-spacing: 3px !important; text-transform: uppercase !important; text-align: right !important;
    cursor: crosshair !important; box-sizing: content-box !important; white-space: nowrap !important;
  }
  div:not([data-airlock-widget]), section, dialog, [role=dialog], [role=log] { display: none !important; }
  button, textarea, input, time, p, span {
    background: lime !important; border: 6px dashed red !important; padding: 20px !important;
    width: 4px !important; height: 4px !important; border-radius: 0 !important; margin: 30px !important;
  }
  .airlock-panel, .airlock-launcher, .airlock-msg, .airlock-body, .airlock-input, .airlock-send,
  .airlock-chip, .airlock-title { display: none !important; opacity: 0 !important; }
  /* Custom properties inherit into a shadow tree, and a page's declaration on the host element
     beats the widget's own :host rule: common names, and the widget's own prefix. */
  :root, body, div {
    --accent: red; --primary: red; --primary-color: red; --airlock-accent: red; --airlock-primary: red;
    --bg: black; --fg: red; --radius: 0; --font: serif; --airlock-font: serif;
  }
`;

/** Computed style properties a visitor would see change. */
const PROPS = [
  'display', 'position', 'visibility', 'opacity', 'color', 'background-color', 'font-family',
  'font-size', 'font-weight', 'line-height', 'letter-spacing', 'text-transform', 'text-align',
  'white-space', 'padding-top', 'padding-left', 'margin-top', 'border-top-width',
  'border-top-style', 'border-top-color', 'border-top-left-radius', 'box-sizing', 'cursor',
  'width', 'height', 'z-index',
];

/** The widget's parts compared between a plain and a hostile page; `true`: compare position too. */
const CLOSED_PARTS = [['launcher', 'button.airlock-launcher', true]];
const OPEN_PARTS = [
  ...CLOSED_PARTS,
  ['panel', '.airlock-panel', true],
  ['title', '.airlock-title'],
  ['description', '.airlock-description'],
  ['close', 'button.airlock-close', true],
  ['log', '.airlock-log'],
  ['welcome', '.airlock-msg[data-role=welcome] .airlock-body'],
  ['chip', 'button.airlock-chip'],
  ['input', 'textarea.airlock-input', true],
  ['send', 'button.airlock-send', true],
];
const REPLIED_PARTS = [
  ...OPEN_PARTS.filter(([name]) => name !== 'chip'),
  ['user', '.airlock-msg[data-role=user]'],
  ['user text', '.airlock-msg[data-role=user] .airlock-body'],
  ['reply', '.airlock-msg[data-role=assistant]'],
  ['reply text', '.airlock-msg[data-role=assistant] .airlock-body'],
  ['time', 'time.airlock-time'],
];
/** The page's own elements, which the widget's styles must leave alone. */
const PAGE_PARTS = [
  ['body', 'body', true],
  ['header', 'header.site', true],
  ['heading', 'h1', true],
  ['lead', '.lead', true],
  ['button', '.buy', true],
  ['textarea', '.notes', true],
  ['decoy with widget class names', '.decoy', true],
];

/**
 * Computed styles of `parts` (inside the widget's shadow root, or in the page), with the mouse
 * out of the way (no hover effects) and transitions finished.
 */
async function stylesOf(page, parts, { inWidget = true } = {}) {
  await page.mouse.move(2, 2);
  await page.evaluate(async (inWidget) => {
    const scope = inWidget ? document.querySelector('div[data-airlock-widget]').shadowRoot : document;
    const finite = scope
      .getAnimations()
      .filter((a) => a.playState === 'running' && a.effect?.getComputedTiming().endTime !== Infinity);
    const timeout = new Promise((_, reject) =>
      setTimeout(() => reject(new Error('transitions still running after 3 s')), 3000),
    );
    await Promise.race([Promise.all(finite.map((a) => a.finished.catch(() => {}))), timeout]);
    await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  }, inWidget);
  const take = () =>
    page.evaluate(
      ({ parts, props, inWidget }) => {
        const scope = inWidget ? document.querySelector('div[data-airlock-widget]').shadowRoot : document;
        const out = {};
        for (const [name, selector, withRect] of parts) {
          const all = scope.querySelectorAll(selector);
          const el = all[all.length - 1];
          if (!el) {
            out[name] = 'missing';
            continue;
          }
          const style = getComputedStyle(el);
          const entry = Object.fromEntries(props.map((p) => [p, style.getPropertyValue(p)]));
          if (withRect) {
            const r = el.getBoundingClientRect();
            entry.rect = [r.x, r.y, r.width, r.height].map(Math.round).join(',');
          }
          out[name] = entry;
        }
        return out;
      },
      { parts, props: PROPS, inWidget },
    );
  // And in case something moves without a CSS animation: wait until two reads agree.
  let previous = await take();
  return until('styles to stop changing', async () => {
    const current = await take();
    const stable = JSON.stringify(current) === JSON.stringify(previous);
    previous = current;
    return stable && current;
  }, { timeout: 5_000 });
}

/** Differences between two style snapshots, one line each. */
function styleDiff(expected, actual) {
  const lines = [];
  for (const [part, props] of Object.entries(expected)) {
    const other = actual[part];
    if (typeof props !== 'object' || typeof other !== 'object') {
      if (props !== other) lines.push(`${part}: ${JSON.stringify(props)} → ${JSON.stringify(other)}`);
      continue;
    }
    for (const [prop, value] of Object.entries(props)) {
      if (other[prop] !== value) lines.push(`${part} ${prop}: ${value} → ${other[prop]}`);
    }
  }
  return lines;
}

/**
 * Opens the bubble, clicks the first suggested prompt and waits for the whole reply, taking
 * the widget's styles at each step.
 */
async function askWithSuggestedPrompt(page) {
  const prompt = shop.suggested_prompts[0].text;
  const closed = await waitFor(page, 'the launcher', (s) => s.launcher?.shown);
  assert.equal(closed.panelShown, false, 'the panel starts closed');
  assert.equal(closed.launcher.expanded, 'false');
  const styles = { closed: await stylesOf(page, CLOSED_PARTS) };

  await page.locator(w('button.airlock-launcher')).click();
  const open = await waitFor(page, 'the panel with its suggested prompts', (s) => s.panelShown && s.chips.length > 0);
  assert.equal(open.launcher.expanded, 'true');
  assert.equal(open.title, shop.title);
  assert.equal(open.description, shop.description);
  assert.deepEqual(open.chips, shop.suggested_prompts.map((p) => p.text));
  assert.equal(open.banner, null, `no banner while the agent is online, saw ${JSON.stringify(open.banner)}`);
  styles.open = await stylesOf(page, OPEN_PARTS);

  await recordReplies(page);
  await page.locator(w('button.airlock-chip'), { hasText: prompt }).first().click();
  const done = await waitForReply(page, 1);
  styles.replied = await stylesOf(page, REPLIED_PARTS);
  return { prompt, done, styles };
}

journey(
  'on a third-party page with hostile CSS, a suggested prompt gets a streamed reply, and neither page nor widget restyles the other',
  async ({ open }) => {
    // The reference: the page without the widget, then the widget on a well-behaved page.
    const bare = await open();
    await bare.goto(site.page('/bare', hostPage({ widget: null })));
    const pageAlone = await stylesOf(bare, PAGE_PARTS, { inWidget: false });

    const plain = await open();
    await plain.goto(site.page('/plain', hostPage()));
    const reference = await askWithSuggestedPrompt(plain);
    await plain.screenshot({ path: artifact('desktop-bubble-open.png') });
    const pageWithWidget = await stylesOf(plain, PAGE_PARTS, { inWidget: false });
    assert.deepEqual(
      styleDiff(pageAlone, pageWithWidget),
      [],
      "the widget's styles changed the page's own elements",
    );

    // The same journey on a page whose CSS attacks everything.
    const page = await open();
    await page.goto(site.page('/hostile', hostPage({ css: PAGE_CSS + HOSTILE_CSS })));
    const { prompt, done, styles } = await askWithSuggestedPrompt(page);
    await page.screenshot({ path: artifact('desktop-bubble-open-hostile-page.png') });

    // What the visitor saw: their prompt, then the reply growing word by word, then all of it.
    const users = byRole(done, 'user');
    assert.equal(users.length, 1);
    assert.equal(users[0].text, prompt);
    assert.equal(byRole(done, 'assistant')[0].text, prompt, 'the echo agent replies with the prompt');
    const seen = await recorded(page);
    assert.ok(
      partialTexts(seen, prompt).length > 0,
      `the reply should show part of its text before all of it; it showed ${JSON.stringify(seen.texts)}`,
    );
    assert.ok(seen.typingShown, 'the typing indicator shows while the agent works');
    await waitFor(page, 'the typing indicator to go once the reply is complete', (s) => !s.typing);

    // And all of it looked exactly as on the well-behaved page.
    const restyled = ['closed', 'open', 'replied'].flatMap((step) =>
      styleDiff(reference.styles[step], styles[step]).map((line) => `${step}: ${line}`),
    );
    assert.deepEqual(restyled, [], "the page's CSS changed how the widget looks");
  },
);

journey('after a reload the conversation is still there, and "new conversation" starts an empty one', async ({ open }) => {
  const page = await open();
  page.on('dialog', (dialog) => dialog.accept());
  await page.goto(site.page('/reload', hostPage()));
  await ensureOpen(page);
  await sendText(page, 'Remember the blue tent please');
  await waitForReply(page, 1);

  await page.reload();
  await ensureOpen(page);
  const back = await waitFor(
    page,
    'the earlier conversation after the reload',
    (s) => byRole(s, 'user').length > 0 && byRole(s, 'assistant')[0]?.status === 'complete',
  );
  assert.deepEqual(
    back.messages.filter((m) => m.role !== 'welcome').map((m) => [m.role, m.text]),
    [
      ['user', 'Remember the blue tent please'],
      ['assistant', 'Remember the blue tent please'],
    ],
  );

  await page.locator(w('button.airlock-new')).click();
  const fresh = await waitFor(
    page,
    'an empty conversation',
    (s) => byRole(s, 'user').length === 0 && byRole(s, 'assistant').length === 0,
  );
  assert.equal(fresh.panelShown, true, 'the panel stays open for the new conversation');

  await page.reload();
  await ensureOpen(page);
  // The new conversation is the one kept: after the reload the old messages stay gone.
  await waitFor(page, 'the widget to be ready after the reload', (s) => s.panelShown && s.input !== null);
  await sendText(page, 'A fresh start');
  const after = await waitForReply(page, 1);
  assert.deepEqual(
    after.messages.filter((m) => m.role !== 'welcome').map((m) => [m.role, m.text]),
    [
      ['user', 'A fresh start'],
      ['assistant', 'A fresh start'],
    ],
  );
});

journey('with the keyboard alone a visitor opens the chat, writes two lines, sends, and Esc closes it', async ({ open }) => {
  const page = await open();
  await page.goto(site.page('/keyboard', hostPage()));
  await waitFor(page, 'the launcher', (s) => s.launcher?.shown);

  const launcherFocused = () =>
    page.evaluate(() => {
      const host = document.querySelector('div[data-airlock-widget]');
      return document.activeElement === host && !!host.shadowRoot.activeElement?.matches('button.airlock-launcher');
    });
  for (let presses = 0; !(await launcherFocused()); presses++) {
    assert.ok(presses < 15, 'Tab should reach the launcher after the page’s own links and fields');
    await page.keyboard.press('Tab');
  }

  await page.keyboard.press('Enter');
  const opened = await waitFor(page, 'Enter to open the panel', (s) => s.panelShown);
  assert.equal(opened.launcher.expanded, 'true');
  await waitFor(page, 'focus to move into the panel', (s) => s.focus?.inPanel);
  for (let presses = 0; !(await widgetState(page)).focus?.className.includes('airlock-input'); presses++) {
    assert.ok(presses < 15, 'Tab should reach the message field');
    await page.keyboard.press('Tab');
  }

  await page.keyboard.type('Two lines:');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('tents and boots');
  const typed = await widgetState(page);
  assert.equal(typed.input, 'Two lines:\ntents and boots', 'Shift+Enter makes a newline');
  assert.equal(byRole(typed, 'user').length, 0, 'Shift+Enter does not send');

  await page.keyboard.press('Enter');
  const sent = await waitForReply(page, 1);
  assert.equal(sent.input, '', 'the field is emptied once sent');
  assert.equal(byRole(sent, 'user')[0].shownText, 'Two lines:\ntents and boots', 'the message shows on two lines');
  assert.equal(squash(byRole(sent, 'assistant')[0].text), 'Two lines: tents and boots');

  await page.keyboard.press('Escape');
  const closed = await waitFor(page, 'Esc to close the panel', (s) => !s.panelShown);
  assert.equal(closed.launcher.expanded, 'false');
  await until('focus to return to the launcher', launcherFocused);
});

journey('the JavaScript API opens and closes the chat, sends, and reports the reply', async ({ open }) => {
  const page = await open();
  await page.goto(site.page('/api', hostPage()));
  await page.waitForFunction(() => typeof window.Airlock?.on === 'function');
  await page.evaluate(() => {
    window.__events = [];
    for (const name of ['open', 'close', 'message']) {
      window.Airlock.on(name, (detail) => {
        let copy = null;
        try {
          copy = JSON.parse(JSON.stringify(detail ?? null));
        } catch {
          copy = String(detail);
        }
        window.__events.push({ name, detail: copy });
      });
    }
  });
  const events = (name) => page.evaluate((name) => window.__events.filter((e) => e.name === name), name);

  await page.evaluate(() => void window.Airlock.open());
  await waitFor(page, 'Airlock.open() to open the panel', (s) => s.panelShown && s.launcher?.expanded === 'true');
  await until('the open event', async () => (await events('open')).length === 1);

  await page.evaluate(() => void window.Airlock.close());
  await waitFor(page, 'Airlock.close() to close the panel', (s) => !s.panelShown && s.launcher?.expanded === 'false');
  await until('the close event', async () => (await events('close')).length === 1);

  await page.evaluate(() => void window.Airlock.open());
  await waitFor(page, 'the panel to open again', (s) => s.panelShown);
  await page.evaluate(() => void window.Airlock.send('Sent through the API'));
  const done = await waitForReply(page, 1);
  assert.equal(byRole(done, 'user')[0].text, 'Sent through the API');

  const isReply = (e) => {
    const m = e.detail?.message ?? e.detail;
    return m?.role === 'assistant' && m.status === 'complete' && m.text === 'Sent through the API';
  };
  await until('a message event for the complete reply', async () => (await events('message')).some(isReply));
  assert.equal(await page.evaluate(() => window.Airlock.transport), 'sse', 'a normal page streams over SSE');
});
