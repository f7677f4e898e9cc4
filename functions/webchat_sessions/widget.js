/*
 * threadline web chat widget: one file, no dependencies.
 *
 *   <script src="https://API/webchat/v1/widget.js" defer
 *           data-name="Ada" data-email="ada@example.com" data-user-hash="..."></script>
 *
 * Options (data- attributes on the script tag, all optional): data-api (default: the
 * script's own origin), data-name, data-email, data-external-id, data-user-hash
 * (hex HMAC-SHA256 of the email or external id, computed by the site's backend),
 * data-title, data-open="true" (start opened).
 *
 * Protocol: docs/channels.md (Web chat). Every text is put on the page with
 * textContent, never as HTML.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.threadlineChat) return;
  var opt = script.dataset || {};
  var api = (opt.api || new URL(script.src, location.href).origin).replace(/\/$/, "");
  var KEY = "threadline-chat:" + api;
  var saved = load();
  var ws = null;
  var backoff = 1000;
  var timer = null;
  var outbox = [];          // frames not yet acknowledged (re-sent after a reconnect)
  var shown = {};           // message ids on the page
  var nextCursor = null;
  var ui = build();

  function load() {
    try { return JSON.parse(localStorage.getItem(KEY) || "{}") || {}; } catch (e) { return {}; }
  }
  function save() {
    try { localStorage.setItem(KEY, JSON.stringify(saved)); } catch (e) { /* private mode */ }
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var name in attrs) node.setAttribute(name, attrs[name]);
    if (text != null) node.textContent = text;
    return node;
  }
  function randomId() {
    var bytes = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // ------------------------------------------------------------------ the page
  function build() {
    var style = el("style", {}, [
      "#threadline-chat{position:fixed;right:16px;bottom:16px;z-index:2147483000;font:14px/1.4 system-ui,sans-serif;color:#111}",
      "#threadline-chat button{font:inherit;cursor:pointer}",
      "#threadline-chat .tl-launch{border:0;border-radius:24px;padding:10px 18px;background:#1f4fd6;color:#fff}",
      "#threadline-chat .tl-panel{width:320px;max-width:calc(100vw - 32px);height:420px;display:flex;flex-direction:column;background:#fff;border:1px solid #bbb;border-radius:8px;box-shadow:0 4px 16px rgba(0,0,0,.2)}",
      "#threadline-chat .tl-panel[hidden]{display:none}",
      "#threadline-chat header{display:flex;justify-content:space-between;align-items:center;padding:8px 12px;background:#1f4fd6;color:#fff;border-radius:8px 8px 0 0}",
      "#threadline-chat header button{background:none;border:0;color:#fff;font-size:18px}",
      "#threadline-chat ol{flex:1;overflow-y:auto;margin:0;padding:8px 12px;list-style:none}",
      "#threadline-chat li{margin:6px 0;padding:6px 10px;border-radius:12px;max-width:85%;white-space:pre-wrap;word-wrap:break-word}",
      "#threadline-chat li.tl-mine{margin-left:auto;background:#e3ebff}",
      "#threadline-chat li.tl-theirs{background:#f1f1f1}",
      "#threadline-chat li.tl-pending{opacity:.6}",
      "#threadline-chat .tl-sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}",
      "#threadline-chat .tl-status{min-height:1.4em;padding:0 12px;color:#a00;font-size:12px}",
      "#threadline-chat form{display:flex;gap:6px;padding:8px;border-top:1px solid #ddd}",
      "#threadline-chat textarea{flex:1;resize:none;font:inherit;padding:6px}",
      "#threadline-chat :focus-visible{outline:2px solid #f5a623;outline-offset:2px}"
    ].join("\n"));
    var root = el("div", { id: "threadline-chat" });
    var launch = el("button", { type: "button", "class": "tl-launch", "aria-expanded": "false",
      "aria-controls": "threadline-chat-panel" }, opt.title || "Chat with us");
    var panel = el("section", { id: "threadline-chat-panel", "class": "tl-panel", role: "dialog",
      "aria-labelledby": "threadline-chat-title" });
    panel.hidden = true;
    var header = el("header");
    header.appendChild(el("h2", { id: "threadline-chat-title", style: "margin:0;font-size:15px" }, opt.title || "Chat with us"));
    var close = el("button", { type: "button", "aria-label": "Close chat" }, "\u00d7");
    header.appendChild(close);
    var more = el("button", { type: "button", "class": "tl-more", hidden: "" }, "Earlier messages");
    var log = el("ol", { id: "threadline-chat-log", role: "log", "aria-live": "polite",
      "aria-label": "Conversation", tabindex: "0" });
    var status = el("div", { "class": "tl-status", role: "status", id: "threadline-chat-status" });
    var form = el("form", { "aria-label": "Send a message" });
    var label = el("label", { "for": "threadline-chat-input", "class": "tl-sr" }, "Your message");
    var input = el("textarea", { id: "threadline-chat-input", rows: "2", maxlength: "4096",
      placeholder: "Write a message\u2026", autocomplete: "off" });
    var send = el("button", { type: "submit" }, "Send");
    form.appendChild(label); form.appendChild(input); form.appendChild(send);
    panel.appendChild(header); panel.appendChild(more); panel.appendChild(log);
    panel.appendChild(status); panel.appendChild(form);
    root.appendChild(style); root.appendChild(launch); root.appendChild(panel);
    document.body.appendChild(root);

    function setOpen(open) {
      panel.hidden = !open;
      launch.hidden = open;
      launch.setAttribute("aria-expanded", String(open));
      if (open) { input.focus(); start(); } else { launch.focus(); }
    }
    launch.addEventListener("click", function () { setOpen(true); });
    close.addEventListener("click", function () { setOpen(false); });
    panel.addEventListener("keydown", function (e) { if (e.key === "Escape") setOpen(false); });
    input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); }
    });
    form.addEventListener("submit", function (e) { e.preventDefault(); submit(); });
    more.addEventListener("click", function () { frame({ action: "history", before: nextCursor }); });
    function submit() {
      var text = input.value.trim();
      if (!text) return;
      input.value = "";
      sendText(text);
    }
    if (opt.open === "true") setTimeout(function () { setOpen(true); }, 0);
    return { log: log, status: status, more: more, setOpen: setOpen };
  }

  function say(text) { ui.status.textContent = text || ""; }

  function textOf(message) {
    return (message.parts || []).map(function (p) {
      if (p.type === "text") return p.text;
      if (p.type === "media") return "[" + (p.filename || p.content_type || "attachment") + "]";
      return "";
    }).filter(Boolean).join("\n");
  }

  // One <li> per message, in order of id (ULIDs sort by time); text via textContent.
  function render(message, pendingId) {
    var id = message.id;
    var node = (id && shown[id]) || (pendingId && shown[pendingId]);
    var mine = message.direction === "inbound";
    if (!node) {
      node = el("li");
      node.appendChild(el("span", { "class": "tl-sr" }, mine ? "You: " : "Support: "));
      node.appendChild(el("span", { "class": "tl-text" }));
      var after = null;
      var items = ui.log.children;
      for (var i = 0; i < items.length; i++) {
        var other = items[i].getAttribute("data-message-id");
        if (id && other && other.indexOf("pending:") !== 0 && other > id) { after = items[i]; break; }
      }
      ui.log.insertBefore(node, after);
    }
    node.className = mine ? "tl-mine" : "tl-theirs";
    node.querySelector(".tl-text").textContent = textOf(message);
    if (id) {
      if (pendingId) delete shown[pendingId];
      shown[id] = node;
      node.setAttribute("data-message-id", id);
      node.setAttribute("data-status", message.status || "");
    }
    if (!mine && id && message.status !== "read") markRead(id);
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  function markRead(id) {
    if (document.visibilityState === "hidden") return;
    frame({ action: "read", message_id: id });
  }

  function sendText(text) {
    var clientId = randomId();
    var pendingId = "pending:" + clientId;
    var node = el("li", { "class": "tl-mine tl-pending", "data-message-id": pendingId });
    node.appendChild(el("span", { "class": "tl-sr" }, "You: "));
    node.appendChild(el("span", { "class": "tl-text" }, text));
    ui.log.appendChild(node);
    shown[pendingId] = node;
    ui.log.scrollTop = ui.log.scrollHeight;
    var f = { action: "send", client_message_id: clientId, text: text };
    outbox.push(f);
    frame(f);
  }

  function frame(document_) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(document_));
  }

  function onFrame(event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    if (data.type === "ack") {
      outbox = outbox.filter(function (f) { return f.client_message_id !== data.client_message_id; });
      var node = shown["pending:" + data.client_message_id];
      if (node) {
        node.classList.remove("tl-pending");
        delete shown["pending:" + data.client_message_id];
        if (!shown[data.message_id]) {
          shown[data.message_id] = node;
          node.setAttribute("data-message-id", data.message_id);
        } else {
          node.parentNode.removeChild(node);
        }
      }
      say("");
    } else if (data.type === "message" && data.message) {
      render(data.message);
    } else if (data.type === "history") {
      (data.messages || []).slice().reverse().forEach(function (m) { render(m); });
      nextCursor = data.next_cursor || null;
      ui.more.hidden = !nextCursor;
    } else if (data.type === "error") {
      say(data.code === "rate_limited" ? "You are sending too fast; wait a moment." : (data.message || "Something went wrong."));
    }
  }

  // ------------------------------------------------------------------ session and socket
  function session() {
    var body = {};
    if (saved.visitor_id) body.visitor_id = saved.visitor_id;
    if (opt.name) body.name = opt.name;
    if (opt.email) body.email = opt.email;
    if (opt.externalId) body.external_id = opt.externalId;
    if (opt.userHash) body.user_hash = opt.userHash;
    var headers = { "Content-Type": "application/json" };
    if (saved.token) headers.Authorization = "Bearer " + saved.token;
    return fetch(api + "/webchat/v1/sessions", { method: "POST", headers: headers, body: JSON.stringify(body) })
      .then(function (r) {
        if (!r.ok) throw new Error("session " + r.status);
        return r.json();
      })
      .then(function (s) {
        saved = { visitor_id: s.visitor_id, token: s.token, websocket_url: s.websocket_url,
                  expires: Date.parse(s.expires_at) };
        save();
      });
  }

  function fresh() {
    return saved.token && saved.websocket_url && saved.expires - Date.now() > 60000;
  }

  var started = false;
  function start() {
    if (started) return;
    started = true;
    connect();
  }

  function connect() {
    clearTimeout(timer);
    (fresh() ? Promise.resolve() : session()).then(open, retry);
  }

  function open() {
    var opened = false;
    var url = saved.websocket_url + (saved.websocket_url.indexOf("?") < 0 ? "?" : "&") +
      "token=" + encodeURIComponent(saved.token);
    ws = new WebSocket(url);
    ws.onopen = function () {
      opened = true;
      backoff = 1000;
      say("");
      frame({ action: "history" });
      outbox.forEach(frame);
    };
    ws.onmessage = onFrame;
    ws.onclose = function () {
      ws = null;
      // Refused at the handshake: the token may be stale; ask for a new session.
      if (!opened) saved.expires = 0;
      retry();
    };
  }

  function retry() {
    say("Reconnecting\u2026");
    var wait = backoff + Math.random() * backoff / 2;
    backoff = Math.min(backoff * 2, 30000);
    timer = setTimeout(connect, wait);
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible") return;
    Object.keys(shown).forEach(function (id) {
      var node = shown[id];
      if (node.className.indexOf("tl-theirs") >= 0 && node.getAttribute("data-status") !== "read") {
        node.setAttribute("data-status", "read");
        markRead(id);
      }
    });
  });

  window.threadlineChat = { open: function () { ui.setOpen(true); }, close: function () { ui.setOpen(false); } };
})();
