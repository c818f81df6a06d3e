/* ctax map page: vanilla JS and SVG, no build step. Draws GET /v1/map (computed by the labelling worker); the API
   key is the review page's (same localStorage entry), sent as X-API-Key on every call, thumbnails included. */
(() => {
  "use strict";

  const KEY = "ctax.review.key";
  const VOCABULARY = JSON.parse(document.getElementById("ctax-vocabulary").textContent);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const W = 1000, H = 700, PAD = 24;
  const PALETTE = ["#4f46e5", "#ea580c", "#16a34a", "#db2777", "#0891b2", "#ca8a04", "#7c3aed", "#dc2626",
                   "#2563eb", "#65a30d", "#9333ea", "#0d9488"];
  const GREY = "#9ca3af";
  const FLAG_COLOURS = { new_label: "#7c3aed", wrong_label: "#c2410c", low_confidence: "#ca8a04", none: GREY };
  const MAX_GROUPS = PALETTE.length;

  const $ = (sel) => document.querySelector(sel);
  const state = { key: localStorage.getItem(KEY), data: null, colour: "label", images: new Map() };

  async function api(method, path) {
    const response = await fetch(path, { method, headers: { "X-API-Key": state.key || "" } });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error((body && body.message) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // ------------------------------------------------------------------------------------------- colours
  // By decided label: each label its colour while there are few; past a dozen, their top-level branch.
  function labelGroups(points) {
    const paths = [...new Set(points.map((p) => p.label).filter(Boolean))].sort();
    const byTop = paths.length > MAX_GROUPS;
    const keyOf = (path) => (path ? (byTop ? path.split("/")[0] : path) : null);
    const keys = [...new Set(paths.map(keyOf))].sort();
    const colours = new Map(keys.map((k, i) => [k, PALETTE[i % PALETTE.length]]));
    return { keyOf, colours, byTop };
  }

  function colourOf(point, groups) {
    if (state.colour === "flag") return FLAG_COLOURS[point.flag] || GREY;
    const key = groups.keyOf(point.label);
    return key ? groups.colours.get(key) : GREY;
  }

  // -------------------------------------------------------------------------------------------- draw
  const sx = (x) => PAD + x * (W - 2 * PAD);
  const sy = (y) => H - PAD - y * (H - 2 * PAD);

  function el(name, attrs) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  function draw() {
    const svg = $("#map");
    svg.replaceChildren();
    const data = state.data;
    if (!data) return;
    const groups = labelGroups(data.creatives);
    const layer = el("g", { id: "creatives" });
    data.creatives.forEach((p, i) => {
      const dot = el("circle", { cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 4, fill: colourOf(p, groups),
                                 class: "point", "data-index": i, "data-flag": p.flag });
      layer.appendChild(dot);
    });
    svg.appendChild(layer);
    const labels = el("g", { id: "labels" });
    data.labels.forEach((l) => {
      const x = sx(l.x), y = sy(l.y);
      // A label takes the colour of the creatives decided for it (or for its branch); others stay dark.
      const fill = (state.colour === "label" && groups.colours.get(groups.keyOf(l.path))) || "#111827";
      const mark = el("rect", { x: (x - 4).toFixed(1), y: (y - 4).toFixed(1), width: 8, height: 8, fill,
                                class: "label-point", "data-label": l.path, transform: `rotate(45 ${x.toFixed(1)} ${y.toFixed(1)})` });
      const title = el("title", {});
      title.textContent = l.path;
      mark.appendChild(title);
      labels.appendChild(mark);
      const text = el("text", { x: (x + 7).toFixed(1), y: (y + 3).toFixed(1), class: "label-text" });
      text.textContent = l.path.split("/").pop();
      labels.appendChild(text);
    });
    svg.appendChild(labels);
    legend(groups);
  }

  function swatchRow(colour, text) {
    const row = document.createElement("div");
    row.className = "legend-row";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;  // CSSOM, which the page's CSP allows (no style attributes)
    const name = document.createElement("span");
    name.textContent = text;
    row.append(swatch, name);
    return row;
  }

  function legend(groups) {
    const box = $("#legend");
    box.replaceChildren();
    const head = document.createElement("strong");
    const counts = new Map();
    if (state.colour === "flag") {
      head.textContent = "Flag";
      state.data.creatives.forEach((p) => counts.set(p.flag, (counts.get(p.flag) || 0) + 1));
      box.appendChild(head);
      for (const flag of ["none", ...Object.keys(VOCABULARY.flag_short)]) {
        const title = flag === "none" ? "No flag" : VOCABULARY.flag_short[flag];
        box.appendChild(swatchRow(FLAG_COLOURS[flag] || GREY, `${title} (${counts.get(flag) || 0})`));
      }
    } else {
      head.textContent = groups.byTop ? "Decided label (top level)" : "Decided label";
      state.data.creatives.forEach((p) => { const k = groups.keyOf(p.label); counts.set(k, (counts.get(k) || 0) + 1); });
      box.appendChild(head);
      for (const [key, colour] of groups.colours) box.appendChild(swatchRow(colour, `${key} (${counts.get(key) || 0})`));
      box.appendChild(swatchRow(GREY, `Undecided (${counts.get(null) || 0})`));
    }
    const hint = document.createElement("p");
    hint.className = "muted";
    hint.textContent = "Circles: recent creatives. Diamonds: labels. Hover for text, click to review.";
    box.appendChild(hint);
  }

  // ----------------------------------------------------------------------------------- hover, click
  async function thumbnail(point) {
    if (!point.has_image) return null;
    if (!state.images.has(point.id)) {
      state.images.set(point.id, fetch(`/v1/creatives/${point.id}/image`, { headers: { "X-API-Key": state.key } })
        .then((r) => (r.ok ? r.blob() : null)).then((b) => (b ? URL.createObjectURL(b) : null)).catch(() => null));
    }
    return state.images.get(point.id);
  }

  function showTip(point, event) {
    const tip = $("#tooltip");
    tip.replaceChildren();
    const text = document.createElement("div");
    text.className = "tip-text";
    text.textContent = point.text || "(no text)";
    const meta = document.createElement("div");
    meta.className = "muted";
    const flag = point.flag === "none" ? "no flag" : (VOCABULARY.flag_short[point.flag] || point.flag);
    meta.textContent = `${point.label || "undecided"} · ${flag}${point.review_item_id ? "" : " · not in the review queue"}`;
    tip.append(text, meta);
    const box = $("#canvas").getBoundingClientRect();
    tip.style.left = `${Math.min(event.clientX - box.left + 12, box.width - 290)}px`;
    tip.style.top = `${Math.min(event.clientY - box.top + 12, box.height - 200)}px`;
    tip.hidden = false;
    tip.dataset.id = point.id;
    thumbnail(point).then((url) => {
      if (url && tip.dataset.id === point.id && !tip.hidden) {
        const img = document.createElement("img");
        img.src = url;
        img.alt = "thumbnail";
        tip.prepend(img);
      }
    });
  }

  function wireCanvas() {
    const svg = $("#map");
    svg.addEventListener("mouseover", (e) => {
      const index = e.target.dataset ? e.target.dataset.index : undefined;
      if (index !== undefined) showTip(state.data.creatives[Number(index)], e);
    });
    svg.addEventListener("mouseout", (e) => { if (e.target.dataset && e.target.dataset.index !== undefined) $("#tooltip").hidden = true; });
    svg.addEventListener("click", (e) => {
      const index = e.target.dataset ? e.target.dataset.index : undefined;
      if (index === undefined) return;
      const point = state.data.creatives[Number(index)];
      if (point.review_item_id) window.location.href = `/review#item=${point.review_item_id}`;
      else $("#map-note").textContent = `Creative ${point.id} has no review item: it was labelled without a flag.`;
    });
  }

  // ------------------------------------------------------------------------------------------- data
  function describe(data) {
    $("#map-status").textContent = `${data.version} · ${data.labels.length} labels · ${data.creatives.length} recent creatives · drawn ${data.computed_at}`;
    $("#map-note").textContent = data.note;
  }

  async function load() {
    try {
      state.data = await api("GET", "/v1/map");
      describe(state.data);
      draw();
      return true;
    } catch (err) {
      if (err.status === 401 || err.status === 403) { signOut(err.message); return false; }
      $("#map-status").textContent = err.status === 404 ? "No map yet: drawing one…" : err.message;
      if (err.status === 404) refresh();
      return false;
    }
  }

  async function refresh() {
    const before = state.data ? state.data.computed_at : null;
    try { await api("POST", "/v1/map/refresh"); } catch (err) { $("#map-note").textContent = err.message; return; }
    $("#map-note").textContent = "The labelling worker is drawing the map…";
    for (let attempt = 0; attempt < 120; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      try {
        const data = await api("GET", "/v1/map");
        if (data.computed_at !== before) { state.data = data; describe(data); draw(); return; }
      } catch (err) { if (err.status !== 404) { $("#map-note").textContent = err.message; return; } }
    }
    $("#map-note").textContent = "No new map yet: is the labelling worker running?";
  }

  function setColour(mode) {
    state.colour = mode;
    for (const b of document.querySelectorAll("[data-colour]")) b.setAttribute("aria-pressed", String(b.dataset.colour === mode));
    draw();
  }

  // ---------------------------------------------------------------------------------------- sign-in
  function signOut(message) {
    localStorage.removeItem(KEY);
    state.key = null;
    $("#app").hidden = true;
    $("#signin").hidden = false;
    $("#signin-error").textContent = message || "";
  }

  async function signIn(key) {
    state.key = key;
    localStorage.setItem(KEY, key);
    $("#signin").hidden = true;
    $("#app").hidden = false;
    return load();
  }

  $("#signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("#signin-key").value.trim()); });
  for (const b of document.querySelectorAll("[data-colour]")) b.addEventListener("click", () => setColour(b.dataset.colour));
  $("#refresh").addEventListener("click", refresh);
  wireCanvas();
  if (state.key) signIn(state.key); else signOut("");
})();
