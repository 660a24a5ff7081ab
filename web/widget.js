/* Airlock chat widget: one script for the launcher bubble, the iframe (embed) and the full page.
   Plain ES2020, no dependencies. Everything lives in an open shadow root; see docs/api.md. */
(() => {
  "use strict";
  const me = document.currentScript || document.querySelector('script[data-interface][src*="widget.js"]');
  const pre = window.Airlock;
  if (!me || (pre && pre.open)) return;
  const D = me.dataset, mode = D.mode || "bubble", bubble = mode === "bubble";
  const Q = new URLSearchParams(bubble ? "" : location.search);
  const opt = (k) => D[k] || Q.get(k) || "";
  const slug = D.interface, KEY = "airlock:" + slug, PV = opt("preview");
  const base = me.src.replace(/\/widget\.js([?#].*)?$/, ""), API = base + "/api/v1";

  const STR = {
    en: {
      open: "Open chat", close: "Close chat", new: "New conversation", msg: "Message", send: "Send", ph: "Type a message…",
      log: "Conversation", typing: "The assistant is typing…", copy: "Copy", copied: "Copied",
      prompts: "Suggestions", ended: "Earlier conversation (ended)",
      offline: "The assistant is offline — your message is queued and the reply will appear here.",
      rate: "Too many messages — sending again in {n} s.",
      expired: "That conversation had ended, so a new one was started.",
      unreachable: "Can't reach the chat service — retrying…",
      failed: "The assistant could not answer this message.",
      gone: "This chat is not available.",
      attach: "Attach files", lim: "Up to {n} files, {mb} MB each ({t})", drop: "Drop files here to attach them",
      rm: "Remove {f}", upl: "Uploading {f}", upfail: "The upload failed.",
      many: "“{f}” was not added: up to {n} files per message.",
      big: "“{f}” is too large: up to {mb} MB per file.",
      type: "“{f}” cannot be attached: only {t} files are allowed.",
    },
    de: {
      open: "Chat öffnen", close: "Chat schließen", new: "Neue Unterhaltung", msg: "Nachricht", send: "Senden", ph: "Nachricht schreiben…",
      log: "Unterhaltung", typing: "Der Assistent schreibt…", copy: "Kopieren", copied: "Kopiert",
      prompts: "Vorschläge", ended: "Frühere Unterhaltung (beendet)",
      offline: "Der Assistent ist offline – Ihre Nachricht ist vorgemerkt, die Antwort erscheint hier.",
      rate: "Zu viele Nachrichten – erneuter Versuch in {n} s.",
      expired: "Die Unterhaltung war beendet, daher wurde eine neue begonnen.",
      unreachable: "Der Chat-Dienst ist nicht erreichbar – neuer Versuch läuft…",
      failed: "Der Assistent konnte diese Nachricht nicht beantworten.",
      gone: "Dieser Chat ist nicht verfügbar.",
      attach: "Dateien anhängen", lim: "Bis zu {n} Dateien, je {mb} MB ({t})", drop: "Dateien hier ablegen, um sie anzuhängen",
      rm: "{f} entfernen", upl: "{f} wird hochgeladen", upfail: "Das Hochladen ist fehlgeschlagen.",
      many: "„{f}“ wurde nicht hinzugefügt: höchstens {n} Dateien pro Nachricht.",
      big: "„{f}“ ist zu groß: höchstens {mb} MB pro Datei.",
      type: "„{f}“ kann nicht angehängt werden: erlaubt sind nur {t}-Dateien.",
    },
    ar: {
      open: "فتح المحادثة", close: "إغلاق المحادثة", new: "محادثة جديدة", msg: "رسالة", send: "إرسال", ph: "اكتب رسالة…",
      log: "المحادثة", typing: "المساعد يكتب…", copy: "نسخ", copied: "تم النسخ",
      prompts: "اقتراحات", ended: "محادثة سابقة (انتهت)",
      offline: "المساعد غير متصل — رسالتك في الانتظار وسيظهر الرد هنا.",
      rate: "رسائل كثيرة جدًا — إعادة الإرسال بعد {n} ث.",
      expired: "كانت تلك المحادثة قد انتهت، لذا بدأت محادثة جديدة.",
      unreachable: "تعذّر الوصول إلى خدمة المحادثة — جارٍ إعادة المحاولة…",
      failed: "تعذّر على المساعد الرد على هذه الرسالة.",
      gone: "هذه المحادثة غير متاحة.",
      attach: "إرفاق ملفات", lim: "حتى {n} ملفات، {mb} ميغابايت لكل ملف ({t})", drop: "أفلت الملفات هنا لإرفاقها",
      rm: "إزالة {f}", upl: "جارٍ رفع {f}", upfail: "تعذّر رفع الملف.",
      many: "لم تتم إضافة «{f}»: الحد الأقصى {n} ملفات لكل رسالة.",
      big: "«{f}» كبير جدًا: الحد الأقصى {mb} ميغابايت لكل ملف.",
      type: "لا يمكن إرفاق «{f}»: المسموح به فقط ملفات {t}.",
    },
  };
  let locale, L, tfmt;
  const pickLocale = (cfgLocale) => {
    locale = [opt("locale"), cfgLocale, document.documentElement.lang, navigator.language].find(Boolean) || "en";
    const lang = locale.slice(0, 2).toLowerCase();
    L = STR[lang] || STR.en;
    try { tfmt = new Intl.DateTimeFormat(locale, { hour: "numeric", minute: "2-digit" }); }
    catch { tfmt = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" }); }
    panel.lang = STR[lang] ? lang : "en";
    panel.dir = L === STR.ar ? "rtl" : "ltr";
    if (!bubble && !document.documentElement.lang) document.documentElement.lang = panel.lang;
    binds.forEach(([e, a, k]) => {
      if (!a) return (e.textContent = L[k]);
      e.setAttribute("aria-label", L[k]);
      if (e.localName === "button") e.title = L[k]; // icon buttons: a tooltip too
    });
  };

  // ---- DOM ----
  const h = (tag, cls, attrs, ...kids) => {
    const e = document.createElement(tag);
    if (cls) e.className = "airlock-" + cls;
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    e.append(...kids);
    return e;
  };
  const svg = (d) => {
    const s = h("span", "ico", { "aria-hidden": "true" });
    s.innerHTML = `<svg viewBox="0 0 24 24" focusable="false"><path d="${d}"/></svg>`;
    return s;
  };
  const binds = [];
  const bind = (e, k, label) => (binds.push([e, label, k]), e);
  const btn = (cls, k, ...kids) => bind(h("button", cls, { type: "button" }, ...kids), k, 1);

  const host = h("div", "", { "data-airlock-widget": slug, "data-mode": mode, "data-theme": "light" });
  host.style.setProperty("display", "none"); // until the stylesheet (and, for the bubble, the config) arrived
  const root = host.attachShadow({ mode: "open" });
  const css = h("link", "", { rel: "stylesheet", href: base + "/widget.css" });
  const title = h("h2", "title", { dir: "auto" }), desc = h("p", "description", { dir: "auto" }), icon = h("span", "icon", { "aria-hidden": "true" });
  const newBtn = btn("new", "new", svg("M12 20h9M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z"));
  const closeBtn = btn("close", "close", svg("M6 6l12 12M18 6 6 18"));
  const typing = h("div", "typing", { hidden: "" }, h("i"), h("i"), h("i"), bind(h("span", "sr"), "typing"));
  const log = bind(h("div", "log", { role: "log", "aria-live": "polite", tabindex: "0" }, typing), "log", 1);
  const chips = bind(h("div", "chips", { role: "group", hidden: "" }), "prompts", 1);
  const banner = h("div", "banner", { role: "status", hidden: "" });
  const input = bind(h("textarea", "input", { rows: "1", maxlength: "10000", enterkeyhint: "send", dir: "auto" }), "msg", 1);
  const sendBtn = btn("send", "send", svg("M5 12h14M13 6l6 6-6 6"));
  const clip = "M21 11l-9 9a6 6 0 0 1-8.5-8.5l9-9a4 4 0 0 1 5.7 5.7l-9 9a2 2 0 0 1-2.9-2.9L15 6.6";
  const attachBtn = btn("attach", "attach", svg(clip)), fileIn = h("input", "file", { type: "file", hidden: "", tabindex: "-1" });
  const box = h("div", "files", { hidden: "" }), hint = h("div", "drop", { hidden: "" });
  attachBtn.hidden = true;
  const composer = h("div", "composer", {}, box, attachBtn, fileIn, input, sendBtn);
  const panel = h("div", "panel", { role: "dialog" },
    h("header", "head", {}, icon, h("div", "titles", {}, title, desc), newBtn, ...(bubble ? [closeBtn] : [])),
    banner, log, chips, composer, hint);
  const lIcon = h("span", "l1"), lLabel = h("span", "label", { hidden: "" });
  const launcher = btn("launcher", "open", lIcon, lLabel, h("span", "l2", {}, svg("M6 6l12 12M18 6 6 18")));
  // Theme variables live on this inner element: custom properties a page declares on the host
  // (it wins over :host) cannot reach it.
  const wrap = h("div", "root", {}, ...(bubble ? [launcher] : []), panel);
  root.append(css, wrap);
  if (bubble) {
    panel.setAttribute("aria-modal", "false");
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    lIcon.append(svg("M21 12a8 8 0 0 1-11.6 7.1L3 21l1.9-6.4A8 8 0 1 1 21 12z"));
  }
  pickLocale();
  let pending = bubble ? 2 : 1;
  const reveal = () => --pending || (host.setAttribute("data-ready", ""), host.style.removeProperty("display"));
  css.onload = reveal;
  css.onerror = () => console.warn("Airlock: widget.css did not load; does the page's Content-Security-Policy allow " + base + "?");
  const mount = () => document.body.append(host);
  document.body ? mount() : addEventListener("DOMContentLoaded", mount);

  const vv = window.visualViewport;
  const fit = () => {
    wrap.style.setProperty("--airlock-vh", vv.height + "px");
    wrap.style.setProperty("--airlock-vt", vv.offsetTop + "px");
  };
  if (vv) { vv.addEventListener("resize", fit); vv.addEventListener("scroll", fit); fit(); }

  // ---- events and public API ----
  const handlers = {};
  const emit = (ev, detail) => {
    (handlers[ev] || new Set()).forEach((f) => { try { f(detail); } catch (e) { console.error(e); } });
    dispatchEvent(new CustomEvent("airlock:" + ev, { detail }));
  };
  let isOpen = !bubble;
  const setOpen = (o, focus) => {
    if (!bubble || o === isOpen) return;
    isOpen = o;
    panel.hidden = !o;
    host.toggleAttribute("data-open", o);
    launcher.setAttribute("aria-expanded", o);
    if (o) { log.scrollTop = log.scrollHeight; if (focus) input.focus(); }
    else if (root.activeElement || focus) launcher.focus();
    emit(o ? "open" : "close");
  };
  launcher.onclick = () => setOpen(!isOpen, 1);
  closeBtn.onclick = () => setOpen(false, 1);
  root.addEventListener("keydown", (e) => { if (e.key === "Escape" && isOpen && bubble) { e.stopPropagation(); setOpen(false, 1); } });

  // Signed identity: data-identity-token, or (iframe, page) #identity_token=…, then cut from the URL.
  const F = new URLSearchParams(bubble ? "" : location.hash.slice(1));
  let identity = D.identityToken || F.get("identity_token"), context;
  if (F.has("identity_token")) history.replaceState(null, "", location.pathname + location.search);
  try { context = JSON.parse(opt("context") || "null") || undefined; } catch { console.warn("Airlock: data-context is not JSON"); }
  const A = (window.Airlock = {
    transport: null,
    open: () => setOpen(true, 1),
    close: () => setOpen(false),
    send: (t) => send(t),
    identify: (tok) => { identity = tok || null; if (cfg.slug) connect(); },
    on: (ev, f) => { (handlers[ev] = handlers[ev] || new Set()).add(f); },
    off: (ev, f) => { handlers[ev] && handlers[ev].delete(f); },
  });

  // ---- banner states, most important first ----
  const states = {}, ORDER = ["error", "rate-limited", "expired", "unreachable", "offline"];
  const setState = (k, text) => {
    if (text) states[k] = text; else delete states[k];
    const top = ORDER.find((s) => states[s]);
    banner.hidden = !top;
    if (!top) return banner.removeAttribute("data-state");
    banner.dataset.state = top;
    if (banner.textContent !== states[top]) banner.textContent = states[top];
  };
  let online = true;
  const setOnline = (v) => { online = v !== false; setState("offline", !online && L.offline); refresh(); };

  // ---- HTTP ----
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const backoff = (n) => { const d = Math.min(15e3, 500 * 2 ** n); return sleep(d / 2 + (Math.random() * d) / 2); };
  let S = null, cursor = 0, until = 0;
  const req = async (path, o = {}) => {
    const hd = (o.headers = o.headers || {});
    if (S && path.startsWith("/sessions/")) hd.Authorization = "Bearer " + S.session_token;
    if (PV) hd["X-Airlock-Preview"] = PV;
    if (o.body) { hd["Content-Type"] = "application/json"; o.body = JSON.stringify(o.body); }
    let r;
    try { r = await fetch(API + path, { cache: "no-store", ...o }); } catch { throw { net: 1 }; }
    if (r.ok) return r;
    const e = (await r.json().catch(() => ({}))).error || {};
    throw { status: r.status, code: e.code, msg: e.message || r.statusText, after: +r.headers.get("Retry-After") };
  };
  const call = async (method, path, body, signal) => (await req(path, { method, body, signal })).json();
  const gone = (e) => e.status === 401 || e.status === 404 || e.code === "session_closed";
  const limited = (s) => {
    until = Math.max(until, Date.now() + (s > 0 ? s : 5) * 1e3);
    const n = Math.ceil((until - Date.now()) / 1e3);
    setState("rate-limited", L.rate.replace("{n}", n));
    return sleep(until - Date.now()).then(() => until <= Date.now() + 50 && setState("rate-limited"));
  };
  // Retries `fn` through network trouble, 5xx and 429; throws other errors to the caller.
  const persist = async (fn) => {
    for (let n = 0; ; n++) {
      try { const r = await fn(); setState("unreachable"); return r; }
      catch (e) {
        if (e.status === 429) { await limited(e.after); continue; }
        if (!e.net && e.status < 500) throw e;
        setState("unreachable", L.unreachable);
        await backoff(n);
      }
    }
  };

  // ---- the log ----
  const byId = new Map();
  let gen = 0; // a conversation generation; an expired conversation stays visible, read-only
  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  const place = (el, seq) => {
    el._seq = seq;
    log.insertBefore(el, [...log.children].find((c) => c._gen === gen && c._seq > seq) || typing);
  };
  const addCopy = (body) => body.querySelectorAll("pre").forEach((p) => {
    const b = h("button", "copy", { type: "button" }, L.copy), wrap = h("div", "code");
    p.tabIndex = 0;
    p.replaceWith(wrap);
    wrap.append(b, p);
    b.onclick = () => Promise.resolve()
      .then(() => navigator.clipboard.writeText(p.textContent))
      .then(() => { b.textContent = L.copied; setTimeout(() => (b.textContent = L.copy), 2e3); },
        () => getSelection().selectAllChildren(p));
  });
  const draw = (m, quiet) => {
    if (!/^(user|assistant|system|welcome)$/.test(m.role)) return;
    let el = byId.get(m.id) || (m.client_id && byId.get(m.client_id));
    if (el && el._rev > (m.rev || 0)) return; // an older state than the one shown
    const stick = atBottom(), fresh = !el, was = el && el.dataset.status;
    if (fresh) { el = h("div", "msg", {}, h("div", "body", { dir: "auto" })); el._gen = gen; }
    if (m.client_id && m.client_id !== m.id) byId.delete(m.client_id);
    byId.set(m.id, el);
    el._rev = m.rev || 0;
    Object.assign(el.dataset, { role: m.role, status: m.status || "complete", id: m.id });
    const seq = m.seq == null ? Infinity : m.seq;
    if (fresh || el._seq !== seq) place(el, seq);
    const body = el.firstChild, text = m.text || "";
    if (m.role === "assistant" && m.status === "failed") { body.textContent = m.error || L.failed; body._html = null; }
    else if (m.role === "assistant" && m.html != null) {
      if (body._html !== m.html) { body.innerHTML = body._html = m.html; addCopy(body); }
    } else body.textContent = text;
    body.hidden = m.role === "user" && !text;
    if ((m.attachments || []).length) {
      body.after((el._a = el._a || h("div", "attachments")));
      el._a.replaceChildren(...m.attachments.map((a) =>
        h("span", "attachment", { title: a.filename + " · " + size(a.size) }, svg(clip), h("bdi", "", {}, a.filename), h("span", "file-size", {}, size(a.size)))));
    }
    el.hidden = m.role === "assistant" && m.status === "streaming" && !text;
    if (m.created_at) {
      const d = new Date(m.created_at);
      const t = el._t || (el._t = el.appendChild(h("time", "time")));
      t.dateTime = d.toISOString();
      t.textContent = tfmt.format(d);
    }
    if (stick) log.scrollTop = log.scrollHeight;
    if (quiet) return;
    if (was !== m.status) emit("message", m);
    // An agent is working on it, so one is online, whatever the last status said.
    if (!online && (m.status === "processing" || (m.role === "assistant" && m.status !== "failed"))) setOnline(true);
  };
  const refresh = () => {
    let busy = false, any = false;
    for (const { dataset: { role, status } } of byId.values()) {
      if (role === "user" || role === "assistant") any = true;
      if (status === "processing" || status === "streaming" || (online && /^(sending|queued)$/.test(status))) busy = true;
    }
    const stick = atBottom();
    typing.hidden = !busy;
    chips.hidden = any || !chips.firstChild;
    if (stick) log.scrollTop = log.scrollHeight;
  };
  const live = (m) => { draw(m); refresh(); };

  // ---- transport: SSE first, long-poll as the fallback ----
  let ctl;
  const follow = () => {
    const t = opt("transport");
    ctl = new AbortController();
    (t === "poll" ? poll : sse)(ctl.signal, t === "sse");
  };
  async function poll(sig) {
    A.transport = "poll";
    for (let n = 0; !sig.aborted; ) {
      try {
        const r = await call("GET", `/sessions/${S.session_id}/messages?after=${cursor}&wait=25`, null, sig);
        if (sig.aborted) return;
        n = 0;
        setState("unreachable");
        r.messages.forEach((m) => draw(m));
        cursor = Math.max(cursor, r.cursor);
        setOnline(r.agent_online);
      } catch (e) {
        if (sig.aborted) return;
        if (gone(e)) return expire();
        if (e.status === 429) await limited(e.after);
        else { setState("unreachable", L.unreachable); await backoff(n++); }
      }
    }
  }
  async function sse(sig, forced) {
    A.transport = "sse";
    for (let fails = 0, n = 0; !sig.aborted; ) {
      let got = false, stale = false, err, timer;
      const c = new AbortController(), stop = () => c.abort();
      // No event within 4 s: something (a buffering proxy) holds the stream back. Silence for
      // 45 s after that (keep-alives come every 15 s): the connection is dead.
      const watch = () => { clearTimeout(timer); timer = setTimeout(() => { stale = !got; c.abort(); }, got ? 45e3 : 4e3); };
      sig.addEventListener("abort", stop);
      watch();
      try {
        const hd = { Accept: "text/event-stream" };
        if (cursor) hd["Last-Event-ID"] = String(cursor);
        const r = await req(`/sessions/${S.session_id}/events`, { headers: hd, signal: c.signal });
        const rd = r.body.getReader(), dec = new TextDecoder();
        let buf = "", ev = {};
        for (;;) {
          const { value, done } = await rd.read();
          if (done) break;
          watch();
          const lines = (buf += dec.decode(value, { stream: true })).split(/\r?\n|\r/);
          buf = lines.pop();
          for (const line of lines) {
            if (!line) {
              if (ev.data != null) {
                if (!got) { got = true; fails = n = 0; setState("unreachable"); watch(); }
                const d = JSON.parse(ev.data);
                if (ev.event === "status") setOnline(d.agent_online);
                else if (ev.event === "message") { live(d); if (+ev.id > cursor) cursor = +ev.id; }
              }
              ev = {};
            } else if (line[0] !== ":") {
              const i = line.indexOf(":"), f = i < 0 ? line : line.slice(0, i), v = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
              ev[f] = f === "data" && ev.data != null ? ev.data + "\n" + v : v;
            }
          }
        }
      } catch (e) { err = e; }
      finally { clearTimeout(timer); sig.removeEventListener("abort", stop); }
      if (sig.aborted) return;
      if (err && gone(err)) return expire();
      if (err && err.status === 429) { await limited(err.after); continue; }
      if (!forced && (stale || (!got && ++fails >= 2))) return poll(sig);
      if (!got) setState("unreachable", L.unreachable);
      await backoff(n++);
    }
  }

  // ---- sessions ----
  let ready, isReady;
  const unready = () => (ready = new Promise((r) => (isReady = r)));
  unready();
  const storage = () => (cfg.persistence === "local" ? localStorage : sessionStorage);
  const store = (v) => { try { v ? storage().setItem(KEY, v) : storage().removeItem(KEY); } catch {} };
  const stored = () => { try { return storage().getItem(KEY); } catch {} };
  let cfg = {};
  async function connect(fresh) {
    if (ctl) ctl.abort();
    const body = {
      resume_token: (!fresh && stored()) || undefined, locale, fresh: fresh > 1 || undefined,
      page_url: bubble ? location.href : document.referrer || location.href,
      page_title: bubble ? document.title : undefined, referrer: document.referrer || undefined,
    };
    if (identity) body.identity_token = identity;
    let s;
    for (;;) {
      try { s = await persist(() => call("POST", `/interfaces/${slug}/sessions`, body)); break; }
      catch (e) {
        // An optional field refused (identity_not_configured, say): go on without it, anonymously.
        // Anything else (identity_required, invalid_identity, …): say so, and stop.
        const k = e.code === "identity_not_configured" ? "identity_token" : "locale";
        if (e.status !== 422 || !body[k]) return setState("error", e.msg);
        delete body[k];
        if (!body.identity_token) identity = null;
      }
    }
    if (S && S.session_id !== s.session_id) clear(); // identify() switched visitor
    S = s;
    setState("error");
    store(s.resume_token);
    cursor = s.cursor || 0;
    (s.messages || []).forEach((m) => draw(m, 1));
    refresh();
    log.scrollTop = log.scrollHeight;
    isReady();
    follow();
  }
  let renewing;
  // Uploads belong to a session: a new one gets the pending files again.
  const reset = () => { if (ctl) ctl.abort(); store(); S = null; unready(); setState("error"); files.forEach((c) => c.st !== "failed" && upload(c)); };
  // The session is gone: keep what is shown as read-only history and start a new conversation.
  const expire = () => renewing || (renewing = (async () => {
    reset();
    const waiting = [...byId.values()].filter((el) => el.dataset.status === "sending");
    byId.clear();
    gen++;
    log.insertBefore(h("div", "divider", { role: "separator" }, L.ended), typing);
    waiting.forEach((el) => { el._gen = gen; byId.set(el.dataset.id, el); place(el, Infinity); });
    setState("expired", L.expired);
    await connect(true);
    renewing = null;
  })());
  const clear = () => { byId.clear(); gen++; log.replaceChildren(typing); welcome(); };
  newBtn.onclick = () => {
    reset();
    setState("expired");
    clear();
    refresh();
    connect(2); // 2: new even when the signed-in visitor has an active session
    input.focus();
  };
  const welcome = () => cfg.welcome_message && draw({ id: "welcome", role: "welcome", text: cfg.welcome_message, seq: -1 }, 1);

  async function send(text, att = []) {
    text = String(text == null ? "" : text).trim();
    if (!text && !att.length) return;
    const cid = "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10), a = att.map((c) => c.a);
    draw({ id: cid, client_id: cid, role: "user", text, attachments: a, status: "sending", created_at: new Date().toISOString() });
    log.scrollTop = log.scrollHeight;
    refresh();
    setState("expired");
    for (let n = 0; ; ) {
      await ready;
      try {
        const r = await call("POST", `/sessions/${S.session_id}/messages`, { client_id: cid, text, context, attachments: a.length ? a.map((x) => x.id) : undefined });
        setState("unreachable");
        setState("error");
        return live(r.message);
      } catch (e) {
        if (gone(e) && !e.net) await expire();
        else if (e.status === 429) await limited(e.after);
        else if (e.status < 500) {
          // Refused for good: take the bubble back and give the text back to edit.
          const el = byId.get(cid);
          if (el) { el.remove(); byId.delete(cid); }
          if (!input.value) input.value = text;
          att.forEach((c) => { files.push(c); box.append(c.el); if (e.code === "invalid_attachments") upload(c); });
          sync();
          setState("error", e.msg);
          return refresh();
        } else { setState("unreachable", L.unreachable); await backoff(n++); }
      }
    }
  }
  const grow = () => {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, 160) + "px";
  };
  const submit = () => {
    const t = input.value, att = files.filter((c) => c.st === "ready");
    if (sendBtn.disabled || (!t.trim() && !att.length)) return;
    input.value = "";
    grow();
    att.forEach(unpend);
    send(t, att);
  };
  input.addEventListener("input", grow);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  sendBtn.onclick = () => { submit(); input.focus(); };

  // ---- attachments: checked against the limits, uploaded as soon as chosen, sent with the next message ----
  let up = null, V = {};
  const files = []; // pending: {f: File, el, p: progress, z: size or error, st, a: the bridge's attachment, t, x}
  const fill = (s, f) => s.replace(/{(\w+)}/g, (_, k) => (k === "f" ? f : V[k]));
  const size = (n) => {
    const [u, d] = n < 1024 ? ["byte", 1] : n < 1048576 ? ["kilobyte", 1024] : ["megabyte", 1048576]; // as the bridge counts its limit
    return new Intl.NumberFormat(panel.lang, { style: "unit", unit: u, maximumFractionDigits: 1 }).format(n / d);
  };
  const sync = () => { box.hidden = !files.length; sendBtn.disabled = files.some((c) => c.st === "uploading"); };
  const mark = (c, st, msg) => {
    c.st = c.el.dataset.state = st;
    c.p.hidden = st !== "uploading";
    if (msg) { c.z.textContent = msg.replace(c.f.name + ": ", ""); setState("error", msg.includes(c.f.name) ? msg : c.f.name + ": " + msg); }
    sync();
  };
  async function upload(c) {
    const t = (c.t = {});
    if (c.x) c.x.abort();
    mark(c, "uploading");
    c.p.value = 0;
    await ready;
    if (c.t !== t) return;
    const x = (c.x = new XMLHttpRequest()), fd = new FormData();
    fd.append("file", c.f);
    x.open("POST", `${API}/sessions/${S.session_id}/attachments`);
    x.setRequestHeader("Authorization", "Bearer " + S.session_token);
    x.upload.onprogress = (e) => (c.p.value = e.loaded / e.total || 0);
    x.onloadend = () => {
      if (c.t !== t) return;
      let r = {};
      try { r = JSON.parse(x.responseText); } catch {}
      const e = r.error || {};
      if (x.status === 201) { c.a = r.attachment; mark(c, "ready"); }
      else if (gone({ status: x.status, code: e.code }) && e.code !== "route_not_found") expire();
      else mark(c, "failed", e.message || L.upfail);
    };
    x.send(fd);
  }
  const unpend = (c) => { c.t = 0; if (c.x) c.x.abort(); files.splice(files.indexOf(c), 1); c.el.remove(); sync(); };
  const add = (list) => {
    const errs = [];
    for (const f of list) {
      const e = files.length >= up.max_files ? L.many : f.size > up.max_mb * 1048576 ? L.big
        : !(up.allowed_types || []).includes(f.type) ? L.type : "";
      if (e) { errs.push(fill(e, f.name)); continue; }
      const c = { f, p: h("progress", "", { max: 1, "aria-label": fill(L.upl, f.name) }), z: h("span", "file-size", {}, size(f.size)) };
      const x = h("button", "file-remove", { type: "button", "aria-label": fill(L.rm, f.name), title: fill(L.rm, f.name) }, svg("M6 6l12 12M18 6 6 18"));
      x.onclick = () => { if (c.st === "failed") setState("error"); unpend(c); input.focus(); };
      c.el = h("div", "file-chip", {}, h("span", "file-name", { dir: "auto", title: f.name }, f.name), c.z, c.p, x);
      files.push(c);
      box.append(c.el);
      upload(c);
    }
    setState("error", errs.join(" "));
  };
  attachBtn.onclick = () => fileIn.click();
  fileIn.onchange = () => { add(fileIn.files); fileIn.value = ""; };
  panel.ondragover = (e) => { if (up && e.dataTransfer.types.includes("Files")) { e.preventDefault(); hint.hidden = false; } };
  hint.ondragleave = () => (hint.hidden = true);
  panel.ondrop = (e) => { if (!up) return; e.preventDefault(); hint.hidden = true; add(e.dataTransfer.files); };
  input.addEventListener("paste", (e) => { const f = e.clipboardData && e.clipboardData.files; if (up && f && f.length) { e.preventDefault(); add(f); } });

  // ---- configuration ----
  const ink = (c) => {
    // Black or white, whichever reads better on the color (WCAG relative luminance).
    const m = /#([0-9a-f]{6}|[0-9a-f]{3})\b/i.exec(c || "");
    if (!m) return;
    const x = m[1].length === 3 ? m[1].replace(/./g, "$&$&") : m[1];
    const lum = [0, 2, 4].reduce((s, i, j) => {
      const v = parseInt(x.substr(i, 2), 16) / 255;
      return s + [0.2126, 0.7152, 0.0722][j] * (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    }, 0);
    return 1.05 / (lum + 0.05) >= (lum + 0.05) / 0.05 ? "#fff" : "#111";
  };
  const isColor = (c) => typeof c === "string" && CSS.supports("color", c);
  const isCover = (c) => isColor(c) || (/^(repeating-)?(linear|radial|conic)-gradient\(/i.test(c) && !/url\(/i.test(c) && CSS.supports("background-image", c));
  const prop = (k, v) => v != null && v !== "" && wrap.style.setProperty("--airlock-" + k, v);
  function apply(c) {
    cfg = c;
    const a = c.appearance || {}, ln = c.launcher || {};
    pickLocale(c.locale);
    const primary = isColor(a.primary_color) ? a.primary_color : null, cover = isCover(a.cover) ? a.cover : null;
    prop("primary", primary);
    prop("on-primary", ink(primary));
    prop("cover", cover);
    prop("on-cover", cover ? ink(cover) || "#fff" : ink(primary));
    if (a.radius >= 0) prop("radius", Math.min(+a.radius, 28) + "px");
    if (a.font) prop("font", a.font + ", system-ui, sans-serif");
    host.dataset.theme = /^(dark|auto)$/.test(a.theme) ? a.theme : "light";
    host.dataset.position = ln.position === "bottom-left" ? "left" : "right";
    title.textContent = c.title || "";
    desc.textContent = c.description || "";
    desc.hidden = !c.description;
    panel.setAttribute("aria-label", c.title || L.log);
    if (!bubble && c.title) document.title = c.title;
    icon.hidden = !a.icon;
    if (a.icon) icon.replaceChildren(/^(https:|data:image\/)/i.test(a.icon) ? h("img", "", { src: a.icon, alt: "" }) : a.icon);
    if (ln.icon) lIcon.replaceChildren(ln.icon);
    lLabel.textContent = ln.label || "";
    lLabel.hidden = !ln.label;
    if (ln.label) launcher.setAttribute("aria-label", (launcher.title = ln.label)); // the name holds the visible label
    input.placeholder = c.placeholder || L.ph;
    const u = c.uploads, ty = (u && u.allowed_types) || [];
    up = u && u.enabled ? u : null;
    attachBtn.hidden = !up;
    V = { n: u && u.max_files, mb: u && u.max_mb, t: ty.map((t) => (t.split(/[/+]/)[1] || t).replace("plain", "txt").replace(/^(x-|vnd\.)/, "").toUpperCase()).join(", ") };
    fileIn.multiple = V.n > 1;
    fileIn.accept = ty.join(",");
    attachBtn.title = fill(L.lim);
    hint.textContent = L.drop + "\n" + attachBtn.title;
    chips.replaceChildren(...(c.suggested_prompts || []).map((p) => {
      const b = h("button", "chip", { type: "button", dir: "auto" });
      if (p.icon) b.append(h("span", "chip-icon", { "aria-hidden": "true" }, p.icon));
      b.append(p.text);
      b.onclick = () => { send(p.text); input.focus(); };
      return b;
    }));
    welcome();
    setOnline(c.agent_online);
  }
  async function start() {
    let c;
    try { c = await persist(() => call("GET", "/interfaces/" + encodeURIComponent(slug))); }
    catch (e) {
      console.warn("Airlock:", e.msg);
      if (bubble) return;
      title.textContent = L.gone;
      composer.hidden = true;
      return setState("error", e.status === 404 ? L.gone : e.msg);
    }
    apply(c);
    if (bubble) reveal();
    if ((c.launcher || {}).open || opt("open") === "true") setOpen(true);
    connect();
  }
  start();
  if (pre && Array.isArray(pre.q)) pre.q.forEach(([m, ...a]) => A[m] && A[m](...a));
})();
