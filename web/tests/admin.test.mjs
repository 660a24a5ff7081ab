// The admin page (`/admin`) in a real browser against the real bridge: signing in with the admin
// key (and its CSP), a visitor's session showing up live in the session list while they chat, the
// CSV export, its transcript (visitor markup shown as text), editing an interface and seeing the
// preview change, publishing it for visitors, the running connector shown online, the phone
// layout and stats charts, dead letters retried and discarded, the audit log, and downloading a
// file a visitor attached.

import assert from 'node:assert/strict';
import { before } from 'node:test';
import {
  BRIDGE,
  admin,
  artifact,
  browserSuite,
  interfaceConfig,
  sendText,
  until,
  waitFor,
  waitForReply,
} from './harness.mjs';

const journey = browserSuite();
const ADMIN_KEY = process.env.AIRLOCK_ADMIN_KEY;
const STORAGE_KEY = 'airlock:admin-key';

let demo;
before(async () => {
  demo = await interfaceConfig('demo');
});

/** Opens `/admin{hash}` and signs in with the admin key, as an admin would type it. */
async function signIn(page, hash = '') {
  await page.goto(`${BRIDGE}/admin${hash}`);
  await page.getByLabel('Admin key').fill(ADMIN_KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#app').waitFor({ state: 'visible' });
  await page.locator('main h1').waitFor();
}

/** Reads the admin page's live-events indicator. */
const liveState = (page) => page.locator('#live').getAttribute('data-state');

journey('the admin signs in with the admin key; a wrong key is refused and the key never enters a URL', async ({ open }) => {
  // The page is locked down: only its own scripts and styles, never framed, no referrer.
  const served = await fetch(`${BRIDGE}/admin`);
  const csp = served.headers.get('content-security-policy');
  for (const rule of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) {
    assert.ok(csp.includes(rule), `the admin page's CSP has ${rule}: ${csp}`);
  }
  assert.equal(served.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(served.headers.get('referrer-policy'), 'no-referrer');

  const page = await open();
  const urls = [];
  const violations = [];
  page.on('request', (request) => urls.push(request.url()));
  page.on('console', (msg) => /Content Security Policy/i.test(msg.text()) && violations.push(msg.text()));
  await page.goto(`${BRIDGE}/admin`);
  await page.getByRole('heading', { name: 'Airlock admin' }).waitFor();

  await page.getByLabel('Admin key').fill('not-the-admin-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'refused' }).waitFor();
  assert.equal(await page.locator('#app').isVisible(), false, 'a wrong key does not open the admin page');
  assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), STORAGE_KEY), null);

  await page.getByLabel('Admin key').fill(ADMIN_KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Sessions', level: 1 }).waitFor();
  assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), STORAGE_KEY), ADMIN_KEY, 'the key is kept in sessionStorage');
  for (const url of [...urls, page.url()]) {
    assert.ok(!url.includes(ADMIN_KEY), `the admin key must never be in a URL; it was in ${url}`);
  }
  await until('the live event stream to connect', async () => (await liveState(page)) === 'on');
  assert.deepEqual(violations, [], 'the page runs within its Content-Security-Policy');

  // Reloading the tab keeps the admin signed in; signing out forgets the key.
  await page.reload();
  await page.getByRole('heading', { name: 'Sessions', level: 1 }).waitFor();
  await page.screenshot({ path: artifact('admin-sessions.png') });
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Admin key').waitFor();
  assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), STORAGE_KEY), null, 'signing out clears the key');
  assert.equal(await page.locator('#app').isVisible(), false);

  // A key revoked while the page is open (here: replaced by a wrong one) sends the admin back to sign in.
  await page.evaluate((k) => sessionStorage.setItem(k, 'stale-key'), STORAGE_KEY);
  await page.reload();
  await page.getByRole('alert').filter({ hasText: 'Sign in again' }).waitFor();
  assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), STORAGE_KEY), null);
});

