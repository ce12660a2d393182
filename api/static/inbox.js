/* touchflow onsite inbox: a bell with the unread count and a dropdown of messages, kept live over SSE.
 *
 *   <script src="https://touchflow.example/inbox.js" async
 *           data-customer="CUSTOMER_ID" data-token="HEX_HMAC_SHA256_OF_THE_ID"></script>
 *
 * Optional: data-api (the touchflow API's URL; default: where this script came from) and data-target (a CSS
 * selector of the element to put the bell in; default: a fixed corner of the page).
 * An anonymous visitor: leave data-customer out and the inbox is that of analytics.js's anonymous id
 * (`anon:` + the `ajs_anonymous_id` it keeps), so what a journey put there while the visitor was anonymous
 * is theirs again once they log in; data-token is then the token of `anon:<that id>`, which the site's
 * backend mints from the `ajs_anonymous_id` cookie the page request carries.
 * The token travels in request headers only, never in a URL: the live stream opens with a short-lived ticket.
 * No dependencies. Message text is only ever set as textContent, and links must be http(s).
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) return;
  var config = script.dataset;
  var api = (config.api || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  var customer = config.customer || anonymousCustomer();
  var token = config.token;
  if (!customer || !token) {
    console.warn("touchflow inbox: set data-customer and data-token on the script tag");
    return;
  }

  // analytics.js keeps its anonymous id JSON-encoded in localStorage and in a cookie of the same name.
  function anonymousCustomer() {
    var stored = null;
    try {
      stored = window.localStorage.getItem("ajs_anonymous_id");
    } catch (e) {
      stored = null; // storage blocked: the cookie may still hold it
    }
    if (!stored) {
      var match = document.cookie.match(/(?:^|;\s*)ajs_anonymous_id=([^;]*)/);
      stored = match ? decodeURIComponent(match[1]) : null;
    }
    if (!stored) return null;
    try {
      stored = JSON.parse(stored);
    } catch (e) {
      // written plain, not JSON-encoded: take it as it is
    }
    return typeof stored === "string" && stored ? "anon:" + stored : null;
  }
  var PAGE = 20;
  var headers = { "X-Touchflow-Customer": customer, "X-Touchflow-Token": token };

  var state = { items: new Map(), nextCursor: null, unread: 0, open: false, newest: 0 };

  // -- DOM helpers: elements and text only, never HTML strings ----------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) {
      node.append(child);
    });
    return node;
  }

  function bellIcon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "22");
    svg.setAttribute("height", "22");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute(
      "d",
      "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 " +
        "0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2z"
    );
    path.setAttribute("fill", "currentColor");
    svg.append(path);
    return svg;
  }

  function safeUrl(value) {
    if (!value) return null;
    try {
      var url = new URL(value, location.href);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (error) {
      return null;
    }
  }

  var CSS =
    ":host{all:initial;font:14px/1.4 system-ui,sans-serif;color:#1d2330}" +
    ".tf-root{position:relative;display:inline-block}" +
    ".tf-bell{position:relative;border:0;background:#fff;color:#1d2330;border-radius:50%;width:40px;" +
    "height:40px;cursor:pointer;box-shadow:0 1px 4px rgba(0,0,0,.2)}" +
    ".tf-count{position:absolute;top:-4px;right:-4px;min-width:18px;padding:0 5px;border-radius:9px;" +
    "background:#d92d20;color:#fff;font-size:12px;line-height:18px;box-sizing:border-box}" +
    ".tf-panel{position:absolute;right:0;top:48px;width:320px;max-height:420px;overflow:auto;" +
    "background:#fff;border-radius:8px;box-shadow:0 4px 16px rgba(0,0,0,.2);z-index:2147483647}" +
    ".tf-head{display:flex;justify-content:space-between;align-items:center;padding:10px 12px;" +
    "border-bottom:1px solid #eee}" +
    ".tf-head button,.tf-more{border:0;background:none;color:#2857d6;cursor:pointer;font:inherit}" +
    ".tf-list{list-style:none;margin:0;padding:0}" +
    ".tf-item{border-bottom:1px solid #f2f2f2}" +
    ".tf-entry{display:block;padding:10px 12px;color:inherit;text-decoration:none;cursor:pointer}" +
    ".tf-unread .tf-entry{background:#f3f6ff}" +
    ".tf-title{display:block;font-weight:600}" +
    ".tf-body{display:block;margin-top:2px;white-space:pre-line}" +
    ".tf-time{display:block;margin-top:4px;color:#6b7280;font-size:12px}" +
    ".tf-empty{padding:16px 12px;color:#6b7280;margin:0}" +
    ".tf-more{display:block;width:100%;padding:10px}" +
    "[hidden]{display:none!important}";

  // -- the widget ---------------------------------------------------------------------------------------------
  var host = config.target ? document.querySelector(config.target) : null;
  if (!host) {
    host = el("div", { style: "position:fixed;top:16px;right:16px;z-index:2147483647" });
    document.body.append(host);
  }
  host.setAttribute("data-touchflow-inbox", "");
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  var style = document.createElement("style");
  style.textContent = CSS;

  var count = el("span", { class: "tf-count", hidden: "" });
  var bell = el("button", {
    class: "tf-bell",
    type: "button",
    "aria-label": "Notifications",
    "aria-haspopup": "true",
    "aria-expanded": "false",
  }, [bellIcon(), count]);
  var readAll = el("button", { class: "tf-read-all", type: "button" }, ["Mark all read"]);
  var list = el("ul", { class: "tf-list" });
  var empty = el("p", { class: "tf-empty" }, ["No messages yet"]);
  var more = el("button", { class: "tf-more", type: "button", hidden: "" }, ["Older messages"]);
  var panel = el("div", { class: "tf-panel", role: "region", "aria-label": "Notifications", hidden: "" }, [
    el("div", { class: "tf-head" }, [el("strong", {}, ["Notifications"]), readAll]),
    list,
    empty,
    more,
  ]);
  root.append(style, el("div", { class: "tf-root" }, [bell, panel]));

  // -- talking to the API ---------------------------------------------------------------------------------
  function call(method, path, keepalive) {
    return fetch(api + path, { method: method, headers: headers, mode: "cors", keepalive: !!keepalive }).then(
      function (response) {
        if (!response.ok) throw new Error("touchflow inbox: " + method + " " + path.split("?")[0] + " " + response.status);
        return response.json();
      }
    );
  }

  function report(error) {
    console.warn(String(error && error.message ? error.message : error));
  }

  function setUnread(value) {
    state.unread = Math.max(0, value | 0);
    count.textContent = state.unread > 99 ? "99+" : String(state.unread);
    count.hidden = state.unread === 0;
    bell.setAttribute("aria-label", state.unread ? "Notifications, " + state.unread + " unread" : "Notifications");
  }

  function refreshUnread() {
    return call("GET", "/v1/inbox/unread").then(function (body) {
      setUnread(body.unread);
    }, report);
  }

  function render(message) {
    var url = safeUrl(message.action_url);
    var when = new Date(message.created_at);
    var entry = el(url ? "a" : "div", { class: "tf-entry" }, [
      el("span", { class: "tf-title" }, [String(message.title)]),
      el("span", { class: "tf-body" }, [String(message.body)]),
      el("time", { class: "tf-time", datetime: when.toISOString() }, [when.toLocaleString()]),
    ]);
    if (url) {
      entry.href = url;
      entry.rel = "noopener";
    }
    var item = el("li", { class: "tf-item", "data-id": String(message.id) }, [entry]);
    if (!message.read_at) item.classList.add("tf-unread");
    entry.addEventListener("click", function () {
      markRead(message.id, true);
    });
    return item;
  }

  function add(message, atTop) {
    if (state.items.has(message.id)) return;
    var item = render(message);
    state.items.set(message.id, { message: message, item: item });
    state.newest = Math.max(state.newest, message.id);
    if (atTop) list.prepend(item);
    else list.append(item);
    empty.hidden = true;
  }

  function markRead(id, keepalive) {
    var entry = state.items.get(id);
    if (!entry || entry.message.read_at) return Promise.resolve();
    entry.message.read_at = new Date().toISOString();
    entry.item.classList.remove("tf-unread");
    return call("POST", "/v1/inbox/messages/" + encodeURIComponent(id) + "/read", keepalive).catch(report);
  }

  function markShownRead() {
    var pending = [];
    state.items.forEach(function (entry, id) {
      if (!entry.message.read_at) pending.push(markRead(id));
    });
    if (pending.length) Promise.all(pending).then(refreshUnread);
  }

  function loadPage() {
    var query = "?limit=" + PAGE + (state.nextCursor ? "&cursor=" + encodeURIComponent(state.nextCursor) : "");
    return call("GET", "/v1/inbox/messages" + query).then(function (page) {
      page.messages.forEach(function (message) {
        add(message, false);
      });
      state.nextCursor = page.next_cursor;
      more.hidden = !state.nextCursor;
      if (state.open) markShownRead();
    });
  }

  function setOpen(open) {
    state.open = open;
    panel.hidden = !open;
    bell.setAttribute("aria-expanded", String(open));
    if (open) markShownRead();
  }

  bell.addEventListener("click", function (event) {
    event.stopPropagation();
    setOpen(!state.open);
  });
  panel.addEventListener("click", function (event) {
    event.stopPropagation();
  });
  document.addEventListener("click", function () {
    if (state.open) setOpen(false);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && state.open) setOpen(false);
  });
  more.addEventListener("click", function () {
    loadPage().catch(report);
  });
  readAll.addEventListener("click", function () {
    state.items.forEach(function (entry) {
      entry.message.read_at = entry.message.read_at || new Date().toISOString();
      entry.item.classList.remove("tf-unread");
    });
    call("POST", "/v1/inbox/read-all").then(refreshUnread, report);
  });

  // -- live updates --------------------------------------------------------------------------------------
  // EventSource sends no headers, and a URL ends up in logs: the stream opens with a ticket that expires
  // within a minute, asked for with the headers. Whenever a stream ends (its age, a drop, a refusal),
  // a fresh ticket opens the next one where the last left off, after a pause that grows while it fails.
  var failures = 0;

  function retry() {
    failures += 1;
    setTimeout(listen, Math.min(60000, 2000 * Math.pow(2, failures - 1)));
  }

  function listen() {
    fetch(api + "/v1/inbox/stream-tickets", { method: "POST", headers: headers, mode: "cors" })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          report("touchflow inbox: live updates refused (check data-token)");
          return;
        }
        if (!response.ok) throw new Error("touchflow inbox: POST /v1/inbox/stream-tickets " + response.status);
        return response.json().then(openStream);
      })
      .catch(function () {
        retry();
      });
  }

  function openStream(body) {
    var params = new URLSearchParams({ ticket: body.ticket, after: String(state.newest) });
    var source = new EventSource(api + "/v1/inbox/stream?" + params.toString());
    source.addEventListener("open", function () {
      failures = 0;
    });
    source.addEventListener("message", function (event) {
      var message = JSON.parse(event.data);
      add(message, true);
      if (state.open) markRead(message.id).then(refreshUnread);
    });
    source.addEventListener("unread", function (event) {
      setUnread(JSON.parse(event.data).unread);
    });
    source.addEventListener("error", function () {
      // EventSource would retry with this ticket, expired by then: start over with a fresh one instead.
      source.close();
      retry();
    });
  }

  Promise.all([loadPage(), refreshUnread()])
    .catch(report)
    .then(listen);
})();
