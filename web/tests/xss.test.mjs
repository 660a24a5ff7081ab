// Visitor text that is really markup. The echo agent sends it back as its reply; the bridge
// renders replies as Markdown and sanitises them, and the widget shows the visitor's own text as
// text. Nothing may run, on the embedding page or in the widget.

import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { browserSuite, byRole, ensureOpen, hostPage, sendText, startHostSite, waitForReply } from './harness.mjs';

const journey = browserSuite();
let site;
before(async () => {
  site = await startHostSite();
});
after(() => site?.close());

const CORPUS = [
  '<img src=x onerror="window.__xss=1">',
  '<script>window.__xss=1</script>',
  '[click](javascript:window.__xss=1)',
  '<svg onload="window.__xss=1">',
  '<a href="javascript:window.__xss=1">x</a>',
  '<iframe src="javascript:parent.__xss=1"></iframe>',
  '<details open ontoggle="window.__xss=1">d</details>',
  '[y](JaVaScRiPt:window.__xss=1) <a href=" javascript:window.__xss=1">z</a>',
  '<style>*{display:none!important}</style><math><mtext><table><mglyph><style><img src=x onerror=window.__xss=1>',
  '```html\n<script>window.__xss=1</script>\n```',
];

journey('markup in visitor messages and in replies is shown, never run', async ({ open }) => {
  const page = await open();
  await page.goto(site.page('/xss', hostPage({ widget: { interface: 'demo' } })));
  await ensureOpen(page);

  // Anything dangerous that appears in the widget, even for a moment, is recorded.
  await page.evaluate(() => {
    const root = document.querySelector('div[data-airlock-widget]').shadowRoot;
    window.__dangers = [];
    const check = () => {
      for (const el of root.querySelectorAll('*')) {
        for (const attr of el.attributes) {
          const value = attr.value.replace(/[\u0000-\u0020]/g, '').toLowerCase();
          if (attr.name.toLowerCase().startsWith('on') || value.startsWith('javascript:')) {
            window.__dangers.push(`<${el.localName} ${attr.name}="${attr.value}">`);
          }
        }
      }
      for (const el of root.querySelectorAll('.airlock-log script, .airlock-log iframe, .airlock-log object, .airlock-log embed, .airlock-log style')) {
        window.__dangers.push(`<${el.localName}> in the log`);
      }
    };
    new MutationObserver(check).observe(root, { subtree: true, childList: true, attributes: true });
    check();
  });

  for (const [i, text] of CORPUS.entries()) {
    await sendText(page, text);
    const state = await waitForReply(page, i + 1);
    assert.equal(byRole(state, 'user')[i].text, text, 'the visitor’s message shows as the literal text');
  }

  const markupInUserBubbles = await page.evaluate(() =>
    [
      ...document
        .querySelector('div[data-airlock-widget]')
        .shadowRoot.querySelectorAll(
          '.airlock-msg[data-role=user] :is(img, script, svg, a, iframe, details, style, math, table, pre, code)',
        ),
    ].map((el) => el.localName),
  );
  assert.deepEqual(markupInUserBubbles, [], 'a visitor’s message is shown as text, never as markup');

  // The fenced block comes back as code: the literal text, with a copy button.
  const code = await page.evaluate(() => {
    const replies = document.querySelector('div[data-airlock-widget]').shadowRoot.querySelectorAll('.airlock-msg[data-role=assistant]');
    const last = replies[replies.length - 1];
    return { text: last.querySelector('pre code')?.textContent ?? null, copy: !!last.querySelector('button.airlock-copy') };
  });
  assert.equal(code.text?.trim(), '<script>window.__xss=1</script>');
  assert.ok(code.copy, 'a code block has a copy button');

  const dangers = await page.evaluate(() => window.__dangers);
  assert.deepEqual([...new Set(dangers)], [], 'no event handler, javascript: URL or script ever appeared in the widget');
  const ran = await page.evaluate(() => ({ xss: window.__xss, scriptsInPage: document.querySelectorAll('script:not([src])').length }));
  assert.equal(ran.xss, undefined, 'no visitor markup ran');
  assert.equal(ran.scriptsInPage, 0, 'no inline script was added to the page');
});
