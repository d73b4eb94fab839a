/* nnviz-report page script. Everything it draws comes from the JSON embedded in the page;
   it makes no network request. Figures, pictures and the graph are drawn when they scroll
   into view; plotly.js (inlined as inert text) is evaluated after the first paint. */
(function () {
  "use strict";

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : {};
  }
  var DATA = readJSON("nnviz-data");
  var IMAGES = readJSON("nnviz-images");
  var FIGURES = {}, ASSETS = {};
  var ROOTS = { data: DATA, assets: ASSETS };
  var stats = { figures: 0, images: 0, graphs: 0, errors: [], drawMs: [] };
  var firstScreen = null;
  var printing = false;  /* between beforeprint and afterprint: graphs drawn whole */

  function fail(where, err) {
    stats.errors.push(where + ": " + (err && err.message ? err.message : String(err)));
    console.error("nnviz-report: " + where, err);
  }

  /* Each section's figures and view payloads travel gzip-compressed (base64) in its own
     script.nnviz-view. */
  function inflate(el) {
    if (typeof DecompressionStream === "undefined") {
      return Promise.reject(new Error("this browser has no DecompressionStream; open the report in a current Chrome, Edge, Firefox or Safari"));
    }
    var bin = atob(el.textContent.trim()), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }
  var viewReady = Promise.all(Array.prototype.map.call(document.querySelectorAll("script.nnviz-view"), function (el) {
    return inflate(el).then(function (v) {
      Object.assign(FIGURES, v.figures || {});
      ASSETS[el.getAttribute("data-section")] = v.assets || {};
    });
  })).then(null, function (e) { fail("reading the embedded charts", e); throw e; });

  /* ---- theme ------------------------------------------------------------------------ */
  var root = document.documentElement;
  function darkMode() {
    var t = root.getAttribute("data-theme");
    if (t) return t === "dark";
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }
  function cssVar(name) {
    return getComputedStyle(root).getPropertyValue(name).trim();
  }
  function themeLayout() {
    var fg = cssVar("--fg"), line = cssVar("--line"), muted = cssVar("--muted");
    var axis = { gridcolor: line, zerolinecolor: muted, linecolor: line, tickfont: { color: fg }, title: { font: { color: fg } } };
    return {
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: fg, family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 11 },
      xaxis: axis, yaxis: axis, yaxis2: { tickfont: { color: fg }, title: { font: { color: fg } } },
      legend: { font: { color: fg } },
      colorway: darkMode()
        ? ["#74c0fc", "#ffa94d", "#8ce99a", "#faa2c1", "#b197fc", "#ffd43b"]
        : ["#1c7ed6", "#e8590c", "#2b8a3e", "#c2255c", "#6741d9", "#e67700"]
    };
  }
  function merge(base, extra) {
    var out = {}, k;
    for (k in base) out[k] = base[k];
    for (k in extra) {
      var b = out[k], e = extra[k];
      out[k] = (b && e && typeof b === "object" && typeof e === "object" && !Array.isArray(b) && !Array.isArray(e)) ? merge(b, e) : e;
    }
    return out;
  }
  var toggle = document.querySelector("[data-theme-toggle]");
  if (toggle) toggle.addEventListener("click", function () {
    root.setAttribute("data-theme", darkMode() ? "light" : "dark");
    restyle();
  });
  if (window.matchMedia) {
    var mq = window.matchMedia("(prefers-color-scheme: dark)");
    if (mq.addEventListener) mq.addEventListener("change", restyle);
  }

  /* ---- plotly.js, evaluated after the first paint ------------------------------------ */
  var plotlyPromise = null;
  function loadPlotly() {
    if (!plotlyPromise) {
      plotlyPromise = new Promise(function (resolve, reject) {
        requestAnimationFrame(function () {
          setTimeout(function () {
            try {
              if (!window.Plotly) {
                var src = document.getElementById("nnviz-plotly").textContent;
                (0, eval)(src);
              }
              if (window.performance && performance.mark) performance.mark("nnviz-plotly-ready");
              resolve(window.Plotly);
            } catch (e) { fail("loading plotly.js", e); reject(e); }
          }, 0);
        });
      });
    }
    return plotlyPromise;
  }

  /* ---- figures ----------------------------------------------------------------------- */
  function lookup(path) {
    var parts = path.split("/"), cur = ROOTS;
    for (var i = 0; i < parts.length; i++) {
      var key = parts[i].replace(/~1/g, "/").replace(/~0/g, "~");
      if (cur === null || cur === undefined) break;
      cur = cur[key];
    }
    if (cur === undefined) throw new Error("missing data at " + path);
    return cur;
  }
  function resolve(value) {
    if (Array.isArray(value)) return value.map(resolve);
    if (value && typeof value === "object") {
      if (typeof value.$ref === "string") return lookup(value.$ref);
      var out = {};
      for (var k in value) out[k] = resolve(value[k]);
      return out;
    }
    return value;
  }
  var drawnFigures = [];
  function drawFigure(el) {
    var id = el.getAttribute("data-fig");
    el.classList.add("pending");
    return Promise.all([loadPlotly(), viewReady]).then(function (loaded) {
      var Plotly = loaded[0], spec = FIGURES[id];
      if (!spec) throw new Error("no figure " + id);
      var layout = merge(themeLayout(), spec.layout || {});
      layout.autosize = true;
      var started = performance.now();
      /* On touch screens Plotly's toolbar stays up over the legend: left out there. */
      var config = { displaylogo: false, responsive: true, showLink: false, showSendToCloud: false, showEditInChartStudio: false,
        displayModeBar: window.matchMedia && window.matchMedia("(pointer: coarse)").matches ? false : "hover",
        modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"], toImageButtonOptions: { filename: id } };
      return Plotly.newPlot(el, resolve(spec.data), layout, config).then(function () {
        el.classList.remove("pending");
        drawnFigures.push({ el: el, layout: FIGURES[id].layout || {} });
        stats.figures++;
        stats.drawMs.push(performance.now() - started);
      });
    }).catch(function (e) { el.classList.remove("pending"); el.classList.add("failed"); fail("figure " + id, e); });
  }
  function restyle() {
    if (!window.Plotly) return;
    drawnFigures.forEach(function (f) {
      try { window.Plotly.relayout(f.el, merge(themeLayout(), f.layout)); } catch (e) { fail("restyle", e); }
    });
  }

  /* ---- feature-map pictures ----------------------------------------------------------- */
  function ramp(stops) {
    var lut = new Uint8ClampedArray(256 * 3);
    for (var i = 0; i < 256; i++) {
      var t = i / 255 * (stops.length - 1), j = Math.min(Math.floor(t), stops.length - 2), f = t - j;
      for (var c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(stops[j][c] * (1 - f) + stops[j + 1][c] * f);
    }
    return lut;
  }
  var LUT_DIV = ramp([[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [247, 247, 247], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]]);
  var LUT_SEQ = ramp([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]);
  var images = (IMAGES.feature_maps || {}).pictures || {};
  var sheets = (IMAGES.feature_maps || {}).sheets || [];
  var sheetPixels = {};
  /* The pictures come stacked in a few sheets; each sheet is decoded once. */
  function sheet(i) {
    if (!sheetPixels[i]) {
      var img = new Image();
      img.src = sheets[i];
      sheetPixels[i] = img.decode().then(function () {
        var c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        var cx = c.getContext("2d");
        cx.drawImage(img, 0, 0);
        return { px: cx.getImageData(0, 0, c.width, c.height).data, w: c.width };
      });
    }
    return sheetPixels[i];
  }

  function layoutOf(im) {
    var cols = im.kind === "channels" ? Math.ceil(Math.sqrt(im.tiles)) : 1;
    var rows = Math.ceil(im.tiles / cols), gap = im.tiles > 1 ? 1 : 0;
    return { cols: cols, rows: rows, gap: gap, w: cols * im.tile_w + (cols - 1) * gap, h: rows * im.tile_h + (rows - 1) * gap };
  }
  function drawImage(canvas) {
    var key = canvas.getAttribute("data-img"), im = images[key];
    if (!im) { fail("picture " + key, "missing"); return Promise.resolve(); }
    return sheet(im.sheet).then(function (sh) {
      var px = sh.px, base = im.y * sh.w * 4;
      var L = layoutOf(im), lut = im.diverging ? LUT_DIV : LUT_SEQ;
      canvas.width = L.w; canvas.height = L.h;
      var ctx = canvas.getContext("2d"), out = ctx.createImageData(L.w, L.h), o = out.data;
      for (var i = 0; i < o.length; i += 4) { o[i] = o[i + 1] = o[i + 2] = 128; o[i + 3] = 0; }
      for (var t = 0; t < im.tiles; t++) {
        var ox = (t % L.cols) * (im.tile_w + L.gap), oy = Math.floor(t / L.cols) * (im.tile_h + L.gap);
        for (var y = 0; y < im.tile_h; y++) {
          for (var x = 0; x < im.tile_w; x++) {
            var v = px[base + (y * sh.w + t * im.stride + x) * 4];
            var d = ((oy + y) * L.w + ox + x) * 4;
            o[d] = lut[v * 3]; o[d + 1] = lut[v * 3 + 1]; o[d + 2] = lut[v * 3 + 2]; o[d + 3] = 255;
          }
        }
      }
      ctx.putImageData(out, 0, 0);
      // Never taller than wide: a tall, narrow picture (4 features x 16 examples) is drawn
      // narrower instead of stretched over the card.
      canvas.style.width = Math.min(100, 100 * L.w / L.h) + "%";
      canvas._nnviz = { im: im, L: L, px: px, pw: sh.w, base: base, index: +key };
      stats.images++;
    }).catch(function (e) { fail("picture " + key, e); });
  }
  var tip = document.createElement("div");
  tip.className = "tooltip"; tip.hidden = true;
  document.body.appendChild(tip);
  /* The tooltip is placed for the pointer: once the page scrolls under it, it goes. */
  window.addEventListener("scroll", function () { tip.hidden = true; }, { passive: true });
  function fmt(v) {
    if (v === null || v === undefined) return "–";
    var a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e5)) ? v.toExponential(3) : (+v.toPrecision(4)).toString();
  }
  document.addEventListener("mousemove", function (ev) {
    var c = ev.target;
    if (!c || !c._nnviz) { tip.hidden = true; return; }
    var s = c._nnviz, im = s.im, L = s.L, r = c.getBoundingClientRect();
    var x = Math.floor((ev.clientX - r.left) / r.width * L.w), y = Math.floor((ev.clientY - r.top) / r.height * L.h);
    var col = Math.floor(x / (im.tile_w + L.gap)), row = Math.floor(y / (im.tile_h + L.gap));
    var tx = x - col * (im.tile_w + L.gap), ty = y - row * (im.tile_h + L.gap), t = row * L.cols + col;
    if (t >= im.tiles || tx >= im.tile_w || ty >= im.tile_h || tx < 0 || ty < 0) { tip.hidden = true; return; }
    var q = s.px[s.base + (ty * s.pw + t * im.stride + tx) * 4], value = im.vmin + q / 255 * (im.vmax - im.vmin);
    var text;
    if (im.kind === "channels") {
      var ch = (DATA.feature_maps[s.index] || {}).channels || {};
      var at = function (key) { return (ch[key] || [])[t]; };
      text = "channel " + at("index") + "\nvalue ≈ " + fmt(value) + "\nmean " + fmt(at("mean")) + "  std " + fmt(at("std")) +
        "\nmin " + fmt(at("min")) + "  max " + fmt(at("max"));
    } else {
      text = im.row_label + " " + im.rows[ty] + ", " + im.col_label + " " + im.cols[tx] + "\nvalue ≈ " + fmt(value);
    }
    tip.textContent = text;
    tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 14) + "px";
    tip.hidden = false;
  });

  function drawSpark(canvas) {
    var entry = (DATA.feature_maps || [])[+canvas.getAttribute("data-hist")];
    var h = entry && entry.histogram;
    if (!h) return;
    var w = canvas.clientWidth || 200, ht = canvas.clientHeight || 36, ratio = window.devicePixelRatio || 1;
    canvas.width = w * ratio; canvas.height = ht * ratio;
    var ctx = canvas.getContext("2d"), n = h.counts.length, max = Math.max.apply(null, h.counts) || 1;
    ctx.scale(ratio, ratio);
    ctx.fillStyle = cssVar("--accent");
    for (var i = 0; i < n; i++) {
      var bh = h.counts[i] / max * (ht - 12);
      ctx.fillRect(i * w / n, ht - 12 - bh, Math.max(w / n - 1, 1), bh);
    }
    ctx.fillStyle = cssVar("--muted");
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "bottom";
    ctx.fillText(fmt(h.lo), 0, ht);
    var hi = fmt(h.hi);
    ctx.fillText(hi, w - ctx.measureText(hi).width, ht);
  }

  /* ---- graph -------------------------------------------------------------------------- */
  function setupGraph(box) {
    var assets = ASSETS.graph || {}, views = assets.views || {}, index = assets.index || [];
    var canvas = box.querySelector(".graph-canvas"), info = box.querySelector(".graph-info");
    var results = box.querySelector(".graph-results"), search = box.querySelector("[data-graph-search]");
    var crumbs = box.querySelector(".graph-crumbs"), note = box.querySelector(".graph-note");
    var state = null;
    /* Text stays legible at the first zoom: at most this many SVG units per screen pixel
       (dot's 10-unit labels are then at least 7.7 px tall). */
    var LEGIBLE = 1.3;
    function show(key, focus) {
      var v = views[key];
      if (!v) return;
      box.querySelectorAll("[data-tab]").forEach(function (b) {
        b.setAttribute("aria-selected", String((key === "full") === (b.getAttribute("data-tab") === "full")));
      });
      canvas.innerHTML = v.svg;
      var svg = canvas.querySelector("svg");
      var vb = svg.viewBox.baseVal;
      state = { key: key, svg: svg, info: v.info, base: { x: vb.x, y: vb.y, w: vb.width, h: vb.height } };
      svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
      Object.keys(v.info).forEach(function (id) {
        if (v.info[id].opens) { var g = svg.getElementById ? svg.getElementById(id) : null; if (g) g.classList.add("opens"); }
      });
      breadcrumb(key);
      note.textContent = v.note || "";
      note.hidden = !v.note;
      fit(printing);
      info.hidden = true;
      stats.graphs++;
      if (focus) { var g = svg.querySelector("#" + CSS.escape(focus)); if (g) center(g); }
    }
    function breadcrumb(key) {
      crumbs.textContent = "";
      if (key === "full") { crumbs.hidden = true; return; }
      crumbs.hidden = false;
      var chain = [];
      for (var k = key; k && views[k]; k = views[k].parent) chain.unshift(k);
      chain.forEach(function (k, i) {
        if (i) crumbs.appendChild(document.createTextNode(" › "));
        var title = views[k].title;
        if (i === chain.length - 1) {
          var here = document.createElement("strong");
          here.textContent = title;
          crumbs.appendChild(here);
        } else {
          var b = document.createElement("button");
          b.type = "button";
          b.textContent = title;
          b.addEventListener("click", function () { show(k); });
          crumbs.appendChild(b);
        }
      });
    }
    function setBox(x, y, w, h) {
      state.box = { x: x, y: y, w: w, h: h };
      state.svg.setAttribute("viewBox", [x, y, w, h].join(" "));
    }
    function fit(whole) {
      /* Whole graph: contain it. First view: the whole graph if it is legible so; else as
         wide as legibility allows, from the top (dot lays the graph out top to bottom). */
      var b = state.base, r = canvas.getBoundingClientRect();
      if (!r.width || !r.height) { setBox(b.x, b.y, b.w, b.h); return; }
      var s = Math.max(b.w / r.width, b.h / r.height, 1);
      if (!whole && s > LEGIBLE) s = Math.max(Math.min(b.w / r.width, LEGIBLE), 1);
      var w = r.width * s, h = r.height * s;
      setBox(b.x + b.w / 2 - w / 2, whole || h >= b.h ? b.y + b.h / 2 - h / 2 : b.y, w, h);
    }
    function scale() {
      var r = canvas.getBoundingClientRect();
      return Math.max(state.box.w / r.width, state.box.h / r.height);
    }
    function zoom(factor, cx, cy) {
      var b = state.box;
      if (cx === undefined) { cx = b.x + b.w / 2; cy = b.y + b.h / 2; }
      setBox(cx - (cx - b.x) * factor, cy - (cy - b.y) * factor, b.w * factor, b.h * factor);
    }
    function toSvg(ev) {
      var r = canvas.getBoundingClientRect(), b = state.box, s = scale();
      var ox = (r.width - b.w / s) / 2, oy = (r.height - b.h / s) / 2;
      return { x: b.x + (ev.clientX - r.left - ox) * s, y: b.y + (ev.clientY - r.top - oy) * s };
    }
    canvas.addEventListener("wheel", function (ev) {
      if (!state) return;
      ev.preventDefault();
      var p = toSvg(ev);
      zoom(Math.exp(ev.deltaY * 0.0015), p.x, p.y);
    }, { passive: false });
    var drag = null;
    canvas.addEventListener("pointerdown", function (ev) {
      if (!state) return;
      drag = { x: ev.clientX, y: ev.clientY, box: state.box, moved: false };
      canvas.setPointerCapture(ev.pointerId);
    });
    canvas.addEventListener("pointermove", function (ev) {
      if (!drag) return;
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; canvas.classList.add("dragging"); }
      var s = scale();
      setBox(drag.box.x - dx * s, drag.box.y - dy * s, drag.box.w, drag.box.h);
    });
    canvas.addEventListener("pointerup", function (ev) {
      var d = drag;
      drag = null;
      canvas.classList.remove("dragging");
      if (d && !d.moved) select(document.elementFromPoint(ev.clientX, ev.clientY) || canvas);
    });
    canvas.addEventListener("dblclick", function (ev) {
      var at = document.elementFromPoint(ev.clientX, ev.clientY);  /* the canvas holds the pointer */
      var g = at && at.closest && at.closest("g.node");
      var item = g && state && state.info[g.id];
      if (item && item.opens) show(item.opens);
    });
    canvas.addEventListener("keydown", function (ev) {
      if (!state) return;
      var selected = state.svg.querySelector(".selected"), item = selected && state.info[selected.id];
      if (ev.key === "Enter" && item && item.opens) { ev.preventDefault(); show(item.opens); }
      if ((ev.key === "Backspace" || ev.key === "Escape") && views[state.key] && views[state.key].parent) {
        ev.preventDefault();
        show(views[state.key].parent);
      }
    });
    function line(text, cls) {
      var p = document.createElement("p");
      p.textContent = text;
      if (cls) p.className = cls;
      info.appendChild(p);
      return p;
    }
    function select(target) {
      var g = target.closest && target.closest("g.node, g.cluster");
      state.svg.querySelectorAll(".selected").forEach(function (e) { e.classList.remove("selected"); });
      if (!g || !state.info[g.id]) { info.hidden = true; return; }
      g.classList.add("selected");
      var item = state.info[g.id];
      info.textContent = "";
      line(item.label).style.fontWeight = "600";
      if (item.module !== undefined) line("module: " + (item.module || "(root)") + (item.type ? " · " + item.type : ""));
      if (item.members) line((item.kind === "fold" ? "stands for: " : "holds: ") + item.members.join(", "), "muted");
      if (item.ops) line("operations: " + item.ops.join(", "), "muted");
      var links = document.createElement("p");
      if (item.opens) {
        var open = document.createElement("button");
        open.type = "button";
        open.textContent = "Open ▸";
        open.addEventListener("click", function () { show(item.opens); });
        links.appendChild(open);
      }
      [["fm", "feature map →"], ["param", "parameters →"]].forEach(function (pair) {
        if (!item[pair[0]]) return;
        var a = document.createElement("a");
        a.href = "#" + item[pair[0]];
        a.textContent = pair[1];
        a.style.marginLeft = "1em";
        links.appendChild(a);
      });
      if (links.childNodes.length) info.appendChild(links);
      info.hidden = false;
    }
    /* A node's box in the SVG's own (viewBox) coordinates: getBBox() is in the node's, and
       Graphviz translates its top group by the drawing's height. */
    function userBox(g) {
      var bb = g.getBBox(), outer = state.svg.getScreenCTM(), inner = g.getScreenCTM();
      if (!outer || !inner) return bb;
      var m = outer.inverse().multiply(inner);
      var a = new DOMPoint(bb.x, bb.y).matrixTransform(m);
      var c = new DOMPoint(bb.x + bb.width, bb.y + bb.height).matrixTransform(m);
      return { x: Math.min(a.x, c.x), y: Math.min(a.y, c.y), width: Math.abs(c.x - a.x), height: Math.abs(c.y - a.y) };
    }
    function center(g) {
      var bb = userBox(g), b = state.base, w = Math.min(state.box.w, Math.max(bb.width * 6, b.w / 6));
      var h = w * state.box.h / state.box.w;
      setBox(bb.x + bb.width / 2 - w / 2, bb.y + bb.height / 2 - h / 2, w, h);
      state.svg.querySelectorAll(".hit").forEach(function (e) { e.classList.remove("hit"); });
      g.classList.add("hit");
      select(g);
    }
    /* Search: every module call (by where it is drawn) and every node of every drawn view. */
    var entries = index.map(function (e) {
      return { text: (e.label + " " + e.type).toLowerCase(), label: e.label + " · " + e.type, view: e.view, node: e.node };
    });
    Object.keys(views).forEach(function (key) {
      var vinfo = views[key].info;
      Object.keys(vinfo).forEach(function (id) {
        var it = vinfo[id];
        if (it.kind === "module" || it.kind === "cluster") return;  /* in the index already */
        entries.push({ text: (it.label + " " + (it.module || "")).toLowerCase(), label: it.label, view: key, node: id });
      });
    });
    search.addEventListener("input", function () {
      var q = search.value.trim().toLowerCase();
      results.textContent = "";
      if (!q) { results.hidden = true; return; }
      var hits = entries.filter(function (e) { return e.text.indexOf(q) >= 0; }).slice(0, 50);
      hits.forEach(function (e) {
        var li = document.createElement("li"), b = document.createElement("button");
        b.type = "button";
        b.textContent = e.label;
        var where = document.createElement("span");
        where.className = "muted";
        where.textContent = "  in " + (views[e.view] ? views[e.view].title : e.view);
        b.addEventListener("click", function () { show(e.view, e.node); });
        li.appendChild(b);
        li.appendChild(where);
        results.appendChild(li);
      });
      results.hidden = hits.length === 0;
    });
    search.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") { var b = results.querySelector("button"); if (b) b.click(); }
    });
    box.querySelectorAll("[data-tab]").forEach(function (b) {
      b.addEventListener("click", function () { show(b.getAttribute("data-tab")); });
    });
    box.querySelectorAll("[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () {
        if (!state) return;
        var z = b.getAttribute("data-zoom");
        if (z === "fit") fit(true); else zoom(z === "in" ? 0.7 : 1 / 0.7);
      });
    });
    show(box.getAttribute("data-default"));
    window.addEventListener("beforeprint", function () { if (state) fit(true); });
    box._nnvizGraph = { show: show, views: views, current: function () { return state && state.key; } };
  }

  /* ---- tables and filters ---------------------------------------------------------------- */
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th[data-sort]").forEach(function (th, col) {
      /* Sortable from the keyboard too: a header takes focus, Enter or Space sorts. */
      th.tabIndex = 0;
      th.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); th.click(); }
      });
      th.addEventListener("click", function () {
        var numeric = th.getAttribute("data-sort") === "num";
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        var index = Array.prototype.indexOf.call(th.parentNode.children, th);
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var key = function (row) {
            var cell = row.cells[index];
            return cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
          };
          var x = key(a), y = key(b);
          if (x === "" || x === null) return 1;
          if (y === "" || y === null) return -1;
          if (numeric) return (parseFloat(x) - parseFloat(y)) * dir;
          return x.localeCompare(y, undefined, { numeric: true }) * dir;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll("input[data-filter]").forEach(function (input) {
    var targets = Array.prototype.slice.call(document.querySelectorAll(input.getAttribute("data-filter")));
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      targets.forEach(function (el) {
        var name = (el.getAttribute("data-name") || el.textContent).toLowerCase();
        el.classList.toggle("filtered-out", q !== "" && name.indexOf(q) < 0);
      });
    });
  });

  /* ---- in-page links ---------------------------------------------------------------------
     Links scroll this page's own window and never navigate: in a notebook's srcdoc frame
     (and MLflow's) "#id" resolves against the parent page's URL and would load it into the
     frame; scrollIntoView would scroll the notebook too. While sections above the target
     draw and grow, the target is held at the top until the reader scrolls (or 10 s). */
  var landing = null;
  function land(el) {
    if (landing) landing();
    for (var p = el; p; p = p.parentElement) if (p.tagName === "DETAILS") p.open = true;
    var stopped = false, ro = null, timer = null, inputs = ["wheel", "touchstart", "keydown", "mousedown"];
    function align() {
      if (stopped) return;
      var top = el.getBoundingClientRect().top;
      if (Math.abs(top) >= 1) window.scrollTo({ top: window.scrollY + top, behavior: "instant" });
    }
    function stop() {
      if (stopped) return;
      stopped = true;
      if (ro) ro.disconnect();
      clearTimeout(timer);
      inputs.forEach(function (name) { window.removeEventListener(name, stop, true); });
      landing = null;
    }
    align();
    if ("ResizeObserver" in window) {
      ro = new ResizeObserver(align);
      Array.prototype.forEach.call(document.querySelectorAll(".page-head, main > *"), function (s) { ro.observe(s); });
    }
    inputs.forEach(function (name) { window.addEventListener(name, stop, true); });
    timer = setTimeout(stop, 10000);
    landing = stop;
  }
  function targetOf(hash) {
    var id = hash.charAt(0) === "#" ? hash.slice(1) : hash;
    try { id = decodeURIComponent(id); } catch (e) { /* not percent-encoded */ }
    return id ? document.getElementById(id) : null;
  }
  document.addEventListener("click", function (ev) {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    var a = ev.target.closest && ev.target.closest("a[href^='#']");
    if (!a) return;
    var hash = a.getAttribute("href"), el = targetOf(hash);
    ev.preventDefault();
    if (!el) { if (hash === "#") window.scrollTo({ top: 0, behavior: "instant" }); return; }
    land(el);
    // The address bar follows where it is this page's own (not about:srcdoc); a sandboxed
    // frame may refuse, which changes nothing else.
    if (location.protocol !== "about:" && location.hash !== hash) {
      try { history.pushState(null, "", hash); } catch (e) { /* opaque origin */ }
    }
  });
  function reveal() {
    var el = targetOf(location.hash);
    if (el) land(el);
  }
  window.addEventListener("hashchange", reveal);
  window.addEventListener("popstate", reveal);
  if (location.hash) reveal();

  /* ---- lazy drawing ---------------------------------------------------------------------- */
  function drawElement(el) {
    if (el._nnvizDone) return Promise.resolve();
    el._nnvizDone = true;
    if (el.hasAttribute("data-fig")) return drawFigure(el);
    if (el.hasAttribute("data-img")) return drawImage(el);
    if (el.hasAttribute("data-hist")) { drawSpark(el); return Promise.resolve(); }
    if (el.hasAttribute("data-graph")) {
      return viewReady.then(function () { setupGraph(el); }).catch(function (e) { fail("graph", e); });
    }
    return Promise.resolve();
  }
  var lazy = Array.prototype.slice.call(document.querySelectorAll("[data-fig], [data-img], [data-hist], [data-graph]"));
  function inView(el) {
    var r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.bottom > 0 && r.top < window.innerHeight;
  }
  var initial = lazy.filter(inView);
  firstScreen = Promise.all(initial.map(drawElement)).then(function () {
    if (window.performance && performance.mark) performance.mark("nnviz-first-screen");
    /* Decode the picture sheets while idle: printing draws everything within the
       beforeprint event, and only pixels already decoded can be drawn that soon. */
    var decodeAll = function () { sheets.forEach(function (_, i) { sheet(i); }); };
    if (window.requestIdleCallback) window.requestIdleCallback(decodeAll); else setTimeout(decodeAll, 200);
  });
  if ("IntersectionObserver" in window) {
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting) { io.unobserve(e.target); drawElement(e.target); }
      });
    }, { rootMargin: "300px 0px" });
    lazy.forEach(function (el) { if (!el._nnvizDone) io.observe(el); });
  } else {
    lazy.forEach(drawElement);
  }
  loadPlotly();

  function drawAll() {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
    return Promise.all(lazy.map(drawElement));
  }
  window.addEventListener("beforeprint", function () { printing = true; drawAll(); });
  window.addEventListener("afterprint", function () { printing = false; });

  window.nnviz = {
    data: DATA,
    stats: stats,
    firstScreen: firstScreen,
    drawAll: drawAll,
    counts: function () {
      return {
        figures: document.querySelectorAll("[data-fig]").length,
        images: document.querySelectorAll("[data-img]").length,
        graphs: document.querySelectorAll("[data-graph]").length
      };
    }
  };
})();
