// smesurvival dashboard: the only script of the site (no inline script, no eval, no libraries).
// 1. A running study's page polls its status and reloads when the run ends.
// 2. The what-if form asks the API as sliders move and draws two small SVG charts.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";

  function getJSON(url, options) {
    return fetch(url, Object.assign({ cache: "no-store", headers: { Accept: "application/json" } },
      options || {})).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) { throw new Error((body && body.error && body.error.message) || r.statusText); }
        return body;
      });
    });
  }

  // ---- progress -------------------------------------------------------------------------------
  function watchProgress(box) {
    var url = box.getAttribute("data-progress-url");
    var bar = box.querySelector("progress");
    var msg = box.querySelector(".progress-message");
    function tick() {
      getJSON(url).then(function (s) {
        if (bar) { bar.value = s.progress; }
        if (msg) { msg.textContent = s.message; }
        if (s.status === "done" || s.status === "failed") { window.location.reload(); return; }
        window.setTimeout(tick, 1000);
      }).catch(function () { window.setTimeout(tick, 3000); });
    }
    window.setTimeout(tick, 700);
  }

  // ---- charts ---------------------------------------------------------------------------------
  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function pct(x, digits) { return (100 * x).toFixed(digits === undefined ? 1 : digits) + "%"; }

  // Round tick steps (1, 2, 2.5 or 5 times a power of ten), at most about n intervals.
  function tickStep(span, n) {
    var raw = (span || 1) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = [1, 2, 2.5, 5, 10].find(function (f) { return f * mag >= raw - 1e-12; });
    return m * mag;
  }

  function ticks(lo, hi, step) {
    var out = [];
    for (var v = Math.ceil(lo / step - 1e-9) * step; v <= hi + 1e-9; v += step) {
      out.push(Math.round(v / step) * step);
    }
    return out;
  }

  // Draw y (with band lo..hi) against x; mark the point (markX, markY). Probabilities on y.
  function drawChart(box, d) {
    var W = 560, H = 260, L = 52, R = 14, T = 12, B = 40;
    var xs = d.x, n = xs.length;
    var x0 = xs[0], x1 = xs[n - 1];
    var ymin = Math.min.apply(null, d.lo.concat(d.y)), ymax = Math.max.apply(null, d.hi.concat(d.y));
    var ys = tickStep(ymax - ymin, 5);
    var y0 = Math.max(0, Math.floor(ymin / ys + 1e-9) * ys), y1 = Math.min(1, Math.ceil(ymax / ys - 1e-9) * ys);
    if (y1 <= y0) { y0 = Math.max(0, y0 - ys); y1 = Math.min(1, y1 + ys); }
    var yDigits = ys * 100 < 1 ? 1 : 0;
    function px(x) { return L + (x - x0) / ((x1 - x0) || 1) * (W - L - R); }
    function py(y) { return T + (1 - (y - y0) / ((y1 - y0) || 1)) * (H - T - B); }
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, "aria-hidden": "true" });
    ticks(y0, y1, ys).forEach(function (yv) {
      el("line", { x1: L, x2: W - R, y1: py(yv), y2: py(yv), "class": "grid" }, svg);
      el("text", { x: L - 6, y: py(yv) + 4, "text-anchor": "end" }, svg).textContent = pct(yv, yDigits);
    });
    var xstep = tickStep(x1 - x0, 5);
    ticks(x0, x1, xstep).forEach(function (xv) {
      el("line", { x1: px(xv), x2: px(xv), y1: H - B, y2: H - B + 4, "class": "axis" }, svg);
      el("text", { x: px(xv), y: H - B + 16, "text-anchor": "middle" }, svg).textContent = d.xFormat(xv, xstep);
    });
    el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, "class": "axis" }, svg);
    el("line", { x1: L, x2: L, y1: T, y2: H - B, "class": "axis" }, svg);
    el("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, svg).textContent = d.xLabel;
    var band = [];
    for (var i = 0; i < n; i++) { band.push(px(xs[i]) + "," + py(d.hi[i])); }
    for (var j = n - 1; j >= 0; j--) { band.push(px(xs[j]) + "," + py(d.lo[j])); }
    el("polygon", { points: band.join(" "), "class": "band" }, svg);
    var line = [];
    for (var m = 0; m < n; m++) { line.push(px(xs[m]) + "," + py(d.y[m])); }
    el("polyline", { points: line.join(" "), "class": "line" }, svg);
    if (d.markX !== undefined && d.markY !== undefined) {
      el("circle", { cx: px(d.markX), cy: py(d.markY), r: 5, "class": "marker" }, svg);
    }
    box.replaceChildren(svg);
  }

  // ---- what-if --------------------------------------------------------------------------------
  function whatIf(form) {
    var api = form.getAttribute("data-api");
    var inputs = Array.prototype.slice.call(form.querySelectorAll("[name]"));
    var timer = null, seq = 0;
    var conf = document.getElementById("p-ci");

    function profile() {
      var p = {};
      inputs.forEach(function (i) {
        p[i.name] = i.getAttribute("data-kind") === "number" ? parseFloat(i.value) : i.value;
      });
      return p;
    }

    function setText(id, text) { var n = document.getElementById(id); if (n) { n.textContent = text; } }

    function show(a) {
      setText("p-survive", pct(a.survival.estimate));
      if (conf) {
        var level = conf.textContent.split(" CI")[0];
        conf.textContent = level + " CI " + pct(a.survival.conf_low) + " to " + pct(a.survival.conf_high);
      }
      if (a.alliance) {
        setText("p-with", pct(a.alliance["with"].estimate));
        setText("p-without", pct(a.alliance.without.estimate));
        var diff = 100 * a.alliance.difference;
        setText("p-diff", (diff >= 0 ? "+" : "") + diff.toFixed(1));
      }
      var ex = document.getElementById("export-chart");
      if (ex && a.export_curve) {
        var er = a.profile.export_ratio;
        var c = a.export_curve;
        drawChart(ex, { x: c.export_ratio, y: c.estimate, lo: c.conf_low, hi: c.conf_high,
          xLabel: "Export ratio (share of sales exported)",
          xFormat: function (v, step) { return pct(v, step * 100 < 1 ? 1 : 0); },
          markX: er, markY: a.survival.estimate });
      }
      var cx = document.getElementById("cox-chart");
      if (cx && a.cox) {
        var w = a.window_years;
        drawChart(cx, { x: a.cox.time, y: a.cox.estimate, lo: a.cox.conf_low, hi: a.cox.conf_high,
          xLabel: "Years after the survey",
          xFormat: function (v, step) { return v.toFixed(step < 1 ? 1 : 0); },
          markX: w, markY: a.cox.at_window.estimate });
        setText("cox-window", pct(a.cox.at_window.estimate) + " at " + w + " years (" +
          pct(a.cox.at_window.conf_low) + " to " + pct(a.cox.at_window.conf_high) + ")");
      }
      form.setAttribute("data-updated", String(seq));
    }

    function update() {
      var mine = ++seq;
      getJSON(api, { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ profile: profile() }) }).then(function (a) {
        if (mine === seq) { show(a); }
      }).catch(function (e) { setText("p-survive", "–"); setText("p-ci", e.message); });
    }

    inputs.forEach(function (i) {
      var out = document.getElementById("out-" + i.name);
      i.addEventListener("input", function () {
        if (out) { out.textContent = i.value; }
        window.clearTimeout(timer);
        timer = window.setTimeout(update, 60);
      });
      i.addEventListener("change", update);
    });
    form.addEventListener("submit", function (e) { e.preventDefault(); update(); });
    update();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("[data-progress-url]");
    if (box) { watchProgress(box); }
    var form = document.getElementById("whatif-form");
    if (form) { whatIf(form); }
  });
})();
