// The staff console's only script (served from /static: the CSP allows no inline script).
// Everything works without it: the checkbox list chooses districts and "プレビュー"
// refreshes the previews. With it, a district on the map is toggled by a click, Enter or
// Space (each is a focusable role="checkbox" tied to its checkbox in the list), and
// the previews and prefilled texts follow every change.
(function () {
  "use strict";
  function boxFor(code) {
    return document.querySelector('input[name="area"][value="' + CSS.escape(code) + '"]');
  }
  function syncMap() {
    document.querySelectorAll("svg.districtmap .district").forEach(function (g) {
      var box = boxFor(g.dataset.code);
      var on = !!(box && box.checked);
      g.classList.toggle("on", on);
      g.setAttribute("aria-checked", on ? "true" : "false");
    });
  }
  function toggle(g) {
    var box = boxFor(g.dataset.code);
    if (!box) return;
    box.checked = !box.checked;
    box.dispatchEvent(new Event("change", { bubbles: true }));
  }
  document.querySelectorAll("svg.districtmap .district").forEach(function (g) {
    g.addEventListener("click", function () { toggle(g); });
    g.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " " || ev.key === "Spacebar") {
        ev.preventDefault();
        toggle(g);
      }
    });
  });
  document.addEventListener("change", function (ev) {
    if (ev.target && ev.target.name === "area") syncMap();
  });

  var form = document.getElementById("compose");
  if (!form) return;
  var timer = null;
  var inFlight = 0;
  function refresh() {
    var data = new FormData(form);
    var ticket = ++inFlight;
    fetch(form.dataset.preview, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": data.get("csrf_token") || "", "Accept": "application/json" },
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (answer) {
      if (!answer || ticket !== inFlight) return;
      Object.keys(answer.texts).forEach(function (lang) {
        var t = answer.texts[lang];
        [["headline", t.headline, t.prefill_headline], ["text", t.text, t.prefill_text]].forEach(function (f) {
          var field = form.elements[f[0] + "_" + lang];
          var prefill = form.elements["prefill_" + f[0] + "_" + lang];
          if (field && field !== document.activeElement && field.value !== f[1]) field.value = f[1];
          if (prefill) prefill.value = f[2];
        });
      });
      var names = document.getElementById("areanames");
      if (names) names.textContent = answer.areas;
      var body = document.getElementById("previewbody");
      if (body) body.innerHTML = answer.previews_html;
      document.body.dataset.previewed = String(ticket);
    }).catch(function () { /* the preview button still works */ });
  }
  function later(ms) {
    clearTimeout(timer);
    timer = setTimeout(refresh, ms);
  }
  form.addEventListener("change", function () { later(60); });
  form.addEventListener("input", function (ev) {
    if (ev.target && ev.target.tagName !== "SELECT" && ev.target.type !== "checkbox") later(400);
  });
})();
