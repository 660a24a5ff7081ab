// File attachments. The `files` interface (set up by demo/tests/browser.rs) takes up to two
// files of at most 1 MB, PNG or plain text; `demo` takes none. A visitor attaches real files —
// through the file picker, by dropping them on the panel and by pasting — sends them with a
// message, and the operator finds them on the stored message. Files over the limits never leave the browser; a
// file whose bytes are not what its type says is refused by the bridge, and the visitor is told.

import assert from 'node:assert/strict';
import { before } from 'node:test';
import zlib from 'node:zlib';
import {
  BRIDGE,
  admin,
  artifact,
  browserSuite,
  byRole,
  interfaceConfig,
  sendText,
  w,
  waitFor,
  waitForReply,
} from './harness.mjs';

const journey = browserSuite();
let files;
before(async () => {
  files = await interfaceConfig('files');
});

const LIMITS = 'Up to 2 files, 1 MB each (PNG, TXT)';

/** A real PNG image, `size`×`size` pixels of one color. */
function png(size) {
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8; // bits per channel
  header[9] = 2; // RGB
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(size * 3, 0x5b)]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(Array(size).fill(row)))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const isUpload = (request) => request.method() === 'POST' && request.url().endsWith('/attachments');

/** Opens /c/files and returns the page and the id of the session it opened. */
async function openFilesPage(open) {
  const page = await open();
  const opened = page.waitForResponse(
    (r) => r.request().method() === 'POST' && r.url().endsWith('/interfaces/files/sessions'),
  );
  await page.goto(`${BRIDGE}/c/files`);
  await waitFor(page, 'the files chat page', (s) => s.panelShown && s.title === files.title);
  return { page, sessionId: (await (await opened).json()).session_id };
}

journey('a visitor attaches a PNG, sends it with a message, and the bridge stores it on that message', async ({ open }) => {
  const { page, sessionId } = await openFilesPage(open);

  // The limits are told before a file is chosen; the button is one Shift+Tab from the field.
  const attach = page.getByRole('button', { name: 'Attach files' });
  assert.ok(await attach.isVisible(), 'the attach button shows');
  assert.equal(await attach.getAttribute('title'), LIMITS);
  const picker = page.locator(w('input.airlock-file'));
  assert.equal(await picker.getAttribute('accept'), 'image/png,text/plain');
  assert.equal(await picker.evaluate((input) => input.multiple), true);
  await page.locator(w('textarea.airlock-input')).focus();
  await page.keyboard.press('Shift+Tab');
  assert.equal((await waitFor(page, 'focus to move', () => true)).focus.className, 'airlock-attach');

  // Hold the upload on its way, so what the visitor sees meanwhile can be checked.
  let release;
  const held = new Promise((resolve) => (release = resolve));
  await page.route('**/attachments', async (route) => {
    await held;
    await route.continue();
  });
  const image = png(16);
  await picker.setInputFiles({ name: 'screenshot.png', mimeType: 'image/png', buffer: image });
  const uploading = await waitFor(page, 'the file to show as uploading', (s) => s.files[0]?.state === 'uploading');
  assert.equal(uploading.files.length, 1);
  assert.ok(uploading.files[0].shown && uploading.files[0].progress, 'the file shows with a progress bar');
  assert.match(uploading.files[0].text, /^screenshot\.png/);
  assert.equal(await page.getByRole('progressbar', { name: 'Uploading screenshot.png' }).count(), 1);
  assert.ok(await page.locator(w('button.airlock-send')).isDisabled(), 'Send waits for the upload');
  release();
  const ready = await waitFor(page, 'the upload to finish', (s) => s.files[0]?.state === 'ready');
  assert.ok(!ready.files[0].progress, 'the progress bar goes once the file is uploaded');
  assert.ok(await page.getByRole('button', { name: 'Remove screenshot.png' }).isVisible());
  await page.unroute('**/attachments');

  const text = 'Here is the screenshot of the error';
  await sendText(page, text);
  const done = await waitForReply(page, 1);
  const [mine] = byRole(done, 'user');
  assert.equal(mine.text, text);
  assert.deepEqual(mine.attachments.map((a) => a.name), ['screenshot.png']);
  assert.ok(mine.attachments[0].shown, 'the message shows its file');
  assert.equal(mine.attachments[0].text, `screenshot.png${image.length} byte`, 'the file is shown with its size');
  assert.equal(mine.attachments[0].title, `screenshot.png · ${image.length} byte`);
  // The echo agent names each file it received with its byte count: the bytes reached the agent.
  assert.equal(byRole(done, 'assistant')[0].text, `${text}\nReceived screenshot.png (image/png, ${image.length} bytes)`);
  assert.deepEqual(done.files, [], 'the sent file is no longer pending');
  await page.screenshot({ path: artifact('attachments-sent.png') });

  // The operator finds the file on the stored message.
  const stored = await admin(`/sessions/${sessionId}`);
  const users = stored.messages.filter((m) => m.role === 'user');
  assert.equal(users.length, 1);
  assert.equal(users[0].text, text);
  assert.equal(users[0].attachments?.length, 1, `stored: ${JSON.stringify(users[0])}`);
  assert.equal(users[0].attachments[0].filename, 'screenshot.png');
  assert.equal(users[0].attachments[0].size, image.length);
  assert.equal(users[0].attachments[0].content_type, 'image/png');

  // History from the bridge shows the file too.
  await page.reload();
  const again = await waitFor(page, 'the history after a reload', (s) => byRole(s, 'user').length === 1);
  assert.deepEqual(byRole(again, 'user')[0].attachments.map((a) => a.name), ['screenshot.png']);
});

