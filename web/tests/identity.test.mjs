// Signed visitor identity: a host site signs an HS256 identity token for its signed-in user, as a
// real site's server would (node's crypto HMAC here), and hands it to the chat. The `members`
// interface (set up by demo/tests/browser.rs) lets only signed-in visitors chat.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before } from 'node:test';
import {
  BRIDGE,
  admin,
  artifact,
  browserSuite,
  byRole,
  ensureOpen,
  hostPage,
  sendText,
  startHostSite,
  until,
  w,
  waitFor,
  waitForReply,
} from './harness.mjs';

const SECRET = process.env.AIRLOCK_IDENTITY_SECRET;
if (!SECRET) throw new Error('AIRLOCK_IDENTITY_SECRET is not set: run with cargo test -p airlock-demo --test browser');

/** An HS256 JWT, signed the way a host site's server would. */
function identityToken(claims) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${crypto.createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

const user = (sub) => ({
  sub,
  name: 'Ada Lovelace',
  email: `${sub}@shop.example`,
  exp: Math.floor(Date.now() / 1000) + 600,
});

const journey = browserSuite();
let site;
before(async () => {
  site = await startHostSite();
});
after(() => site?.close());

journey('a signed-in user continues the same conversation in a second browser', async ({ open }) => {
  const sub = `member-${crypto.randomUUID()}`;
  // The laptop: the shop's page with the script embed, the token on the script tag.
  const laptop = await open();
  const url = site.page('/account', hostPage({ widget: { interface: 'members', 'identity-token': identityToken(user(sub)) } }));
  await laptop.goto(url);
  await ensureOpen(laptop);
  await sendText(laptop, 'Where is my membership card?');
  await waitForReply(laptop, 1);

  // The phone: another browser (no shared storage), the hosted page with a fresh token for the
  // same user in the URL fragment. The conversation is there, with its reply.
  const phone = await open({ viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true });
  await phone.goto(`${BRIDGE}/c/members#identity_token=${identityToken(user(sub))}`);
  const joined = await waitFor(phone, 'the laptop\'s conversation on the phone', (s) =>
    byRole(s, 'user')[0]?.text === 'Where is my membership card?' && byRole(s, 'assistant')[0]?.status === 'complete');
  assert.equal(byRole(joined, 'assistant')[0].text, 'Where is my membership card?');
  assert.ok(!phone.url().includes('identity_token'), `the token is taken out of the address bar: ${phone.url()}`);

  // Both see what either writes, live.
  await sendText(phone, 'It never arrived at my new address');
  await waitFor(laptop, 'the phone\'s message and its reply on the laptop', (s) =>
    byRole(s, 'user')[1]?.text === 'It never arrived at my new address' && byRole(s, 'assistant')[1]?.status === 'complete');
  await waitForReply(phone, 2);
  await phone.screenshot({ path: artifact('identity-phone.png') });

  // The admins see one session, and who it is.
  const page = await until('the session in the admin API', async () => {
    const found = await admin(`/sessions?interface=members&q=${encodeURIComponent(sub)}`);
    return found.sessions.length ? found : null;
  });
  assert.equal(page.sessions.length, 1, 'one session for both browsers');
  assert.deepEqual(page.sessions[0].identity, { user_id: sub, name: 'Ada Lovelace', email: `${sub}@shop.example` });
  assert.equal(page.sessions[0].message_count, 4);
});

journey('an anonymous visitor is told to sign in, once, where only members may chat', async ({ open }) => {
  const page = await open();
  const opens = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().endsWith('/api/v1/interfaces/members/sessions')) opens.push(r.url());
  });
  await page.goto(site.page('/guest', hostPage({ widget: { interface: 'members' } })));
  await ensureOpen(page);
  const refused = await waitFor(page, 'the sign-in message', (s) => s.banner?.state === 'error');
  assert.match(refused.banner.text, /needs you to be signed in on 127\.0\.0\.1/);
  // No retry loop: one attempt, and it stays at that.
  await page.waitForTimeout(1_500);
  assert.equal(opens.length, 1, `the widget asked once, not in a loop: ${opens.length} requests`);
  await page.screenshot({ path: artifact('identity-required.png') });

  // A bad token is explained the same way.
  const stale = identityToken({ ...user('member-stale'), exp: Math.floor(Date.now() / 1000) - 3600 });
  const expired = await open();
  await expired.goto(`${BRIDGE}/c/members#identity_token=${stale}`);
  const told = await waitFor(expired, 'the expired-token message', (s) => s.banner?.state === 'error');
  assert.match(told.banner.text, /expired/);
  assert.equal(await expired.locator(w('textarea.airlock-input')).count(), 1);
});