journey('a visitor chatting on /c/demo appears in the session list live, and the admin reads the transcript', async ({ open }) => {
  const adminPage = await open({ viewport: { width: 1280, height: 900 } });
  await signIn(adminPage, '#/sessions');
  await until('the live event stream to connect', async () => (await liveState(adminPage)) === 'on');
  const before = new Set(await adminPage.locator('#sessions-table tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.id)));
  // Any reload or navigation would clear this marker: the new row must arrive without one.
  await adminPage.evaluate(() => (window.__sameDocument = true));

  const visitor = await open();
  await visitor.goto(`${BRIDGE}/c/demo`);
  await waitFor(visitor, 'the hosted chat', (s) => s.panelShown && s.title === demo.title);
  const text = `Live in the admin list ${Date.now()}`;
  await sendText(visitor, text);
  await waitForReply(visitor, 1);

  const id = await until(
    'the visitor\'s session to appear in the admin list',
    async () => {
      const rows = await adminPage.locator('#sessions-table tbody tr').evaluateAll((trs) =>
        trs.map((tr) => ({ id: tr.dataset.id, text: tr.textContent })));
      return rows.find((r) => !before.has(r.id) && r.text.includes('demo'))?.id;
    },
    { timeout: 15_000 },
  );
  assert.equal(await adminPage.evaluate(() => window.__sameDocument), true, 'the list updated without a reload');
  const stored = await admin(`/sessions/${id}`);
  assert.ok(stored.messages.some((m) => m.role === 'user' && m.text === text), 'the new row is the visitor\'s session');

  // Export downloads with the key in a header (fetch → Blob), so the file holds the visitor's words.
  const [download] = await Promise.all([
    adminPage.waitForEvent('download'),
    adminPage.getByRole('button', { name: 'Export CSV' }).click(),
  ]);
  assert.match(download.suggestedFilename(), /^airlock-sessions-.*\.csv$/);
  const csv = await new Promise((resolve, reject) => {
    download.createReadStream().then((stream) => {
      let text = '';
      stream.on('data', (chunk) => (text += chunk));
      stream.on('end', () => resolve(text));
      stream.on('error', reject);
    }, reject);
  });
  assert.ok(csv.includes(text) && csv.includes(id), 'the CSV export holds the new session\'s messages');

  await adminPage.locator(`#sessions-table tr[data-id="${id}"] a`).click();
  await adminPage.getByRole('heading', { name: `Session ${id}` }).waitFor();
  const transcript = adminPage.getByRole('log', { name: 'Transcript' });
  await transcript.locator('.msg[data-role="user"]').filter({ hasText: text }).waitFor();
  await until('the reply in the transcript', async () =>
    (await transcript.locator('.msg[data-role="assistant"][data-status="complete"]').allTextContents()).some((t) => t.includes(text)));
  await adminPage.screenshot({ path: artifact('admin-transcript.png'), fullPage: true });

  // The visitor writes again: the open transcript shows it without a reload.
  const again = `And a second message ${Date.now()}`;
  await sendText(visitor, again);
  await transcript.locator('.msg[data-role="user"]').filter({ hasText: again }).waitFor({ timeout: 15_000 });
});

/** The computed background color of `selector` inside the widget in `frame`. */
const widgetColor = (frame, selector) =>
  frame.evaluate((sel) => {
    const root = document.querySelector('div[data-airlock-widget]')?.shadowRoot;
    const el = root?.querySelector(sel);
    return el ? getComputedStyle(el).backgroundColor : null;
  }, selector);

journey('an admin creates an interface, changes its color, sees the preview change, and publishes it for visitors', async ({ open }) => {
  const page = await open({ viewport: { width: 1400, height: 1000 } });
  await signIn(page, '#/interfaces');
  const slug = `look-${Date.now().toString(36)}`;
  await page.getByLabel('Slug').fill(slug);
  await page.getByLabel('Title', { exact: true }).fill('Look and feel');
  await page.getByRole('button', { name: 'Create draft' }).click();
  await page.getByRole('heading', { name: `Interface ${slug}` }).waitFor();

  // A draft is invisible to visitors.
  const anonymous = await fetch(`${BRIDGE}/api/v1/interfaces/${slug}`);
  assert.equal(anonymous.status, 404, 'a draft is not served to visitors');
  const visitor = await open();
  await visitor.goto(`${BRIDGE}/c/${slug}`);
  await waitFor(visitor, 'the hosted page to say the chat is not available', (s) => s.title === 'This chat is not available.');

  // …but the admin's preview frames show it, the hosted page among them.
  const frameOf = async (surface) => (await page.locator(`iframe[data-surface="${surface}"]`).elementHandle()).contentFrame();
  const hosted = await until('the hosted-page preview', async () => {
    const frame = await frameOf('link');
    if (!frame || !frame.url().includes(`/c/${slug}`)) return null;
    const state = await frame.evaluate(() => !!document.querySelector('div[data-airlock-widget]')?.shadowRoot?.querySelector('.airlock-send'));
    return state && frame;
  });
  await waitFor(hosted, 'the draft in the preview', (s) => s.panelShown && s.title === 'Look and feel');
  const scriptFrame = await frameOf('script');
  await waitFor(scriptFrame, 'the launcher in the script-embed preview', (s) => s.launcher?.shown);
  const iframeFrame = await frameOf('iframe');
  await waitFor(iframeFrame, 'the iframe-embed preview', (s) => s.panelShown && s.title === 'Look and feel');
  const before = await widgetColor(hosted, 'button.airlock-send');
  assert.notEqual(before, 'rgb(214, 51, 108)');

  // The script-embed preview page takes only a plain token into its markup.
  const bad = await fetch(`${BRIDGE}/admin/preview/${slug}?preview=${encodeURIComponent('"><script>alert(1)</script>')}`);
  assert.equal(bad.status, 400, 'a malformed preview token is refused');

  // The embed code is there to copy.
  const snippet = await page.locator('textarea[data-snippet="script"]').inputValue();
  assert.match(snippet, new RegExp(`data-interface="${slug}"`));

  await page.getByLabel('Primary color', { exact: true }).fill('#d6336c');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.locator('#flash').filter({ hasText: 'Saved' }).waitFor();
  const after = await until('the hosted-page preview to show the new color', async () => {
    const frame = await frameOf('link');
    const color = frame && (await widgetColor(frame, 'button.airlock-send').catch(() => null));
    return color === 'rgb(214, 51, 108)' && color;
  });
  assert.equal(after, 'rgb(214, 51, 108)');
  await until('the launcher preview to show the new color', async () => {
    const frame = await frameOf('script');
    return frame && (await widgetColor(frame, 'button.airlock-launcher').catch(() => null)) === 'rgb(214, 51, 108)';
  });
  assert.equal((await admin(`/interfaces/${slug}`)).appearance.primary_color, '#d6336c', 'the color was saved');
  await page.screenshot({ path: artifact('admin-interface-editor.png'), fullPage: true });

  // A field the bridge refuses is named next to the field.
  await page.getByLabel('Primary color', { exact: true }).fill('not a color');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  const colorField = page.locator('[data-path="appearance.primary_color"]');
  await colorField.locator('.field-error').filter({ hasText: /\S/ }).waitFor();
  assert.equal(await page.getByLabel('Primary color', { exact: true }).getAttribute('aria-invalid'), 'true');
  await page.getByLabel('Primary color', { exact: true }).fill('#d6336c');

  // Published, it is a chat any visitor can open, without a preview token.
  await page.getByRole('button', { name: 'Publish', exact: true }).click();
  await page.getByRole('button', { name: 'Unpublish', exact: true }).waitFor();
  assert.equal((await admin(`/interfaces/${slug}`)).status, 'published');
  await visitor.goto(`${BRIDGE}/c/${slug}`);
  const shown = await waitFor(visitor, 'the published chat', (s) => s.panelShown && s.title === 'Look and feel');
  assert.ok(!shown.title.includes('not available'));
  assert.equal(await widgetColor(visitor, 'button.airlock-send'), 'rgb(214, 51, 108)');
});

journey('the connectors page shows the running connector online; a new key is shown once and can be revoked', async ({ open }) => {
  const page = await open();
  await signIn(page, '#/connectors');
  const row = page.locator('tr[data-name="browser tests"]');
  await row.waitFor();
  await until('the connector to be shown online', async () => (await row.locator('.badge').textContent()) === 'online');

  // A new key is shown once, to copy; the list never shows it again. Revoking is confirmed.
  const name = `laptop ${Date.now()}`;
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel(/^Interfaces/).fill('demo');
  await page.getByRole('button', { name: 'Create key' }).click();
  const shown = await page.getByLabel('Connector key', { exact: true }).inputValue();
  assert.ok(shown.length >= 20, `a connector key is shown: ${shown}`);
  await page.getByRole('button', { name: 'Copy key' }).waitFor();
  const listed = (await admin('/connectors')).items.find((c) => c.name === name);
  assert.ok(listed && !listed.key, 'the list has the connector but never its key');
  assert.ok(!(await page.locator('main table').textContent()).includes(shown), 'the table does not show the key');
  await page.screenshot({ path: artifact('admin-connectors.png') });

  const row2 = page.locator(`tr[data-name="${name}"]`);
  await row2.getByRole('button', { name: 'Revoke' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await until('the key to be shown revoked', async () => (await row2.locator('.badge').textContent()) === 'revoked');
  const me = await fetch(`${BRIDGE}/api/v1/connector/me`, { headers: { authorization: `Bearer ${shown}` } });
  assert.equal(me.status, 401, 'a revoked key is refused');
});

journey('on a phone the admin page fits the screen and the navigation is usable by keyboard', async ({ open }) => {
  const page = await open({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await signIn(page, '#/sessions');
  const sideways = await page.evaluate(() => document.documentElement.scrollWidth > innerWidth + 1);
  assert.equal(sideways, false, 'the page does not scroll sideways on a phone');
  await page.getByRole('link', { name: 'Stats' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Stats', level: 1 }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'Stats' }).getAttribute('aria-current'), 'page');
  assert.equal(await page.locator('figure.chart svg').count(), 3, 'three charts are drawn');
  assert.ok((await page.locator('figure.chart svg polyline').count()) === 2, 'sessions and messages are lines over time');
  await page.screenshot({ path: artifact('admin-phone-stats.png') });
});

/** An admin API call with the admin key (the harness's `admin` only reads). */
async function adminCall(method, path, body) {
  const response = await fetch(`${BRIDGE}/api/v1/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} admin${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

/** A connector of the test's own, over the real connector API: claims the next item of its interface. */
async function claim(connectorKey) {
  return until('an item to claim', async () => {
    const response = await fetch(`${BRIDGE}/api/v1/connector/claim`, {
      method: 'POST',
      headers: { authorization: `Bearer ${connectorKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ wait: 2 }),
    });
    if (!response.ok) throw new Error(`claim: ${response.status} ${await response.text()}`);
    return (await response.json()).items[0];
  }, { timeout: 15_000 });
}

async function lease(connectorKey, item, verb, body) {
  const response = await fetch(`${BRIDGE}/api/v1/connector/leases/${item.lease_id}/${verb}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${connectorKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${verb}: ${response.status} ${await response.text()}`);
}

journey('a message the agent gave up on shows in dead letters; Retry gets it answered, Discard drops it', async ({ open }) => {
  const slug = `dl-${Date.now().toString(36)}`;
  await adminCall('POST', '/interfaces', { slug, title: 'Fragile agent', publish: true });
  const { key: connectorKey } = await adminCall('POST', '/connectors', { name: `fragile ${slug}`, interfaces: [slug] });

  const page = await open({ viewport: { width: 1280, height: 900 } });
  await signIn(page, '#/dead-letters');
  await until('the live event stream to connect', async () => (await liveState(page)) === 'on');

  const visitor = await open();
  await visitor.goto(`${BRIDGE}/c/${slug}`);
  await waitFor(visitor, 'the chat', (s) => s.panelShown && s.title === 'Fragile agent');
  const text = `Please answer this eventually ${Date.now()}`;
  await sendText(visitor, text);

  // The agent fails it for good: it is dead-lettered, and the open admin page shows it live.
  let item = await claim(connectorKey);
  assert.equal(item.message.text, text);
  await lease(connectorKey, item, 'fail', { error: 'the model provider is down', retry: false });
  const row = page.locator(`tr[data-id="${item.message.id}"]`);
  await row.waitFor({ timeout: 15_000 });
  assert.match(await row.textContent(), /the model provider is down/);
  await page.screenshot({ path: artifact('admin-dead-letters.png') });

  await row.getByRole('button', { name: 'Retry' }).click();
  await row.waitFor({ state: 'detached' });
  item = await claim(connectorKey);
  assert.equal(item.message.text, text, 'the retried message is offered to the agent again');
  await lease(connectorKey, item, 'reply', { text: 'Sorry for the wait: here is your answer.' });
  await until('the visitor to see the late answer', async () => {
    const state = await waitFor(visitor, 'the chat', (s) => s.mounted);
    return state.messages.some((m) => m.role === 'assistant' && m.text === 'Sorry for the wait: here is your answer.');
  }, { timeout: 15_000 });

  // A second message fails too; this time the admin discards it.
  await sendText(visitor, 'And this one is hopeless');
  item = await claim(connectorKey);
  await lease(connectorKey, item, 'fail', { error: 'still down', retry: false });
  const second = page.locator(`tr[data-id="${item.message.id}"]`);
  await second.waitFor({ timeout: 15_000 });
  await second.getByRole('button', { name: 'Discard' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Discard' }).click();
  await second.waitFor({ state: 'detached' });
  const left = await admin('/dead-letters');
  assert.ok(!left.items.some((d) => d.message.id === item.message.id), 'a discarded dead letter is gone from the list');
});

journey('an admin forgets a visitor: every session of theirs is deleted', async ({ open }) => {
  const opened = async () => (await fetch(`${BRIDGE}/api/v1/interfaces/demo/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  })).json();
  const created = await opened();
  const bystander = await opened();
  const sent = await fetch(`${BRIDGE}/api/v1/sessions/${created.session_id}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${created.session_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ client_id: `forget-${Date.now()}`, text: 'Please erase my data' }),
  });
  assert.equal(sent.status, 202);

  const page = await open();
  await signIn(page, `#/sessions/${created.session_id}`);
  await page.getByRole('log', { name: 'Transcript' }).locator('.msg[data-role="user"]').waitFor();
  await page.getByRole('button', { name: 'Forget visitor' }).click();
  const dialog = page.getByRole('dialog');
  assert.match(await dialog.textContent(), new RegExp(created.visitor_id), 'the dialog names the visitor');
  await dialog.getByRole('button', { name: 'Forget visitor' }).click();
  await page.getByRole('heading', { name: 'Sessions', level: 1 }).waitFor();
  await page.getByText(/Deleted 1 session\(s\), \d+ message\(s\)/).waitFor();
  const gone = await fetch(`${BRIDGE}/api/v1/admin/sessions/${created.session_id}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  assert.equal(gone.status, 404, 'the visitor\'s session is gone');
  const kept = await fetch(`${BRIDGE}/api/v1/admin/sessions/${bystander.session_id}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  assert.equal(kept.status, 200, 'another visitor\'s session stays');
  const audit = await adminCall('GET', '/audit');
  assert.ok(audit.items.some((e) => e.action === 'visitor.forget' && e.target === `visitor_id=${created.visitor_id}`), 'audited');
});

journey('markup a visitor typed is shown as text in the transcript, never run', async ({ open }) => {
  const hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> **bold**';
  const created = await (await fetch(`${BRIDGE}/api/v1/interfaces/demo/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  })).json();
  const sent = await fetch(`${BRIDGE}/api/v1/sessions/${created.session_id}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${created.session_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ client_id: `xss-${Date.now()}`, text: hostile }),
  });
  assert.equal(sent.status, 202);
  await until('the echo reply', async () =>
    (await admin(`/sessions/${created.session_id}`)).messages.some((m) => m.role === 'assistant' && m.status === 'complete'),
  { timeout: 15_000 });

  const page = await open();
  await signIn(page, `#/sessions/${created.session_id}`);
  const transcript = page.getByRole('log', { name: 'Transcript' });
  await transcript.locator('.msg[data-role="assistant"]').waitFor();
  assert.equal(await transcript.locator('.msg[data-role="user"] .text').textContent(), hostile, 'the visitor\'s text is shown literally');
  // The reply is the bridge's sanitized HTML: whatever elements it kept carry no script.
  const risky = await transcript.evaluate((log) =>
    [...log.querySelectorAll('*')].filter((el) =>
      el.tagName === 'SCRIPT' || [...el.attributes].some((a) => a.name.startsWith('on'))).map((el) => el.outerHTML));
  assert.deepEqual(risky, [], 'no script and no event handler attributes in the transcript');
  assert.equal(await transcript.locator('.msg[data-role="user"] img').count(), 0, 'visitor text makes no elements');
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  // Ending it (confirmed) stops the visitor from writing in it; deleting it removes it.
  await page.getByRole('button', { name: 'End session' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'End session' }).click();
  await page.locator('dl.meta .badge').filter({ hasText: 'ended' }).waitFor();
  const refused = await fetch(`${BRIDGE}/api/v1/sessions/${created.session_id}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${created.session_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ client_id: `late-${Date.now()}`, text: 'Still there?' }),
  });
  assert.equal(refused.status, 409, 'an ended session refuses new messages');
  await page.getByRole('button', { name: 'Delete session' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('heading', { name: 'Sessions', level: 1 }).waitFor();
  const gone = await fetch(`${BRIDGE}/api/v1/admin/sessions/${created.session_id}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  assert.equal(gone.status, 404, 'a deleted session is gone');

  // Navigating to the audit log: the admin actions of this run are listed.
  await page.getByRole('link', { name: 'Audit log' }).click();
  await page.getByRole('heading', { name: 'Audit log' }).waitFor();
  await until('an interface.create entry', async () => (await page.locator('main tbody').textContent()).includes('interface.create'));
  // It updates live: an action taken elsewhere (here over the API) appears without a reload.
  const audited = `audit-${Date.now().toString(36)}`;
  await adminCall('POST', '/interfaces', { slug: audited, title: 'Audited' });
  await until('the new action in the open audit log', async () => (await page.locator('main tbody').textContent()).includes(audited));
});

journey('an interface is duplicated as a draft, and deleted only after its slug is typed', async ({ open }) => {
  const slug = `dup-${Date.now().toString(36)}`;
  await adminCall('POST', '/interfaces', { slug, title: 'Original', publish: true });
  const page = await open({ viewport: { width: 1280, height: 900 } });
  await signIn(page, `#/interfaces/${slug}`);
  await page.getByRole('heading', { name: `Interface ${slug}` }).waitFor();

  await page.getByRole('button', { name: 'Duplicate' }).click();
  await page.getByRole('dialog').getByLabel('Slug of the copy').fill(`${slug}-b`);
  await page.getByRole('dialog').getByRole('button', { name: 'Duplicate' }).click();
  await page.getByRole('heading', { name: `Interface ${slug}-b` }).waitFor();
  const copy = await admin(`/interfaces/${slug}-b`);
  assert.equal(copy.title, 'Original');
  assert.equal(copy.status, 'draft', 'a duplicate starts as a draft');

  await page.getByRole('button', { name: 'Delete' }).click();
  const dialog = page.getByRole('dialog');
  const confirm = dialog.getByRole('button', { name: 'Delete' });
  assert.equal(await confirm.isDisabled(), true, 'delete waits for the slug to be typed');
  await dialog.getByLabel(`Type ${slug}-b to confirm`).fill(`${slug}-b`);
  await confirm.click();
  await page.getByRole('heading', { name: 'Interfaces', level: 1 }).waitFor();
  assert.equal(await page.locator(`tr[data-slug="${slug}-b"]`).count(), 0);
  assert.equal(await page.locator(`tr[data-slug="${slug}"]`).count(), 1, 'the original stays');
  const gone = await fetch(`${BRIDGE}/api/v1/admin/interfaces/${slug}-b`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  assert.equal(gone.status, 404);
});

journey('a file a visitor attached is downloaded from the transcript, with its name and bytes', async ({ open }) => {
  // The visitor's side over the visitor API: a session on `files` (uploads on), a PNG, a message.
  const png = Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex'), Buffer.alloc(48)]);
  const session = await (await fetch(`${BRIDGE}/api/v1/interfaces/files/sessions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}',
  })).json();
  const auth = { authorization: `Bearer ${session.session_token}` };
  const form = new FormData();
  form.append('file', new Blob([png], { type: 'image/png' }), 'receipt.png');
  const uploaded = await fetch(`${BRIDGE}/api/v1/sessions/${session.session_id}/attachments`, { method: 'POST', headers: auth, body: form });
  assert.equal(uploaded.status, 201);
  const { attachment } = await uploaded.json();
  const sent = await fetch(`${BRIDGE}/api/v1/sessions/${session.session_id}/messages`, {
    method: 'POST', headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ client_id: 'with-receipt', text: 'my receipt', attachments: [attachment.id] }),
  });
  assert.equal(sent.status, 202);

  const page = await open();
  await signIn(page, `#/sessions/${session.session_id}`);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download receipt.png' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'receipt.png');
  const bytes = await new Promise((resolve, reject) => {
    download.createReadStream().then((stream) => {
      const chunks = [];
      stream.on('data', (chunk) => chunks.push(chunk));
      stream.on('end', () => resolve(Buffer.concat(chunks)));
      stream.on('error', reject);
    }, reject);
  });
  assert.deepEqual(bytes, png, 'the admin gets exactly the bytes the visitor sent');
});
