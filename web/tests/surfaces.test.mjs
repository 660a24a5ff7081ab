// The other ways a visitor meets the widget: inside an iframe on another site, on the bridge's
// own full page, over long-polling when streaming is unavailable, and on a phone.

import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import {
  BRIDGE,
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
  startHostSite,
  until,
  w,
  waitFor,
  waitForReply,
} from './harness.mjs';

const journey = browserSuite();
let site;
let demo;
before(async () => {
  site = await startHostSite();
  demo = await interfaceConfig('demo');
});
after(() => site?.close());

/** Sends `text` and checks the reply grew word by word into exactly `text` (the echo agent). */
async function sendAndSeeItStream(target, text) {
  await recordReplies(target);
  await sendText(target, text);
  const done = await waitForReply(target, 1);
  assert.equal(byRole(done, 'user')[0].text, text);
  assert.equal(byRole(done, 'assistant')[0].text, text);
  const seen = await recorded(target);
  assert.ok(
    partialTexts(seen, text).length > 0,
    `the reply should show part of its text before all of it; it showed ${JSON.stringify(seen.texts)}`,
  );
  return done;
}

journey('in an iframe on another site (/embed/demo) the chat is open at once and streams a reply', async ({ open }) => {
  const page = await open();
  const body = `<main><h1>Help centre</h1>
    <iframe src="${BRIDGE}/embed/demo" title="Chat with us" style="width:400px;height:600px;border:1px solid #ccc"></iframe></main>`;
  await page.goto(site.page('/iframe', hostPage({ widget: null, body })));
  const frame = await (await page.waitForSelector('iframe')).contentFrame();
  const ready = await waitFor(frame, 'the embedded chat with its title', (s) => s.panelShown && s.title === demo.title);
  assert.equal(ready.mode, 'embed');
  assert.ok(!ready.launcher?.shown, 'an embedded chat has no launcher bubble');

  await sendAndSeeItStream(frame, 'Embedded chats stream their replies word by word too');
  await page.screenshot({ path: artifact('desktop-embed-iframe.png') });
});

journey('the hosted page /c/demo greets the visitor and streams a reply', async ({ open }) => {
  const page = await open();
  await page.goto(`${BRIDGE}/c/demo`);
  const ready = await waitFor(
    page,
    'the chat page with its title and welcome message',
    (s) => s.panelShown && s.title === demo.title && byRole(s, 'welcome')[0]?.text === demo.welcome_message,
  );
  assert.equal(ready.mode, 'page');
  assert.ok(!ready.launcher?.shown, 'the full page has no launcher bubble');

  await sendAndSeeItStream(page, 'The hosted page streams this reply one word at a time');
  await page.screenshot({ path: artifact('desktop-page-c-demo.png') });
});

journey('with data-transport="poll" the chat works over long-polling alone', async ({ open }) => {
  const page = await open();
  const requests = [];
  page.on('request', (request) => requests.push(request.url()));
  await page.goto(site.page('/poll', hostPage({ widget: { interface: 'shop', transport: 'poll' } })));
  await ensureOpen(page);

  await sendText(page, 'Polling gets the reply as well');
  const done = await waitForReply(page, 1);
  assert.equal(byRole(done, 'assistant')[0].text, 'Polling gets the reply as well');
  assert.equal(done.transport, 'poll');
  const api = requests.filter((url) => url.startsWith(`${BRIDGE}/api/`));
  assert.deepEqual(api.filter((url) => /\/events(\?|$)/.test(url)), [], 'no event stream is opened');
  assert.ok(
    api.some((url) => /\/sessions\/[^/]+\/messages\?.*wait=/.test(url)),
    `the widget long-polls for messages; it asked for ${JSON.stringify(api)}`,
  );
});

journey('on a phone the open chat fills the screen with the message field in view', async ({ open }) => {
  const page = await open({
    viewport: { width: 390, height: 844 },
    isMobile: true,
    hasTouch: true,
    deviceScaleFactor: 3,
  });
  await page.goto(site.page('/phone', hostPage()));
  await waitFor(page, 'the launcher', (s) => s.launcher?.shown);
  await page.locator(w('button.airlock-launcher')).tap();
  await waitFor(page, 'the panel', (s) => s.panelShown);

  const geometry = () =>
    page.evaluate(() => {
      const root = document.querySelector('div[data-airlock-widget]').shadowRoot;
      const rect = (selector) => {
        const r = root.querySelector(selector).getBoundingClientRect();
        return { left: r.left, top: r.top, right: r.right, bottom: r.bottom };
      };
      const panel = root.querySelector('.airlock-panel');
      return {
        panel: rect('.airlock-panel'),
        input: rect('textarea.airlock-input'),
        send: rect('button.airlock-send'),
        sideways: panel.scrollWidth > panel.clientWidth,
        viewport: { width: innerWidth, height: innerHeight },
      };
    });
  let previous = await geometry();
  const settled = await until('the panel to stop moving', async () => {
    const now = await geometry();
    const same = JSON.stringify(now) === JSON.stringify(previous);
    previous = now;
    return same && now;
  });
  const { panel, input, send, viewport } = settled;
  assert.deepEqual(viewport, { width: 390, height: 844 });
  const fills = panel.left <= 0.5 && panel.top <= 0.5 && panel.right >= 389.5 && panel.bottom >= 843.5;
  assert.ok(fills, `the panel fills the screen; it covers ${JSON.stringify(panel)}`);
  for (const [name, box] of [['message field', input], ['send button', send]]) {
    const inView = box.top >= 0 && box.left >= 0 && box.bottom <= 844 && box.right <= 390 && box.bottom > box.top;
    assert.ok(inView, `the ${name} is on screen; it is at ${JSON.stringify(box)}`);
  }
  assert.equal(settled.sideways, false, 'the panel does not scroll sideways');

  await page.locator(w('textarea.airlock-input')).fill('Does this fit on my phone?');
  await page.locator(w('button.airlock-send')).tap();
  await waitForReply(page, 1);
  await page.screenshot({ path: artifact('phone-390x844.png') });
});