journey('an admin sets up identity tokens in the editor and sees who a signed-in visitor is', async ({ open }) => {
  const key = process.env.AIRLOCK_ADMIN_KEY;
  const call = async (method, path, body) => {
    const response = await fetch(`${BRIDGE}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body && JSON.stringify(body),
    });
    assert.ok(response.ok, `${method} ${path}: ${response.status}`);
    return response.json();
  };
  const slug = `idp-${Date.now().toString(36)}`;
  await call('POST', '/admin/interfaces', { slug, title: 'Identity settings' });

  const page = await open({ viewport: { width: 1400, height: 1000 } });
  await page.goto(`${BRIDGE}/admin#/interfaces/${slug}`);
  await page.getByLabel('Admin key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: `Interface ${slug}` }).waitFor();

  // A short secret is refused next to its field.
  await page.getByLabel('Identity tokens').selectOption('HS256');
  await page.getByLabel('HS256 secret').fill('too-short');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.locator('[data-path="identity.secret"] .field-error').filter({ hasText: /32 bytes/ }).waitFor();

  await page.getByLabel('HS256 secret').fill(SECRET);
  await page.getByLabel('Only signed-in visitors may chat').check();
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.locator('#flash').filter({ hasText: 'Saved' }).waitFor();
  let saved = await admin(`/interfaces/${slug}`);
  assert.equal(saved.require_identity, true);
  assert.deepEqual([saved.identity.algorithm, saved.identity.secret, saved.identity.secret_set], ['HS256', null, true]);
  // Write-only: the field is empty again, and says a secret is stored.
  assert.equal(await page.getByLabel('HS256 secret').inputValue(), '');
  assert.match(await page.getByLabel('HS256 secret').getAttribute('placeholder'), /stored/);

  // Another change keeps the stored secret: a token signed with it opens a session.
  await page.getByLabel('Required issuer (iss)').fill('https://shop.example');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await until('the issuer to be saved', async () => (await admin(`/interfaces/${slug}`)).identity.issuer === 'https://shop.example');
  saved = await admin(`/interfaces/${slug}`);
  assert.equal(saved.identity.secret_set, true);
  await call('POST', `/admin/interfaces/${slug}/publish`);
  const sub = `member-${crypto.randomUUID()}`;
  const session = await call('POST', `/interfaces/${slug}/sessions`, {
    identity_token: identityToken({ ...user(sub), name: 'Grace Hopper', iss: 'https://shop.example' }),
  });

  // The sessions list and the transcript say who the visitor is.
  await page.goto(`${BRIDGE}/admin#/sessions`);
  await page.getByLabel('Search').fill(sub);
  await page.getByRole('button', { name: 'Apply' }).click();
  const row = page.locator(`tr[data-id="${session.session_id}"]`);
  await row.filter({ hasText: `Grace Hopper <${sub}@shop.example>` }).waitFor();
  await row.getByRole('link').click();
  await page.locator('dl.meta').filter({ hasText: `signed in as ${sub}` }).waitFor();
  await page.screenshot({ path: artifact('identity-admin-transcript.png') });
});