journey('files over the limits never leave the browser; a PNG that is really text is refused by the bridge', async ({ open }) => {
  const { page } = await openFilesPage(open);
  const uploads = [];
  page.on('request', (request) => isUpload(request) && uploads.push(request.url()));
  const picker = page.locator(w('input.airlock-file'));

  await picker.setInputFiles({ name: 'holiday.png', mimeType: 'image/png', buffer: Buffer.alloc(2 * 1024 * 1024, 1) });
  let s = await waitFor(page, 'the too-large file to be refused', (s) => s.banner?.text.includes('holiday.png'));
  assert.equal(s.banner.state, 'error');
  assert.match(s.banner.text, /1 MB/, 'the refusal names the limit');
  assert.deepEqual(s.files, []);

  await picker.setInputFiles({ name: 'setup.exe', mimeType: 'application/octet-stream', buffer: Buffer.from('MZ\x90\x00') });
  s = await waitFor(page, 'the wrong type to be refused', (s) => s.banner?.text.includes('setup.exe'));
  assert.equal(s.banner.state, 'error');
  assert.match(s.banner.text, /PNG, TXT/, 'the refusal names the allowed types');
  assert.deepEqual(s.files, []);

  // Three at once when two are allowed: two go up, the third is refused.
  const note = (n) => ({ name: `notes-${n}.txt`, mimeType: 'text/plain', buffer: Buffer.from(`note ${n}\n`) });
  await picker.setInputFiles([note(1), note(2), note(3)]);
  s = await waitFor(
    page,
    'two files uploaded and the third refused',
    (s) => s.files.length === 2 && s.files.every((f) => f.state === 'ready') && s.banner?.text.includes('notes-3.txt'),
  );
  assert.match(s.banner.text, /2 files/);
  assert.equal(uploads.length, 2, 'only the files within the limits were uploaded');
  await page.getByRole('button', { name: 'Remove notes-1.txt' }).click();
  await page.getByRole('button', { name: 'Remove notes-2.txt' }).press('Enter');
  await waitFor(page, 'no pending files', (s) => s.files.length === 0);

  // The widget cannot tell this one from a PNG; the bridge can.
  const refused = page.waitForResponse((r) => isUpload(r.request()));
  await picker.setInputFiles({ name: 'chart.png', mimeType: 'image/png', buffer: Buffer.from('this is not an image\n') });
  const answer = await refused;
  assert.equal(answer.status(), 422);
  const { message } = (await answer.json()).error;
  s = await waitFor(page, 'the bridge’s refusal to show', (s) => s.files[0]?.state === 'failed');
  assert.ok(s.files[0].text.includes(message.replace('chart.png: ', '')), `the file shows why: ${JSON.stringify(s.files[0])}`);
  assert.equal(s.banner?.state, 'error');
  assert.match(s.banner.text, /chart\.png/);
  await page.screenshot({ path: artifact('attachments-refused.png') });
  await page.getByRole('button', { name: 'Remove chart.png' }).click();
  await waitFor(page, 'the failed file and its error to go', (s) => s.files.length === 0 && s.banner === null);

  // Dropping a file on the panel: a hint with the limits shows while dragging, the file is attached.
  const dropped = await page.evaluateHandle(() => {
    const data = new DataTransfer();
    data.items.add(new File(['dropped notes\n'], 'dropped.txt', { type: 'text/plain' }));
    return data;
  });
  const panel = page.locator(w('.airlock-panel'));
  const hint = page.locator(w('.airlock-drop'));
  await panel.dispatchEvent('dragover', { dataTransfer: dropped });
  await hint.waitFor({ state: 'visible' });
  assert.match(await hint.innerText(), new RegExp(LIMITS.replace(/[()]/g, '\\$&')));
  await panel.dispatchEvent('drop', { dataTransfer: dropped });
  await hint.waitFor({ state: 'hidden' });
  await waitFor(page, 'the dropped file to be uploaded', (s) => s.files[0]?.state === 'ready' && s.files[0].text.startsWith('dropped.txt'));
  assert.equal(uploads.length, 4);

  // Pasting a file into the message field attaches it too.
  await page.locator(w('textarea.airlock-input')).evaluate((field) => {
    const data = new DataTransfer();
    data.items.add(new File(['pasted notes\n'], 'pasted.txt', { type: 'text/plain' }));
    field.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
  });
  await waitFor(page, 'the pasted file to be uploaded', (s) => s.files.length === 2 && s.files.every((f) => f.state === 'ready'));
  assert.equal(uploads.length, 5);

  await sendText(page, 'My notes');
  const done = await waitForReply(page, 1);
  assert.deepEqual(byRole(done, 'user')[0].attachments.map((a) => a.name), ['dropped.txt', 'pasted.txt']);
});

journey('without uploads (demo) there is no attach button, and German labels come with uploads', async ({ open }) => {
  const page = await open();
  await page.goto(`${BRIDGE}/c/demo`);
  await waitFor(page, 'the demo chat page', (s) => s.panelShown);
  assert.equal(await page.locator(w('button.airlock-attach')).isVisible(), false);

  const de = await open();
  await de.goto(`${BRIDGE}/c/files?locale=de`);
  await waitFor(de, 'the German files page', (s) => s.panelShown);
  const attach = de.getByRole('button', { name: 'Dateien anhängen' });
  assert.equal(await attach.getAttribute('title'), 'Bis zu 2 Dateien, je 1 MB (PNG, TXT)');
});
