// Which sites may embed the chat. Every interface lists this file's third-party site as an
// allowed origin (demo/tests/browser.rs reserves its port); a second site on another port is a
// stranger. On the stranger the script widget stays hidden, says why in the console, and the
// bridge stores nothing; an iframe of /embed/{slug} is blocked by the browser (frame-ancestors).

import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { BRIDGE, admin, browserSuite, hostPage, interfaceConfig, startHostSite, until, waitFor, widgetState } from './harness.mjs';

const journey = browserSuite();
let listed;
let stranger;
let shop;
before(async () => {
  listed = await startHostSite();
  stranger = await startHostSite({ listed: false });
  shop = await interfaceConfig('shop');
});
after(async () => {
  await listed?.close();
  await stranger?.close();
});

/** Sessions of `shop` opened from pages of `origin`, as the operator sees them. */
async function sessionsFrom(origin) {
  const { sessions } = await admin('/sessions?interface=shop&limit=200');
  return sessions.filter((s) => (s.page_url ?? '').startsWith(origin));
}

/** Records the page's console messages, and the bridge's answers to it. */
function watch(page) {
  const seen = { console: [], answers: [] };
  page.on('console', (msg) => seen.console.push(msg.text()));
  page.on('response', (response) => {
    if (response.url().startsWith(`${BRIDGE}/api/`)) {
      seen.answers.push({ method: response.request().method(), url: response.url(), status: response.status() });
    }
  });
  return seen;
}

journey('the script widget on a site not in allowed_origins stays hidden, says why, and nothing is stored', async ({ open }) => {
  const page = await open();
  const seen = watch(page);
  await page.goto(stranger.page('/stranger', hostPage({ widget: { interface: 'shop', open: 'true' } })));

  // The bridge refused the widget's first call, and the widget says why to the site's developer.
  const refusal = await until('the refusal in the console', async () =>
    seen.console.find((text) => text.includes('may not use this chat')),
  );
  assert.ok(refusal.includes(stranger.origin) && refusal.includes('allowed origins'), refusal);
  assert.deepEqual(
    seen.answers.map((a) => a.status),
    [403],
    `one refused call, no retries: ${JSON.stringify(seen.answers)}`,
  );
  const state = await widgetState(page);
  assert.ok(!state.launcher?.shown && !state.panelShown, `nothing of the chat shows: ${JSON.stringify(state)}`);

  // A script on that page opening a session itself is stopped by the browser (the preflight
  // carries no CORS header), and the bridge stores nothing either.
  const probe = await page.evaluate(async ({ bridge, pageUrl }) => {
    try {
      const response = await fetch(`${bridge}/api/v1/interfaces/shop/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ page_url: pageUrl }),
      });
      return `answered ${response.status}`;
    } catch (err) {
      return `blocked: ${err.message}`;
    }
  }, { bridge: BRIDGE, pageUrl: `${stranger.origin}/probe` });
  assert.match(probe, /^blocked/, probe);
  assert.deepEqual(await sessionsFrom(stranger.origin), [], 'no session was created from the stranger site');

  // The same widget on the listed site works.
  const welcome = await open();
  await welcome.goto(listed.page('/listed', hostPage({ widget: { interface: 'shop', open: 'true' } })));
  await waitFor(welcome, 'the chat open on the listed site', (s) => s.panelShown && s.title === shop.title);
  await until('its session to be stored', async () => (await sessionsFrom(listed.origin)).length > 0);
});

journey('/embed/{slug} framed by a site not in allowed_origins is blocked by frame-ancestors', async ({ open }) => {
  const body = `<main><h1>Help centre</h1>
    <iframe src="${BRIDGE}/embed/shop" title="Chat with us" style="width:400px;height:600px;border:1px solid #ccc"></iframe></main>`;

  // On the listed site the chat renders in the frame.
  const page = await open();
  await page.goto(listed.page('/framed', hostPage({ widget: null, body })));
  const frame = await (await page.waitForSelector('iframe')).contentFrame();
  await waitFor(frame, 'the embedded chat', (s) => s.panelShown && s.title === shop.title);

  // On the stranger the browser refuses to show the bridge's page in the frame.
  const blocked = await open();
  const seen = watch(blocked);
  await blocked.goto(stranger.page('/framed', hostPage({ widget: null, body })));
  const violation = await until('the browser to report the frame-ancestors violation', async () =>
    seen.console.find((text) => text.includes('frame-ancestors')),
  );
  assert.ok(violation.includes(stranger.origin) || violation.includes('ancestor'), violation);
  const strangerFrame = await (await blocked.waitForSelector('iframe')).contentFrame();
  const chat = await strangerFrame
    .evaluate(() => !!document.querySelector('div[data-airlock-widget]'))
    .catch(() => false);
  assert.equal(chat, false, `the frame must not hold the chat (it shows ${strangerFrame.url()})`);
  assert.deepEqual(await sessionsFrom(stranger.origin), [], 'no session was opened from the blocked frame');
});
