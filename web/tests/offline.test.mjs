// A visitor writes while no agent is connected. The interface `offline` has no connector until a
// visitor's message is stored in it; then demo/tests/browser.rs starts one, and the reply must
// reach the page that is still open.

import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { browserSuite, byRole, hostPage, sendText, startHostSite, until, waitFor, waitForReply } from './harness.mjs';

const journey = browserSuite();
let site;
before(async () => {
  site = await startHostSite();
});
after(() => site?.close());

journey('a message sent while the agent is offline is kept, and its reply arrives once an agent connects, without a reload', async ({ open }) => {
  const page = await open();
  let loads = 0;
  page.on('load', () => loads++);
  await page.goto(site.page('/after-hours', hostPage({ widget: { interface: 'offline', open: 'true' } })));

  // data-open="true": the panel is open without a click, and says nobody is there.
  const offline = await waitFor(page, 'the offline banner', (s) => s.panelShown && s.banner?.state === 'offline');
  assert.ok(offline.banner.text.length > 0, 'the offline banner says something');

  await sendText(page, 'Is anyone there tonight?');
  const kept = await waitFor(page, 'the message to show in the log', (s) => byRole(s, 'user').length === 1);
  assert.equal(byRole(kept, 'user')[0].text, 'Is anyone there tonight?');
  assert.notEqual(byRole(kept, 'user')[0].status, 'failed', 'the message waits, it is not failed');
  assert.equal(kept.input, '', 'the field is emptied once the message is kept');

  // The runner now starts a connector for `offline`; the reply comes into this same page.
  const answered = await waitForReply(page, 1, { timeout: 20_000 });
  assert.equal(byRole(answered, 'assistant')[0].text, 'Is anyone there tonight?');
  assert.equal(byRole(answered, 'user').length, 1, 'the message was sent once');
  // An agent has just answered: telling the visitor it is offline would now be wrong.
  await waitFor(page, 'the offline banner to go once an agent answered', (s) => s.banner === null, { timeout: 5_000 });
  await until('no reload to have happened', async () => loads === 1);
});
