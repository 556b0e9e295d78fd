// The live dashboard's only script (served from /static: the CSP allows no inline script).
// Without it the page is a plain table that reloads every 10 s. With it, the page follows
// /api/live (Server-Sent Events): every progress bar, number, estimate and the channels'
// health change in place, and a new alert appears at the top, without reloading.
(function () {
  "use strict";
  var table = document.getElementById("live");
  if (!table || !window.EventSource) return;
  var SEGMENTS = ["delivered", "failed", "superseded", "expired", "sending", "queued"];
  var LEGEND = ["delivered", "sending", "queued", "failed", "superseded", "retrying"];
  var SVG = "http://www.w3.org/2000/svg";
  var state = document.getElementById("livestate");

  function fmt(n) { return Number(n || 0).toLocaleString("en-US"); }
  function node(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setAll(root, key, text) {
    root.querySelectorAll('[data-k="' + key + '"]').forEach(function (e) { e.textContent = text; });
  }

  function channelBlock(name) {
    var div = node("div", "chan");
    div.dataset.channel = name;
    var head = node("div", "chead");
    head.appendChild(node("b", "", name));
    head.appendChild(document.createTextNode(" "));
    var nums = node("span", "nums");
    var d = node("span", "", "0"); d.dataset.k = "delivered";
    var t = node("span", "", "0"); t.dataset.k = "total";
    nums.appendChild(d); nums.appendChild(document.createTextNode(" / ")); nums.appendChild(t);
    head.appendChild(nums);
    div.appendChild(head);
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "bar");
    svg.setAttribute("viewBox", "0 0 1000 14");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    SEGMENTS.forEach(function (k) {
      var r = document.createElementNS(SVG, "rect");
      r.setAttribute("class", "s-" + k);
      r.setAttribute("data-seg", k);
      r.setAttribute("y", "0"); r.setAttribute("height", "14");
      r.setAttribute("x", "0"); r.setAttribute("width", "0");
      svg.appendChild(r);
    });
    div.appendChild(svg);
    var legend = node("div", "legend");
    LEGEND.forEach(function (k) {
      var s = node("span", "l-" + k, "0 " + k);
      s.dataset.n = k;
      legend.appendChild(s);
      legend.appendChild(document.createTextNode(" "));
    });
    div.appendChild(legend);
    var eta = node("div", "eta", "last recipient: ");
    var e = node("span", ""); e.dataset.k = "eta";
    eta.appendChild(e);
    div.appendChild(eta);
    var advice = node("div", "advice"); advice.dataset.k = "advice"; advice.hidden = true;
    div.appendChild(advice);
    return div;
  }

  function updateChannel(div, c) {
    var total = c.total || 1, x = 0;
    SEGMENTS.forEach(function (k) {
      var w = (c[k] || 0) * 1000 / total;
      var r = div.querySelector('rect[data-seg="' + k + '"]');
      if (r) { r.setAttribute("x", x.toFixed(1)); r.setAttribute("width", w.toFixed(1)); }
      x += w;
    });
    div.querySelector("svg.bar").setAttribute("aria-label", c.delivered + " / " + c.total + " delivered");
    setAll(div, "delivered", fmt(c.delivered));
    setAll(div, "total", fmt(c.total));
    div.querySelectorAll("[data-n]").forEach(function (e) {
      var k = e.dataset.n;
      var n = k === "superseded" ? (c.superseded || 0) + (c.expired || 0) : c[k];
      e.textContent = fmt(n) + " " + k;
    });
    setAll(div, "eta", c.eta || "");
    if (c.cost !== null && c.cost !== undefined) setAll(div, "cost", c.cost);
    var advice = div.querySelector('[data-k="advice"]');
    advice.textContent = c.advice || "";
    advice.hidden = !c.advice;
  }

  function rowFor(a) {
    var tr = table.querySelector('tr[data-alert="' + a.id + '"]');
    if (tr) return tr;
    var empty = table.querySelector("tr.empty");
    if (empty) empty.remove();
    tr = node("tr", "p" + a.priority);
    tr.dataset.alert = String(a.id);
    var first = node("td"); first.dataset.label = "#";
    var link = node("a", "", String(a.id)); link.href = "/alerts/" + a.id + "/deliveries";
    var tl = node("a", "", "timeline"); tl.href = "/alerts/" + a.id + "/timeline";
    first.appendChild(link); first.appendChild(document.createTextNode(" · ")); first.appendChild(tl);
    var jst = new Date(Date.parse(a.received_at) + 9 * 3600 * 1000).toISOString();  // as the server writes it
    var when = node("td", "", jst.slice(5, 10) + " " + jst.slice(11, 19));
    when.dataset.label = "Received";
    var what = node("td"); what.dataset.label = "Alert";
    what.appendChild(node("span", "tag", a.source));
    what.appendChild(document.createTextNode(" "));
    what.appendChild(node("b", "", a.event));
    what.appendChild(document.createTextNode(" "));
    var st = node("span", "muted", a.state); st.dataset.k = "state";
    what.appendChild(st);
    what.appendChild(node("br"));
    what.appendChild(node("span", "muted", a.headline));
    var chans = node("td", "chans"); chans.dataset.label = "Deliveries";
    [first, when, what, chans].forEach(function (td) { tr.appendChild(td); });
    var header = table.querySelector("tr");
    header.parentNode.insertBefore(tr, header.nextSibling);
    return tr;
  }

  function updateAlert(a) {
    var tr = rowFor(a);
    var st = tr.querySelector('[data-k="state"]');
    if (st) st.textContent = a.state;
    var cell = tr.querySelector("td.chans");
    var names = Object.keys(a.channels || {}).sort();
    if (names.length) { var none = cell.querySelector(".none"); if (none) none.remove(); }
    names.forEach(function (name) {
      var div = cell.querySelector('div.chan[data-channel="' + CSS.escape(name) + '"]');
      if (!div) { div = channelBlock(name); cell.appendChild(div); }
      updateChannel(div, a.channels[name]);
    });
  }

  function updateHealth(channels) {
    Object.keys(channels || {}).forEach(function (name) {
      var tr = document.querySelector('#health tr[data-channel="' + CSS.escape(name) + '"]');
      if (!tr) return;
      var h = channels[name];
      setAll(tr, "rate_now", String(h.rate_now));
      setAll(tr, "pending", fmt(h.pending));
      setAll(tr, "retrying", fmt(h.retrying));
      setAll(tr, "clear", h.clear);
      setAll(tr, "error_rate", h.error_rate === null ? "—" : (h.error_rate * 100).toFixed(1) + " %");
      if (h.queued_cost !== null) setAll(tr, "queued_cost", h.queued_cost);
      if (h.quota_remaining !== null) setAll(tr, "quota_remaining", fmt(h.quota_remaining));
      var words = h.pauses.map(function (p) {
        var until = p.until ? " until " + new Date(p.until).toLocaleTimeString("ja-JP", { timeZone: "Asia/Tokyo" }) : " until resumed";
        return "paused (" + p.why + ")" + until + (p.reason ? ": " + p.reason : "");
      });
      setAll(tr, "state", words.length ? words.join("; ") : "sending");
      tr.classList.toggle("paused", h.paused);
    });
  }

  function apply(data) {
    (data.alerts || []).slice().reverse().forEach(updateAlert);
    updateHealth(data.channels);
    table.dataset.version = String(data.version);
    if (state) state.textContent = "live · version " + data.version;
  }

  var stream = new EventSource(table.dataset.stream);
  function handle(ev) {
    try { apply(JSON.parse(ev.data)); } catch (e) { if (state) state.textContent = "live update failed: " + e; }
  }
  stream.addEventListener("snapshot", function (ev) { handle(ev); document.body.dataset.live = "on"; });
  stream.addEventListener("progress", handle);
  stream.addEventListener("logout", function () {
    stream.close();
    document.body.dataset.live = "off";
    if (state) state.textContent = "session ended: reload the page to log in again";
  });
  stream.onerror = function () {
    document.body.dataset.live = "off";
    if (state) state.textContent = "reconnecting…";
  };
})();
