/* Sastre's web chat widget: a launcher button and a chat panel for any page.

   Embed it with   <script src="https://sastre.example/static/widget.js" defer></script>
   Optional data attributes on that tag:
     data-language="es"          the widget's language (else the page's lang, else the browser's)
     data-user-id / data-user-hash   identity verification: your user id and
                                      hex(HMAC-SHA256(SASTRE_WEBCHAT_IDENTITY_SECRET, user id))

   Plain JavaScript, no build step, no dependencies. Its own words come from the server's message
   catalogue (GET /chat/texts, the widget.* messages in the best language it has), fetched before
   the launcher is shown. Every text is set with textContent, never as HTML: a message is shown
   exactly as written. It talks JSON over one WebSocket to /ws/chat on the server the script came
   from, reconnects with backoff and re-sends what was not acknowledged (the server recognises a
   re-sent message by its id and answers it once).

   On another site, list that site in SASTRE_WEBCHAT_ORIGINS, and let its Content-Security-Policy
   connect to this server (connect-src, for the texts and the socket). */
(function () {
  "use strict";

  var script = document.currentScript;
  var base = new URL(script && script.src ? script.src : "/static/widget.js", document.baseURI);
  var options = script ? script.dataset : {};
  var requested = options.language || document.documentElement.lang || navigator.language || "";

  /* ---- the texts, from the server's catalogue, before anything is shown ----
     There is no built-in copy of them: a widget that cannot reach the server could not chat
     either, so it waits (retrying with backoff) rather than show a launcher to a dead chat. */
  var T; // the widget.* messages without their prefix, templates with {fields}
  var language; // the catalogue's choice for `requested` (its fallback rule), for numbers too
  var MAX_CHARS; // the server's limit: a longer message is refused here, never cut

  function loadTexts(attempt) {
    var url = new URL("/chat/texts", base);
    if (requested) url.searchParams.set("lang", requested);
    fetch(url.href, { credentials: "omit" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (answer) {
        T = answer.texts;
        language = answer.language;
        MAX_CHARS = answer.limit;
      })
      .then(build, function () {
        var delay = Math.min(30000, 1000 * Math.pow(2, attempt)) + Math.floor(Math.random() * 400);
        setTimeout(function () { loadTexts(attempt + 1); }, delay);
      });
  }

  function format(text, values) {
    return text.replace(/\{(\w+)\}/g, function (_, key) { return String(values[key]); });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clientId() {
    // crypto.randomUUID needs a secure context; getRandomValues works on any page.
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function characters(text) {
    return Array.from(text).length; // code points, as the server counts them
  }

  function counted(n) { // the fields of widget.counter and widget.too_long
    return { count: n.toLocaleString(language), limit: MAX_CHARS.toLocaleString(language) };
  }

  /* ---- the stylesheet, unless the page links it already ---- */
  var cssUrl = new URL("widget.css", base).href;
  var linked = Array.prototype.some.call(
    document.querySelectorAll('link[rel="stylesheet"]'),
    function (link) { return link.href === cssUrl; }
  );
  if (!linked) {
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = cssUrl;
    document.head.appendChild(link);
  }

  /* ---- the widget's elements, built once the texts are in ---- */
  var launcher, panel, close, status, log, handoff, form, input, counter, error;

  function build() {
    if (!document.body) { // a script in <head> without `defer`, answered before the body
      document.addEventListener("DOMContentLoaded", build);
      return;
    }
    var root = el("div", "sastre-chat");
    launcher = el("button", "sastre-chat-launcher", T.launcher);
    launcher.type = "button";
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", "sastre-chat-panel");

    panel = el("section", "sastre-chat-panel");
    panel.id = "sastre-chat-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-modal", "false");
    panel.setAttribute("aria-labelledby", "sastre-chat-title");

    var header = el("header", "sastre-chat-header");
    var title = el("h2", "sastre-chat-title", T.title);
    title.id = "sastre-chat-title";
    close = el("button", "sastre-chat-close", "×");
    close.type = "button";
    close.setAttribute("aria-label", T.close);
    header.append(title, close);

    status = el("p", "sastre-chat-status", "");
    status.setAttribute("role", "status");

    log = el("ol", "sastre-chat-log");
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    log.setAttribute("aria-label", T.log);
    log.tabIndex = 0; // scrollable by keyboard

    handoff = el("p", "sastre-chat-handoff", "");
    handoff.setAttribute("role", "status");
    handoff.hidden = true;

    form = el("form", "sastre-chat-form");
    form.noValidate = true;
    var label = el("label", "sastre-chat-label", T.label);
    label.htmlFor = "sastre-chat-input";
    input = el("textarea", "sastre-chat-input");
    input.id = "sastre-chat-input";
    input.rows = 2;
    input.placeholder = T.placeholder;
    input.setAttribute("aria-describedby", "sastre-chat-error sastre-chat-counter");
    counter = el("span", "sastre-chat-counter", format(T.counter, counted(0)));
    counter.id = "sastre-chat-counter";
    error = el("p", "sastre-chat-error", "");
    error.id = "sastre-chat-error";
    error.setAttribute("role", "alert");
    var send = el("button", "sastre-chat-send", T.send);
    send.type = "submit";
    var row = el("div", "sastre-chat-row");
    row.append(input, send);
    form.append(label, row, counter, error);

    panel.append(header, status, log, handoff, form);
    root.append(launcher, panel);
    document.body.appendChild(root);
    listen();
  }

  /* ---- messages ---- */
  var shown = new Map(); // message id -> its <li>
  var pending = new Map(); // client id -> text, until the server echoes it
  // A message the server could not take on its side ("not_delivered": a bot that gave no answer
  // in time, a database gone for a moment) goes again under the same id after a pause, a few
  // times: the server answers an id once, whether or not it had stored it the first time.
  var RESEND_AFTER = [2000, 5000, 15000];
  var resends = new Map(); // client id -> {times: sent again so far, timer: the next one}
  var errorOf = null; // the client id whose refusal the error line shows, if any

  function render(message, state) {
    var existing = shown.get(message.id);
    if (existing) {
      existing.classList.remove("is-pending", "is-failed");
      var note = existing.querySelector(".sastre-chat-state");
      if (note) note.remove();
      return existing;
    }
    var item = el("li", "sastre-chat-message from-" + message.author);
    var who = el("span", "sastre-chat-author", (T["author." + message.author] || T["author.bot"]) + ": ");
    var text = el("span", "sastre-chat-text", message.text);
    item.append(who, text);
    if (message.at) {
      var time = el("time", "sastre-chat-time", new Date(message.at).toLocaleTimeString(language, { hour: "2-digit", minute: "2-digit" }));
      time.dateTime = message.at;
      item.append(time);
    }
    if (state) setState(item, state);
    shown.set(message.id, item);
    log.appendChild(item);
    if (message.choices && message.choices.length) offer(message.choices);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  /* ---- options the bot offers ("Did you mean…?"): quick replies under its message ----
     A click sends the option's label as the visitor's message, as if typed; the server reads it
     against the options it offered. Only the latest offer stands: anything the visitor sends
     (a click or their own words) takes the buttons away. */
  var choices = null; // the <li> holding the buttons on offer, if any

  function offer(labels) {
    withdraw();
    choices = el("li", "sastre-chat-choices");
    var group = el("div", "sastre-chat-choice-group");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", T.choices);
    labels.forEach(function (label) {
      var button = el("button", "sastre-chat-choice", label);
      button.type = "button";
      button.addEventListener("click", function () { say(label); });
      group.appendChild(button);
    });
    choices.appendChild(group);
    log.appendChild(choices);
  }

  function withdraw() {
    if (choices) choices.remove();
    choices = null;
  }

  function setState(item, state) {
    item.classList.remove("is-pending", "is-failed");
    item.classList.add("is-" + state);
    var note = item.querySelector(".sastre-chat-state") || item.appendChild(el("span", "sastre-chat-state"));
    note.textContent = T["state." + state];
  }

  function showError(text, id) {
    error.textContent = text;
    errorOf = text ? id || null : null;
  }

  function showHandoff(text) {
    handoff.textContent = text;
    handoff.hidden = false;
  }

  /* ---- the connection ---- */
  var socket = null;
  var attempt = 0;
  var retryTimer = null;

  function socketUrl() {
    var url = new URL("/ws/chat", base);
    url.protocol = base.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("lang", requested);
    if (options.userId) url.searchParams.set("user_id", options.userId);
    if (options.userHash) url.searchParams.set("user_hash", options.userHash);
    return url.href;
  }

  function transmit(id, text) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "message", id: id, text: text }));
    }
  }

  function resendLater(id, delay) {
    return setTimeout(function () {
      var text = pending.get(id);
      if (text === undefined) return; // answered meanwhile (after a reconnect, say)
      var item = shown.get(id);
      if (item) setState(item, "pending");
      transmit(id, text);
    }, delay);
  }

  function connect() {
    if (socket) return;
    clearTimeout(retryTimer);
    status.textContent = T["status.connecting"];
    socket = new WebSocket(socketUrl());
    socket.addEventListener("open", function () {
      attempt = 0;
      status.textContent = T["status.connected"];
    });
    socket.addEventListener("message", function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "history") {
        log.setAttribute("aria-busy", "true");
        // A message being sent again stays pending (stored is not answered), and goes below
        // with the rest, now rather than when its timer would have sent it.
        frame.messages.forEach(function (m) {
          var item = render(m);
          if (resends.has(m.id)) {
            clearTimeout(resends.get(m.id).timer);
            setState(item, "pending");
          } else {
            pending.delete(m.id);
          }
        });
        log.removeAttribute("aria-busy");
        // Whatever we sent that the server had not stored yet goes again; one that it had
        // stored was in the history above, and a re-send would be answered once anyway.
        pending.forEach(function (text, id) { transmit(id, text); });
      } else if (frame.type === "message") {
        var resend = resends.get(frame.id);
        if (resend) {
          clearTimeout(resend.timer);
          resends.delete(frame.id);
          if (errorOf === frame.id) showError(""); // taken after all: its error is past
        }
        pending.delete(frame.id);
        render(frame);
      } else if (frame.type === "handoff") {
        showHandoff(frame.text);
      } else if (frame.type === "error") {
        if (frame.id && pending.has(frame.id)) {
          var item = shown.get(frame.id);
          if (item) setState(item, "failed");
          var times = resends.has(frame.id) ? resends.get(frame.id).times : 0;
          if (frame.code === "not_delivered" && times < RESEND_AFTER.length) {
            resends.set(frame.id, {
              times: times + 1,
              timer: resendLater(frame.id, RESEND_AFTER[times]),
            });
          } else {
            pending.delete(frame.id);
            resends.delete(frame.id);
          }
        }
        showError(frame.reason, frame.id || null);
      }
    });
    socket.addEventListener("close", function () {
      socket = null;
      var delay = Math.min(30000, 500 * Math.pow(2, attempt)) + Math.floor(Math.random() * 400);
      attempt += 1;
      status.textContent = format(T["status.offline"], { seconds: Math.ceil(delay / 1000) });
      retryTimer = setTimeout(connect, delay);
    });
  }

  function submit() {
    var text = input.value.trim();
    if (!text) {
      showError(T.empty);
      return;
    }
    var n = characters(input.value);
    if (n > MAX_CHARS) {
      showError(format(T.too_long, counted(n)));
      return; // refused, never cut: the visitor decides what to leave out
    }
    showError("");
    say(text);
    input.value = "";
    updateCounter();
  }

  function say(text) {
    withdraw();
    var id = clientId();
    pending.set(id, text);
    render({ id: id, author: "customer", text: text, at: new Date().toISOString() }, "pending");
    transmit(id, text);
    connect();
  }

  function updateCounter() {
    var n = characters(input.value);
    counter.textContent = format(T.counter, counted(n));
    counter.classList.toggle("is-over", n > MAX_CHARS);
  }

  /* ---- opening, closing, keyboard ---- */
  function open() {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    connect();
    input.focus();
  }

  function shut() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  function listen() {
    launcher.addEventListener("click", function () {
      if (panel.hidden) open(); else shut();
    });
    close.addEventListener("click", shut);
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        event.preventDefault();
        shut();
      }
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    });
    input.addEventListener("input", updateCounter);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      submit();
    });
  }

  loadTexts(0);
})();
