// Live conversation: progressive enhancement only (without it the page works by reloading).
// Opens the user's event socket (/ws/v1/events, the browser's session cookie), resumes from the last
// event the page has seen (?after=, and again after every reconnect), and when a message of this
// conversation is announced, fetches the messages after the last one shown and appends them.
// Messages are built with textContent: nothing a person wrote is ever parsed as HTML.
"use strict";
(function () {
  var list = document.getElementById("messages");
  if (!list || !("WebSocket" in window) || !window.fetch) return;
  var threadId = list.dataset.thread;
  var after = parseInt(list.dataset.after, 10) || 0;
  var lastEvent = parseInt(list.dataset.event, 10) || 0;
  var live = document.getElementById("live-status");
  var statusText = document.getElementById("thread-status");
  var replyBy = document.getElementById("thread-reply-by");
  var delay = 1000;
  var loading = false;
  var pending = false;
  var opened = false;
  var reconnected = false;

  function node(tag, className, text) {
    var element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function render(message) {
    var item = node("li", "message " + message.kind + (message.mine ? " mine" : "") + (message.emergency ? " emergency" : ""));
    item.dataset.position = String(message.position);
    if (message.emergency) item.appendChild(node("h3", "", list.dataset.important));
    var meta = node("p", "meta");
    meta.appendChild(node("strong", "", message.author));
    meta.appendChild(document.createTextNode(" · "));
    var time = node("time", "", message.when);
    time.setAttribute("datetime", message.created_at);
    meta.appendChild(time);
    item.appendChild(meta);
    item.appendChild(node("p", "body", message.body));
    if (message.attachments.length) {
      var files = node("ul", "files");
      files.setAttribute("aria-label", list.dataset.attachments);
      message.attachments.forEach(function (file) {
        var entry = node("li");
        var link = node("a", "", file.name);
        link.href = file.url;
        link.setAttribute("download", "");
        entry.appendChild(link);
        entry.appendChild(document.createTextNode(" (" + file.size_kb + " KB)"));
        files.appendChild(entry);
      });
      item.appendChild(files);
    }
    return item;
  }

  function csrfToken() {
    var field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function markRead() {
    if (document.visibilityState !== "visible") return;
    fetch(list.dataset.read, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" }
    }).catch(function () {});
  }

  function load() {
    if (loading) { pending = true; return; }
    loading = true;
    fetch(list.dataset.since + "?after=" + after, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (data) {
        if (!data) return;
        var added = 0;
        data.messages.forEach(function (message) {
          if (message.position > after) {
            list.appendChild(render(message));
            after = message.position;
            added += 1;
          }
        });
        if (statusText && data.status) statusText.textContent = data.status;
        if (replyBy && !data.waiting) replyBy.hidden = true;
        if (added && data.messages.some(function (message) { return !message.mine; })) markRead();
      })
      .catch(function () {})
      .then(function () {
        loading = false;
        if (pending) { pending = false; load(); }
      });
  }

  function concerns(event) {
    var data = event.data || {};
    return data.thread_id === threadId || event.entity_id === threadId;
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/v1/events?after=" + lastEvent);
    socket.addEventListener("open", function () {
      reconnected = opened;
      opened = true;
      delay = 1000;
      list.dataset.live = "1";
    });
    socket.addEventListener("message", function (message) {
      var data;
      try { data = JSON.parse(message.data); } catch (error) { return; }
      if (data.type === "event") {
        if (data.event.id > lastEvent) lastEvent = data.event.id;
        if (concerns(data.event)) load();
      } else if (data.type === "resumed") {
        if (data.last_id > lastEvent) lastEvent = data.last_id;
        if (reconnected) load();
      } else if (data.type === "access.changed") {
        load();
      }
    });
    socket.addEventListener("close", function (closed) {
      list.dataset.live = "0";
      if (closed.code === 4401 || closed.code === 4403 || closed.code === 4409) {
        if (live) live.textContent = live.dataset.stopped || "";
        return;
      }
      window.setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    });
  }

  connect();
})();
