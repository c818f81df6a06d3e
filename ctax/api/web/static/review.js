/* ctax review page: vanilla JS, no build step. Every call sends the API key kept in localStorage. */
(() => {
  "use strict";

  const KEY = "ctax.review.key";
  const FILTERS = "ctax.review.filters";
  const REJECT_REASONS = ["Not an ad", "Unreadable or empty", "Duplicate", "Offensive or unsafe"];
  // The flags, actions and statuses come from the server (ctax.enums), in a JSON block of the page.
  const VOCABULARY = JSON.parse(document.getElementById("ctax-vocabulary").textContent);
  const FLAG_SHORT = VOCABULARY.flag_short;
  const byName = (values) => Object.freeze(Object.fromEntries(values.map((v) => [v.toUpperCase(), v])));
  const ACTION = byName(VOCABULARY.actions);  // ACTION.CONFIRM, ACTION.RELABEL, ACTION.NEW_LABEL, ACTION.REJECT
  const STATUS = byName(VOCABULARY.review_statuses);  // STATUS.OPEN, STATUS.DECIDED

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  const state = {
    key: localStorage.getItem(KEY),
    me: null,
    view: "queue",
    labels: [],
    byPath: new Map(),
    tree: [],
    expanded: new Set(),
    item: null,
    loading: false,
    upcoming: [],
    skipped: new Set(JSON.parse(sessionStorage.getItem("ctax.review.skipped") || "[]")),
    selected: new Set(),
    lastDecided: null,
    proposals: [],
    proposalIndex: 0,
    excluded: new Map(),
    modal: null,
    images: new Map(),
    // The similar-creatives panel of the item shown: {itemId, status: "loading"|"ok"|"error", result, error},
    // and the review item ids ticked there (decided together with the item).
    similar: null,
    similarSelected: new Set(),
    lastGroup: [],
  };

  // ---------------------------------------------------------------------------------------------- api
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, path, body) {
    const init = { method, headers: { "X-API-Key": state.key || "" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (response.status === 401) {
      signOut("Your key is no longer accepted; sign in again.");
      throw new ApiError(401, data);
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  async function imageUrl(creative) {
    if (!creative.image_url) return null;
    if (state.images.has(creative.id)) return state.images.get(creative.id);
    const promise = fetch(creative.image_url, { headers: { "X-API-Key": state.key } })
      .then((r) => (r.ok ? r.blob() : null))
      .then((blob) => (blob ? URL.createObjectURL(blob) : null))
      .catch(() => null);
    state.images.set(creative.id, promise);
    if (state.images.size > 80) {
      const [oldest] = state.images.keys();
      Promise.resolve(state.images.get(oldest)).then((url) => url && URL.revokeObjectURL(url));
      state.images.delete(oldest);
    }
    return promise;
  }

  // ------------------------------------------------------------------------------------------- toasts
  function toast(html, kind = "", ms = 3500) {
    const el = document.createElement("div");
    el.className = `toast ${kind}`;
    el.innerHTML = html;
    $("#toasts").appendChild(el);
    setTimeout(() => el.remove(), ms);
  }
  const fail = (err) => toast(esc(err.message || String(err)), "error", 6000);

  // ------------------------------------------------------------------------------------------ sign-in
  function signOut(message) {
    localStorage.removeItem(KEY);
    state.key = null;
    $("#app").hidden = true;
    $("#signin").hidden = false;
    $("#signin-error").textContent = message || "";
    $("#signin-key").value = "";
    $("#signin-key").focus();
  }

  async function signIn(key) {
    state.key = key;
    try {
      state.me = await api("GET", "/v1/review/stats");
    } catch (err) {
      state.key = null;
      const msg = err.status === 403
        ? "This key cannot review (it needs the reviewer or admin role)."
        : err.status === 401 ? "That key is not valid." : err.message;
      $("#signin-error").textContent = msg;
      return false;
    }
    localStorage.setItem(KEY, key);
    document.activeElement?.blur();  // the shortcuts listen on the page, not in the key field
    $("#signin").hidden = true;
    $("#app").hidden = false;
    $("#who").textContent = `${state.me.reviewer} · ${state.me.role}`;
    renderStats();
    await loadLabels();
    restoreFilters();
    const linked = /^#item=(\d+)$/.exec(location.hash);  // the map page links a creative's review item
    if (linked) await openLinked(Number(linked[1]));
    switchView("queue");
    loadProposals();
    return true;
  }

  // ------------------------------------------------------------------------------------------- labels
  async function loadLabels() {
    const [list, tree] = await Promise.all([api("GET", "/v1/labels?limit=5000"), api("GET", "/v1/labels/tree")]);
    state.labels = list.items;
    state.byPath = new Map(list.items.map((l) => [l.path, l]));
    state.tree = tree.roots;
    $("#label-paths").innerHTML = list.items.map((l) => `<option value="${esc(l.path)}">`).join("");
    $("#tree-count").textContent = `${list.total} labels`;
    if (!state.expanded.size) state.tree.forEach((root) => state.expanded.add(root.id));
    renderTree();
  }

  function splitPath(path) {
    const names = [];
    let cur = "";
    for (let i = 0; i < path.length; i++) {
      const c = path[i];
      if (c === "\\" && i + 1 < path.length) { cur += path[++i]; continue; }
      if (c === "/") { names.push(cur); cur = ""; continue; }
      cur += c;
    }
    names.push(cur);
    return names;
  }

  function pathHtml(path) {
    // Leaf first: when space runs out the ancestry is cut, never the name that matters.
    if (!path) return `<span class="muted">—</span>`;
    const names = splitPath(path);
    const leaf = names.pop();
    const up = names.length ? `<span class="up"> · ${esc(names.join(" / "))}</span>` : "";
    return `<span class="path" title="${esc(path)}"><span class="leaf">${esc(leaf)}</span>${up}</span>`;
  }

  function searchLabels(query, limit = 50) {
    const terms = query.toLowerCase().split(/\s+/).filter(Boolean);
    if (!terms.length) return state.labels.slice(0, limit);
    const scored = [];
    for (const label of state.labels) {
      const hay = label.path.toLowerCase();
      if (!terms.every((t) => hay.includes(t))) continue;
      const leaf = label.name.toLowerCase();
      let score = 0;
      for (const t of terms) score += leaf.startsWith(t) ? 3 : leaf.includes(t) ? 2 : 1;
      scored.push([score - label.depth * 0.01, label]);
    }
    scored.sort((a, b) => b[0] - a[0]);
    return scored.slice(0, limit).map(([, l]) => l);
  }

  // ------------------------------------------------------------------------------------------- filters
  function filters() {
    const f = {
      flag: $("#f-flag").value || null,
      label: $("#f-label").value.trim() || null,
      q: $("#f-q").value.trim() || null,
      order: $("#f-order").value,
    };
    localStorage.setItem(FILTERS, JSON.stringify(f));
    return f;
  }

  function restoreFilters() {
    const saved = JSON.parse(localStorage.getItem(FILTERS) || "{}");
    $("#f-flag").value = saved.flag || "";
    $("#f-label").value = saved.label || "";
    $("#f-q").value = saved.q || "";
    $("#f-order").value = saved.order || "priority";
  }

  function queryString(f, extra = {}) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...f, ...extra })) if (v !== null && v !== undefined && v !== "") params.set(k, v);
    return params.toString();
  }

  // ------------------------------------------------------------------------------------------- queue
  async function refreshStats() {
    try {
      state.me = await api("GET", "/v1/review/stats");
      renderStats();
    } catch (err) { /* the next action reports it */ }
  }

  function renderStats() {
    $("#count-open").textContent = state.me ? state.me.open : "–";
    $("#stat-mine").textContent = `${state.me ? state.me.decided_by_me_24h : 0} decided today`;
  }

  async function nextItem() {
    if (state.loading) return;
    state.loading = true;
    renderSkeleton();
    try {
      // The API takes at most 1000 ids to pass over: the most recent skips (a Set keeps insertion order).
      const body = { ...filters(), exclude: [...state.skipped].slice(-1000) };
      if (!body.flag) delete body.flag;
      const result = await api("POST", "/v1/review/next", body);
      state.item = result.item;
      $("#left-sub").textContent = `${result.remaining} available`;
      renderItem();
    } catch (err) {
      state.item = null;
      renderItem();
      fail(err);
    } finally {
      state.loading = false;
    }
    loadUpcoming();
    refreshStats();
  }

  async function openItem(id) {
    try {
      if (state.item && state.item.id !== id) await releaseCurrent();
      state.item = await api("POST", `/v1/review/${id}/claim`);
      renderItem();
      renderQueue();
    } catch (err) { fail(err); }
  }

  async function openLinked(id) {
    // An open item is claimed as when picked from the queue; one already decided is shown as it stands.
    try { state.item = await api("POST", `/v1/review/${id}/claim`); } catch (err) {
      try { state.item = await api("GET", `/v1/review/${id}`); } catch (err2) { fail(err2); }
    }
  }

  async function releaseCurrent() {
    if (!state.item || state.item.status !== STATUS.OPEN) return;
    try { await api("DELETE", `/v1/review/${state.item.id}/claim`); } catch (err) { /* it expires anyway */ }
  }

  async function loadUpcoming() {
    try {
      const qs = queryString(filters(), { available: "true", limit: 40 });
      const page = await api("GET", `/v1/review?${qs}`);
      state.upcoming = page.items;
      renderQueue();
      page.items.slice(0, 3).forEach((it) => imageUrl(it.creative));
    } catch (err) { fail(err); }
  }

  function firstText(item) {
    const c = item.creative;
    return (c.texts && c.texts[0]) || c.ocr_text || (c.image_url ? "(image)" : "(empty)");
  }

  function renderQueue() {
    const list = $("#queue");
    const items = state.upcoming;
    if (!items.length) {
      list.innerHTML = `<li class="q-empty">Nothing else waiting with these filters.</li>`;
    } else {
      list.innerHTML = items.map((it) => `
        <li class="q-item ${state.item && state.item.id === it.id ? "current" : ""} ${it.claim && !it.claim.mine ? "claimed" : ""}"
            data-id="${it.id}" title="${esc(it.priority_reason || "")}">
          <input type="checkbox" data-select="${it.id}" ${state.selected.has(it.id) ? "checked" : ""} aria-label="Select item ${it.id}">
          <div>
            <div class="q-title"><span class="chip-dot dot-${esc(it.flag)}"></span><span class="q-text">${esc(firstText(it))}</span></div>
            <div class="q-why">${esc(it.priority_reason || FLAG_SHORT[it.flag] || it.flag)}</div>
          </div>
        </li>`).join("");
    }
    renderBulkbar();
  }

  function renderBulkbar() {
    const n = state.selected.size;
    $("#bulkbar").hidden = n === 0;
    $("#bulk-count").textContent = `${n} selected`;
  }

  function renderSkeleton() {
    if (state.view !== "queue") return;
    $("#main").innerHTML = `
      <div class="item">
        <div class="item-head"><div class="skeleton sk-title"></div></div>
        <div class="skeleton sk-bar"></div>
        <div class="item-body"><div class="card creative"><div class="texts"><div class="skeleton sk-line"></div><div class="skeleton sk-line sk-short"></div></div></div>
        <div class="side"><div class="skeleton sk-panel"></div></div></div>
      </div>`;
  }

  function age(iso) {
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 90) return "just now";
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 129600) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }

  function renderItem() {
    if (state.view !== "queue") return;
    const main = $("#main");
    const it = state.item;
    if (!it) {
      main.innerHTML = `
        <div class="empty">
          <h2>The queue is clear</h2>
          <p>No flagged creatives match these filters${state.skipped.size ? ` (you skipped ${state.skipped.size})` : ""}.</p>
          <p>${state.skipped.size ? `<button class="btn" id="unskip">Show skipped again</button>` : ""}
             <button class="btn" id="go-proposals">Review proposals <kbd>P</kbd></button></p>
        </div>`;
      $("#unskip")?.addEventListener("click", () => { state.skipped.clear(); saveSkipped(); nextItem(); });
      $("#go-proposals")?.addEventListener("click", () => switchView("proposals"));
      renderKeys();
      return;
    }
    const c = it.creative;
    const suggestedId = it.suggested_label && it.suggested_label.id;
    const maxScore = Math.max(0.0001, ...it.top_k.map((r) => r.score));
    const topk = it.top_k.map((r, n) => `
      <li data-pick="${n}" class="${r.label_id === suggestedId ? "suggested" : ""}" title="similarity ${r.similarity?.toFixed?.(3)} · exemplar share ${(r.exemplar_share * 100).toFixed(0)}%">
        <span class="n">${n + 1}</span>
        <span class="cell">${pathHtml(r.path)}</span>
        <span class="bar"><i data-width="${Math.max(4, (100 * r.score) / maxScore).toFixed(0)}"></i></span>
        <span class="score">${r.score.toFixed(3)}</span>
      </li>`).join("");
    const suggestedInTop = it.top_k.some((r) => r.label_id === suggestedId);
    const texts = (c.texts || []).map((t) => `<li>${esc(t)}</li>`).join("");
    main.innerHTML = `
      <article class="item" data-item="${it.id}" data-suggested="${esc(it.suggested_label?.path || "")}">
        <div class="item-head">
          <span class="chip flag-${esc(it.flag)}"><span class="chip-dot dot-${esc(it.flag)}"></span>${esc(FLAG_SHORT[it.flag] || it.flag)}</span>
          <h1>${esc(it.flag_title)}</h1>
          ${it.status === STATUS.DECIDED ? `<span class="chip chip-ok">decided</span>` : ""}
          ${it.proposal_id ? `<span class="chip chip-label">in proposal #${it.proposal_id}</span>` : ""}
          ${it.members > 1 ? `<span class="chip chip-label" title="Near-duplicates of this creative joined its group: your decision applies to all ${it.members} (GET /v1/review/${it.id} lists them)">group of ${it.members} creatives</span>` : ""}
          <div class="item-meta">
            <span>#${it.id}</span>
            <span>flagged ${esc(age(it.created_at))}</span>
            ${it.claim && it.claim.mine ? `<span title="Your claim expires ${esc(it.claim.expires_at)}">held by you</span>` : ""}
          </div>
        </div>
        <div class="why-first"><b>Why it comes first:</b><span>${esc(it.priority_reason || "flagged by the model")}</span></div>
        <div class="item-body">
          <div class="card creative">
            ${c.image_url ? `<div class="media" id="media"><span class="placeholder">loading image…</span></div>` : ""}
            <div class="texts">
              ${texts ? `<p class="section-label">Supplied text</p><ul>${texts}</ul>` : ""}
              ${c.ocr_text ? `<p class="section-label">Text read from the image (OCR)</p><div class="ocr">${esc(c.ocr_text)}</div>` : ""}
              ${!texts && !c.ocr_text ? `<p class="muted">No text: judge by the image.</p>` : ""}
              <p class="meta">${c.external_id ? `${esc(c.external_id)} · ` : ""}${c.campaign ? `campaign ${esc(c.campaign)} · ` : ""}used: ${esc((c.modalities_used || []).join(", ") || "–")}</p>
            </div>
          </div>
          <div class="side">
            <div class="card panel">
              <p class="section-label">Top labels <span class="legend">(shaded: suggested)</span></p>
              <ol class="topk">${topk || `<li class="muted">no labels scored</li>`}</ol>
              ${suggestedId && !suggestedInTop ? `<p class="small muted">Suggested: ${pathHtml(it.suggested_label.path)}</p>` : ""}
            </div>
            <div class="card panel">
              <p class="section-label">Why the model flagged it</p>
              <ul class="reasons">${(it.reasons || []).map((r) => `<li>${esc(r)}</li>`).join("") || "<li>flagged</li>"}</ul>
              <div class="asserted">
                <span>Asserted by the poster:</span>
                ${it.asserted_label ? `<span class="chip chip-label">${esc(it.asserted_label.path)}</span>` : `<span class="muted">none</span>`}
              </div>
            </div>
          </div>
        </div>
        <section class="card panel similar" id="similar" aria-label="Similar creatives"></section>
        <div class="actions">
          <div class="group-note" id="group-chip" hidden></div>
          <button class="btn btn-primary" data-act="confirm" ${suggestedId ? "" : "disabled"} title="Apply the suggested label"><span class="btn-text">Confirm${it.suggested_label ? ` “${esc(splitPath(it.suggested_label.path).pop())}”` : ""}</span><kbd>⏎</kbd></button>
          <button class="btn" data-act="search" title="Search every label">Label…<kbd>/</kbd></button>
          <button class="btn" data-act="new">New label…<kbd>N</kbd></button>
          <button class="btn btn-danger-ghost" data-act="reject">Reject…<kbd>X</kbd></button>
          <span class="spacer"></span>
          <button class="btn btn-ghost" data-act="undo" ${state.lastDecided ? "" : "disabled"}>Undo<kbd>U</kbd></button>
          <button class="btn btn-ghost" data-act="skip">Skip<kbd>S</kbd></button>
        </div>
      </article>`;
    // Widths go through the CSSOM: an inline style attribute in this HTML would break the CSP (style-src 'self').
    main.querySelectorAll(".bar i[data-width]").forEach((bar) => { bar.style.width = `${bar.dataset.width}%`; });
    if (c.image_url) {
      imageUrl(c).then((url) => {
        const media = $("#media");
        if (!media || !state.item || state.item.id !== it.id) return;
        media.innerHTML = url ? `<img alt="creative ${esc(c.id)}" src="${url}">` : `<span class="placeholder">image unavailable</span>`;
      });
    }
    highlightTree(it);
    renderQueue();
    renderKeys();
    showSimilar(it);
  }

  // ---------------------------------------------------------------------------------- similar creatives
  // The item's nearest creatives (POST /v1/search): loaded after the item is shown and never waited for, so a
  // slow or missing search never holds up deciding the item itself.
  const SIMILAR_LIMIT = 8;

  function showSimilar(it) {
    if (!state.similar || state.similar.itemId !== it.id) {
      state.similar = { itemId: it.id, status: "loading", result: null, error: null };
      state.similarSelected.clear();
      loadSimilar(it);
    }
    renderSimilar();
  }

  async function loadSimilar(it) {
    const current = state.similar;
    current.status = "loading";
    current.error = null;
    renderSimilar();
    try {
      current.result = await api("POST", "/v1/search", { creative_id: it.creative.id, limit: SIMILAR_LIMIT });
      current.status = "ok";
      // Only what is shown and still open stays ticked: a decision never reaches an item the reviewer cannot see.
      const open = new Set((current.result.creatives || []).filter(selectable).map((row) => row.review_item_id));
      if (state.similar === current) {
        const wanted = [...state.similarSelected, ...(state.pendingTicks || [])];
        state.similarSelected = new Set(wanted.filter((id) => open.has(id)));
        state.pendingTicks = null;
      }
    } catch (err) {
      current.status = "error";
      current.error = err;
    }
    if (state.similar === current) renderSimilar();
  }

  function similarError(err) {
    if (err.status === 503) return "Similar creatives unavailable: search is busy or its worker is not answering. Retry in a moment.";
    if (err.status === 404 && err.body?.error === "http_error") return "Similar creatives unavailable: this server has no search.";
    return `Similar creatives unavailable: ${err.message}`;
  }

  function selectable(row) {
    return row.review_item_id != null && row.review_status === STATUS.OPEN && row.review_item_id !== state.item?.id;
  }

  function renderSimilar() {
    const panel = $("#similar");
    const view = state.similar;
    if (!panel || !view || !state.item || view.itemId !== state.item.id) return;
    const head = (sub) => `
      <div class="similar-head">
        <p class="section-label">Similar creatives</p>
        <span class="muted small">${sub}</span>
        <span class="similar-keys muted small"><kbd>M</kbd>tick <kbd>A</kbd>all open</span>
      </div>`;
    if (view.status === "loading") {
      panel.innerHTML = `${head("searching…")}<div class="skeleton sk-similar"></div>`;
    } else if (view.status === "error") {
      panel.innerHTML = `${head("")}
        <div class="similar-error" role="alert"><span>${esc(similarError(view.error))}</span>
          <button class="btn btn-sm" data-similar-retry>Retry</button></div>`;
    } else {
      const rows = view.result.creatives || [];
      const indexed = view.result.indexed;
      const sub = `${rows.length} nearest by ${esc(view.result.model_version || "the active version")}`
        + (indexed && indexed.total ? ` · ${indexed.creatives} of ${indexed.total} creatives searchable` : "");
      panel.innerHTML = `${head(sub)}
        ${rows.length ? `<div class="sim-row sim-cols" aria-hidden="true"><span></span><span></span><span>Creative</span><span>Label</span><span>Flag</span><span>Review</span><span>Similarity</span></div>
          <ol class="similar-list">${rows.map(similarRow).join("")}</ol>`
          : `<p class="muted small">No other creative to compare with yet.</p>`}
        <div class="similar-foot" id="similar-foot" hidden></div>`;
      panel.querySelectorAll(".sim-bar i[data-width]").forEach((bar) => { bar.style.width = `${bar.dataset.width}%`; });
      panel.querySelectorAll("img[data-creative]").forEach((img) => {
        imageUrl({ id: img.dataset.creative, image_url: img.dataset.src }).then((url) => { if (url) img.src = url; });
      });
    }
    renderSimilarSelection();
  }

  function similarRow(row) {
    const open = selectable(row);
    const ticked = open && state.similarSelected.has(row.review_item_id);
    const similarity = Number(row.similarity);
    const flag = row.flag && row.flag !== "none"
      ? `<span class="chip flag-${esc(row.flag)}">${esc(FLAG_SHORT[row.flag] || row.flag)}</span>` : `<span class="muted small">not flagged</span>`;
    const review = row.review_item_id == null ? `<span class="muted small">not in review</span>`
      : row.review_status === STATUS.OPEN ? `<span class="chip chip-open">open #${row.review_item_id}</span>`
        : `<span class="chip chip-ok">${esc(row.review_status || "")} #${row.review_item_id}</span>`;
    return `
      <li class="sim-row ${ticked ? "ticked" : ""}" data-creative="${esc(row.id)}">
        ${open ? `<input type="checkbox" data-similar="${row.review_item_id}" ${ticked ? "checked" : ""} aria-label="Decide #${row.review_item_id} with this item">`
          : `<span class="sim-nobox" title="${row.review_item_id == null ? "no review item" : "already decided"}"></span>`}
        <div class="sim-thumb">${row.image_url ? `<img alt="" data-creative="${esc(row.id)}" data-src="${esc(row.image_url)}">` : `<span>Aa</span>`}</div>
        <div class="sim-text" title="${esc(row.text_excerpt || "")}">${esc(row.text_excerpt || (row.image_url ? "(image only)" : "(empty)"))}</div>
        <div class="sim-label">${row.decided_label ? pathHtml(row.decided_label.path) : `<span class="muted small">no decided label</span>`}</div>
        <div class="sim-flag">${flag}</div>
        <div class="sim-review">${review}</div>
        <div class="sim-score" title="cosine similarity to this creative"><span class="sim-bar"><i data-width="${Math.max(2, Math.min(100, similarity * 100)).toFixed(0)}"></i></span><b>${similarity.toFixed(2)}</b></div>
      </li>`;
  }

  function renderSimilarSelection() {
    // Updates what depends on the ticks without rebuilding the list, so keyboard focus stays where it is.
    const n = state.similarSelected.size;
    $$("#similar .similar-list .sim-row").forEach((row) => {
      const box = $("input[data-similar]", row);
      row.classList.toggle("ticked", !!box && box.checked);
    });
    const chip = $("#group-chip");
    if (chip) {
      chip.hidden = n === 0;
      chip.textContent = `Your decision applies to this item and ${n} ticked similar creative${n === 1 ? "" : "s"} (one action, one undo).`;
    }
    const foot = $("#similar-foot");
    if (!foot) return;
    foot.hidden = n === 0;
    if (!n) { foot.innerHTML = ""; return; }
    const it = state.item;
    const leaf = it?.suggested_label ? splitPath(it.suggested_label.path).pop() : null;
    foot.innerHTML = `
      <span class="similar-count"><b>${n + 1} items</b>: this one and ${n} ticked; your decision applies to all of them</span>
      <button class="btn btn-sm btn-primary" data-group="confirm" ${leaf ? "" : "disabled"}>Confirm “${esc(leaf || "–")}” for ${n + 1}<kbd>⏎</kbd></button>
      <button class="btn btn-sm" data-group="search">Label ${n + 1}…<kbd>/</kbd></button>
      <button class="btn btn-sm btn-danger-ghost" data-group="reject">Reject ${n + 1}…<kbd>X</kbd></button>
      <button class="btn btn-ghost btn-sm" data-group="clear" title="Untick all">✕</button>`;
  }

  function tickSimilar(id, on) {
    if (on) state.similarSelected.add(id); else state.similarSelected.delete(id);
    const box = $(`#similar input[data-similar="${id}"]`);
    if (box) box.checked = on;
    renderSimilarSelection();
  }

  function tickAllSimilar() {
    const boxes = $$("#similar input[data-similar]");
    if (!boxes.length) return toast("No similar creative with an open review item.", "", 2000);
    const all = boxes.every((b) => b.checked);
    boxes.forEach((b) => tickSimilar(Number(b.dataset.similar), !all));
  }

  function focusSimilar(step) {
    const boxes = $$("#similar input[data-similar]");
    if (!boxes.length) return toast(state.similar?.status === "ok" ? "No similar creative with an open review item." : "Similar creatives are not loaded.", "", 2000);
    const at = boxes.indexOf(document.activeElement);
    const next = at < 0 ? 0 : Math.min(boxes.length - 1, Math.max(0, at + step));
    boxes[next].focus();
    boxes[next].closest(".sim-row")?.scrollIntoView({ block: "nearest" });
  }

  async function groupAction(action, label) {
    // "Confirm" means: this item's suggested label, for every ticked item too. A ticked item whose own suggestion
    // differs would get its own label from a bulk confirm, so then the label is named (relabel) for all of them.
    if (action !== ACTION.CONFIRM) return { action, label };
    const target = state.item.suggested_label;
    const others = await Promise.all([...state.similarSelected].map((id) => api("GET", `/v1/review/${id}`)));
    const same = others.every((other) => other.suggested_label && other.suggested_label.id === target.id);
    return same ? { action } : { action: ACTION.RELABEL, label: target.path };
  }

  async function decideGroup(action, label, note, { throwErrors = false } = {}) {
    const it = state.item;
    const ids = [it.id, ...state.similarSelected];
    state.loading = true;
    try {
      const chosen = await groupAction(action, label);
      const body = { ids, action: chosen.action };
      if (chosen.label !== undefined && chosen.label !== null) body.label = chosen.label;
      if (note) body.note = note;
      const result = await api("POST", "/v1/review/bulk", body);
      state.lastDecided = it.id;
      state.lastGroup = ids.slice(1);
      ids.forEach((id) => state.selected.delete(id));
      state.similarSelected.clear();
      const what = action === ACTION.REJECT ? "Rejected" : `Labelled ${esc(result.decisions[0]?.label?.path || chosen.label || "")}`;
      toast(`${what}: ${result.decided} items in one decision <span class="muted">· #${ids.join(", #")}</span> &nbsp;<kbd>U</kbd> undo`);
      if (result.label_created) await loadLabels();
    } catch (err) {
      state.loading = false;
      const conflicts = err.body?.detail?.conflicts || err.body?.conflicts;
      if (err.status === 409 && conflicts) {
        // All or nothing: nothing was decided. Untick what cannot be decided now; the reviewer decides again.
        conflicts.forEach((c) => { if (c.id !== it.id) tickSimilar(c.id, false); });
        if (conflicts.some((c) => c.id === it.id)) { fail(err); return nextItem(); }
        loadSimilar(it);
      }
      if (throwErrors) throw err;
      fail(err);
      return;
    }
    state.loading = false;
    closeModal();
    nextItem();
  }

  // ------------------------------------------------------------------------------------------ decisions
  async function decide(action, label, note) {
    const it = state.item;
    if (!it || state.loading) return;
    if (state.similarSelected.size) return decideGroup(action, label, note);
    state.loading = true;
    try {
      const body = { action, version: it.version };
      if (label !== undefined && label !== null) body.label = label;
      if (note) body.note = note;
      const result = await api("POST", `/v1/review/${it.id}/decision`, body);
      state.lastDecided = it.id;
      state.lastGroup = [];
      state.selected.delete(it.id);
      const what = action === ACTION.REJECT ? "Rejected" : `${action === ACTION.NEW_LABEL ? "Created and applied" : "Labelled"} ${esc(result.decision.label?.path || "")}`;
      toast(`${what} <span class="muted">· #${it.id}</span> &nbsp;<kbd>U</kbd> undo`);
      if (result.label_created) await loadLabels();
    } catch (err) {
      state.loading = false;
      fail(err);
      if (err.status === 409) nextItem();
      return;
    }
    state.loading = false;
    closeModal();
    nextItem();
  }

  async function undo() {
    const id = state.lastDecided;
    if (!id) return toast("Nothing to undo yet.");
    try {
      await releaseCurrent();
      // A decision taken with ticked similar creatives is undone for all of them; they come back open and ticked.
      const group = state.lastGroup;
      for (const other of group) await api("POST", `/v1/review/${other}/reopen`);
      state.item = await api("POST", `/v1/review/${id}/reopen`);
      state.lastDecided = null;
      state.lastGroup = [];
      state.similar = null;
      showSimilarTicks(group);
      toast(`Reopened #${[id, ...group].join(", #")}: decide ${group.length ? "them" : "it"} again.`);
      renderItem();
      loadUpcoming();
      refreshStats();
    } catch (err) { fail(err); }
  }

  function showSimilarTicks(ids) {
    // Kept for the next load of the panel: renderItem starts a fresh search and the ticks survive it.
    state.pendingTicks = ids;
  }

  function skip() {
    if (!state.item) return;
    state.skipped.add(state.item.id);
    saveSkipped();
    releaseCurrent().then(nextItem);
  }

  function saveSkipped() {
    sessionStorage.setItem("ctax.review.skipped", JSON.stringify([...state.skipped]));
  }

  function pick(n) {
    const it = state.item;
    if (!it || !it.top_k[n]) return;
    const chosen = it.top_k[n];
    if (it.suggested_label && chosen.label_id === it.suggested_label.id) decide(ACTION.CONFIRM);
    else decide(ACTION.RELABEL, chosen.path);
  }

  async function bulk(action, label, note) {
    const ids = [...state.selected];
    if (!ids.length) return;
    try {
      const body = { ids, action };
      if (label) body.label = label;
      if (note) body.note = note;
      const result = await api("POST", "/v1/review/bulk", body);
      toast(`${result.decided} items decided (${esc(action)}).`);
      state.selected.clear();
      closeModal();
      if (state.item && ids.includes(state.item.id)) nextItem(); else loadUpcoming();
      refreshStats();
    } catch (err) {
      fail(err);
      if (err.status === 409 && err.body?.detail?.conflicts) {
        err.body.detail.conflicts.forEach((c) => state.selected.delete(c.id));
        toast("Items others hold or already decided were unselected; try again.");
        loadUpcoming();
      }
    }
  }

  // ---------------------------------------------------------------------------------------------- modals
  function openModal(kind, html, onKey) {
    state.modal = { kind, onKey };
    $("#modal").innerHTML = html;
    $("#overlay").hidden = false;
    const first = $("#modal input");
    if (first) { first.focus(); first.select(); }
  }

  function closeModal() {
    if (!state.modal) return;
    state.modal = null;
    $("#overlay").hidden = true;
    $("#modal").innerHTML = "";
  }

  function labelPalette({ title, initial = "", onPick }) {
    let options = [];
    let active = 0;
    openModal("search", `
      <div class="modal-head">${esc(title)}</div>
      <div class="modal-body">
        <input class="big" id="palette-q" placeholder="Type to search every label…" value="${esc(initial)}" autocomplete="off">
        <ul class="options" id="palette-list" role="listbox"></ul>
      </div>
      <div class="modal-foot"><span class="muted small push-right">↑ ↓ to move · ⏎ to apply · Esc to close</span></div>`);
    const render = () => {
      options = searchLabels($("#palette-q").value, 60);
      active = Math.min(active, Math.max(0, options.length - 1));
      $("#palette-list").innerHTML = options.map((l, n) => `
        <li role="option" data-n="${n}" class="${n === active ? "active" : ""}">${pathHtml(l.path)}${l.iab_id ? `<span class="iab">IAB ${esc(l.iab_id)}</span>` : ""}<span class="hint">${n === active ? "⏎" : ""}</span></li>`).join("")
        || `<li class="muted">No label matches. Press <kbd>N</kbd> after closing to create one.</li>`;
      $(`#palette-list li.active`)?.scrollIntoView({ block: "nearest" });
    };
    $("#palette-q").addEventListener("input", () => { active = 0; render(); });
    $("#palette-list").addEventListener("click", (e) => {
      const li = e.target.closest("li[data-n]");
      if (li) onPick(options[Number(li.dataset.n)]);
    });
    state.modal.onKey = (e) => {
      if (e.key === "ArrowDown") { active = Math.min(active + 1, options.length - 1); render(); return true; }
      if (e.key === "ArrowUp") { active = Math.max(active - 1, 0); render(); return true; }
      if (e.key === "Enter") { if (options[active]) onPick(options[active]); return true; }
      return false;
    };
    render();
  }

  function defaultParent(it) {
    const source = it?.suggested_label?.path || it?.top_k?.[0]?.path;
    if (!source) return "";
    const names = splitPath(source);
    const parentNames = names.length > 1 ? names.slice(0, -1) : names;
    return parentNames.map((n) => n.replace(/\\/g, "\\\\").replace(/\//g, "\\/")).join("/");
  }

  function newLabelDialog({ parent = "", name = "", onSubmit }) {
    openModal("new", `
      <div class="modal-head">New label</div>
      <div class="modal-body">
        <label class="field-label" for="new-name">Name</label>
        <input class="big" id="new-name" placeholder="e.g. Dog Adoption" value="${esc(name)}" autocomplete="off">
        <label class="field-label" for="new-parent">Under</label>
        <input class="big" id="new-parent" list="label-paths" value="${esc(parent)}" placeholder="an existing label" autocomplete="off">
        <div class="preview" id="new-preview"></div>
        <div class="error" id="new-error" role="alert"></div>
      </div>
      <div class="modal-foot">
        <button class="btn btn-ghost" data-close>Cancel <kbd>Esc</kbd></button>
        <button class="btn btn-primary" id="new-submit">Create and apply <kbd>⏎</kbd></button>
      </div>`);
    const path = () => {
      const p = $("#new-parent").value.trim().replace(/\/+$/, "");
      const n = $("#new-name").value.trim().replace(/\\/g, "\\\\").replace(/\//g, "\\/");
      return p && n ? `${p}/${n}` : "";
    };
    const preview = () => {
      const p = $("#new-parent").value.trim();
      const known = state.byPath.has(p);
      $("#new-preview").innerHTML = path()
        ? `Creates <code>${esc(path())}</code>${p && !known ? ` · <span class="danger">parent not found</span>` : ""}`
        : "Type a name and choose its parent.";
    };
    $("#new-name").addEventListener("input", preview);
    $("#new-parent").addEventListener("input", preview);
    const submit = async () => {
      if (!path()) { $("#new-error").textContent = "Both a name and a parent are needed."; return; }
      try { await onSubmit(path()); } catch (err) { $("#new-error").textContent = err.message; }
    };
    $("#new-submit").addEventListener("click", submit);
    state.modal.onKey = (e) => { if (e.key === "Enter") { submit(); return true; } return false; };
    preview();
  }

  function rejectDialog(onSubmit) {
    openModal("reject", `
      <div class="modal-head">Reject: not a creative we label</div>
      <div class="modal-body">
        <label class="field-label" for="reject-note">Reason</label>
        <input class="big" id="reject-note" placeholder="Why? (required)" autocomplete="off">
        <div class="quick">${REJECT_REASONS.map((r, n) => `<button class="btn btn-sm" data-reason="${esc(r)}">${esc(r)}<kbd>Alt+${n + 1}</kbd></button>`).join("")}</div>
        <div class="error" id="reject-error" role="alert"></div>
      </div>
      <div class="modal-foot">
        <button class="btn btn-ghost" data-close>Cancel <kbd>Esc</kbd></button>
        <button class="btn btn-danger" id="reject-submit">Reject <kbd>⏎</kbd></button>
      </div>`);
    const submit = () => {
      const note = $("#reject-note").value.trim();
      if (!note) { $("#reject-error").textContent = "A reason is required."; return; }
      onSubmit(note);
    };
    $$("[data-reason]").forEach((b) => b.addEventListener("click", () => { $("#reject-note").value = b.dataset.reason; submit(); }));
    $("#reject-submit").addEventListener("click", submit);
    state.modal.onKey = (e) => {
      if (e.key === "Enter") { submit(); return true; }
      if (e.altKey && /^[1-9]$/.test(e.key) && REJECT_REASONS[Number(e.key) - 1]) {
        $("#reject-note").value = REJECT_REASONS[Number(e.key) - 1];
        submit();
        return true;
      }
      return false;
    };
  }

  function helpDialog() {
    const rows = [
      [["⏎", "C"], "Confirm the suggested label"], [["1", "…", "9"], "Apply that label from the top list"],
      [["/", "L"], "Search any label"], [["N"], "New label (created under an existing parent)"],
      [["X"], "Reject, with a reason"], [["S", "→"], "Skip to the next item"], [["U"], "Undo your last decision"],
      [["Space"], "Select the current item for a bulk decision"],
      [["M"], "Move into the similar creatives (↑ ↓ move, Space ticks, Esc leaves)"],
      [["A"], "Tick every similar creative with an open review item"],
      [["⏎", "1", "/", "X"], "With similar creatives ticked: the decision applies to this item and them"],
      [["Q", "P"], "Queue / proposals"], [["J", "K"], "Next / previous proposal"], [["A", "R"], "Accept / reject proposal"],
      [["D"], "Run discovery now (proposals view)"], [["?"], "This help"], [["Esc"], "Close a dialog"],
    ];
    const keys = (ks) => ks.map((k) => (k === "…" ? "…" : `<kbd>${esc(k)}</kbd>`)).join(" ");
    openModal("help", `
      <div class="modal-head">Keyboard shortcuts</div>
      <div class="modal-body"><table class="shortcuts">${rows.map(([k, v]) => `<tr><td>${keys(k)}</td><td>${esc(v)}</td></tr>`).join("")}</table></div>
      <div class="modal-foot"><button class="btn" data-close>Close <kbd>Esc</kbd></button></div>`);
  }

  // ---------------------------------------------------------------------------------------------- tree
  function renderTree() {
    const filter = $("#tree-filter").value.trim().toLowerCase();
    const visible = (node) => !filter || node.path.toLowerCase().includes(filter) || node.children.some(visible);
    const html = (nodes) => nodes.filter(visible).map((node) => {
      const open = filter || state.expanded.has(node.id);
      const hasKids = node.children.length > 0;
      const hit = filter && node.name.toLowerCase().includes(filter);
      return `
        <div role="treeitem" aria-expanded="${hasKids ? !!open : ""}">
          <div class="node ${hit ? "hit" : ""}" data-node="${node.id}" data-path="${esc(node.path)}" title="${esc(node.path)}">
            <button class="twisty" data-toggle="${node.id}" tabindex="-1">${hasKids ? (open ? "▾" : "▸") : ""}</button>
            <span class="node-name">${esc(node.name)}</span>${node.iab_id ? `<span class="iab">${esc(node.iab_id)}</span>` : ""}
            <button class="node-add" data-add="${esc(node.path)}" title="New label under ${esc(node.name)}" tabindex="-1">+</button>
          </div>
          ${hasKids && open ? `<div class="children" role="group">${html(node.children)}</div>` : ""}
        </div>`;
    }).join("");
    $("#tree").innerHTML = html(state.tree) || `<p class="q-empty">No label matches.</p>`;
    if (state.item) highlightTree(state.item);
  }

  function highlightTree(it) {
    // The suggested label is shown in its place in the tree, its branch opened, so its siblings are in view.
    const id = it?.suggested_label?.id;
    const path = it?.suggested_label?.path;
    if (path && !$("#tree-filter").value) {
      const names = splitPath(path);
      let opened = false;
      for (let n = 1; n < names.length; n++) {
        const ancestor = state.byPath.get(names.slice(0, n).map((x) => x.replace(/\\/g, "\\\\").replace(/\//g, "\\/")).join("/"));
        if (ancestor && !state.expanded.has(ancestor.id)) { state.expanded.add(ancestor.id); opened = true; }
      }
      if (opened) { renderTree(); return; }
    }
    $$(".node.suggested").forEach((n) => n.classList.remove("suggested"));
    const node = id ? $(`.node[data-node="${id}"]`) : null;
    if (node) { node.classList.add("suggested"); node.scrollIntoView({ block: "nearest" }); }
  }

  // ----------------------------------------------------------------------------------------- proposals
  async function loadProposals() {
    try {
      const page = await api("GET", "/v1/proposals?sample=24");
      state.proposals = page.items;
      state.proposalIndex = Math.min(state.proposalIndex, Math.max(0, page.items.length - 1));
      $("#count-proposals").textContent = page.total;
      state.discoveryPending = page.discovery_pending;
      if (state.view === "proposals") renderProposals();
    } catch (err) { fail(err); }
  }

  function renderProposals() {
    const main = $("#main");
    const list = state.proposals;
    const current = list[state.proposalIndex];
    const toolbar = `
      <div class="prop-toolbar">
        <h1>New-label proposals</h1>
        <span class="muted small">${state.discoveryPending ? "discovery queued…" : "clusters of creatives that fit no label"}</span>
        <button class="btn" id="discover">Run discovery <kbd>D</kbd></button>
      </div>`;
    if (!list.length) {
      main.innerHTML = `<div class="proposals">${toolbar}<div class="empty"><h2>No open proposals</h2><p>Discovery clusters creatives flagged “fits no label”. It runs by itself as they accumulate, or now with <kbd>D</kbd>.</p></div></div>`;
    } else {
      main.innerHTML = `<div class="proposals">${toolbar}${list.map((p, n) => proposalCard(p, n === state.proposalIndex)).join("")}</div>`;
    }
    $("#discover").addEventListener("click", runDiscovery);
    $$(".prop-card").forEach((card) => card.addEventListener("click", (e) => {
      const n = Number(card.dataset.n);
      if (n !== state.proposalIndex && !e.target.closest("input,button,label")) { state.proposalIndex = n; renderProposals(); }
    }));
    if (current) {
      $$(`.member img[data-creative]`).forEach((img) => {
        imageUrl({ id: img.dataset.creative, image_url: img.dataset.src }).then((url) => { if (url) img.src = url; });
      });
      $("#p-accept")?.addEventListener("click", () => acceptProposal(current));
      ["#p-name", "#p-parent"].forEach((sel) => $(sel)?.addEventListener("input", () => renderAcceptButton(current)));
      renderAcceptButton(current);
      $("#p-reject")?.addEventListener("click", () => rejectProposal(current));
      $$("[data-member]").forEach((box) => box.addEventListener("change", () => {
        const ex = state.excluded.get(current.id) || new Set();
        if (box.checked) ex.delete(box.dataset.member); else ex.add(box.dataset.member);
        state.excluded.set(current.id, ex);
        box.closest(".member").classList.toggle("excluded", !box.checked);
      }));
      $(".prop-card.current")?.scrollIntoView({ block: "nearest" });
    }
    // The left pane lists proposals too, for orientation.
    $("#left-title").textContent = "Proposals";
    $("#left-sub").textContent = `${list.length} open`;
    $("#queue").innerHTML = list.map((p, n) => `
      <li class="q-item ${n === state.proposalIndex ? "current" : ""}" data-proposal="${n}">
        <span class="chip-dot dot-new_label chip-dot-q"></span>
        <div><div class="q-text">${esc(p.suggested_name)}</div><div class="q-why">${p.size} creatives · under ${esc(p.suggested_parent?.path || "?")}</div></div>
      </li>`).join("") || `<li class="q-empty">No open proposals.</li>`;
    renderKeys();
  }

  function proposalCard(p, current) {
    const head = `
      <div class="prop-title">
        <span class="chip flag-new_label">${p.size} creatives</span>
        <h2>${esc(p.suggested_name)}</h2>
        <span class="muted">under ${pathHtml(p.suggested_parent?.path)}</span>
        <span class="muted small push-left">cohesion ${p.cohesion != null ? p.cohesion.toFixed(2) : "–"} · #${p.id}</span>
      </div>
      <div class="terms">${p.terms.map((t) => `<span class="chip chip-label">${esc(t)}</span>`).join("")}</div>`;
    if (!current) return `<div class="card prop-card" data-n="${state.proposals.indexOf(p)}">${head}</div>`;
    const ex = state.excluded.get(p.id) || new Set();
    const members = p.members.map((m) => `
      <label class="member ${ex.has(m.creative_id) ? "excluded" : ""}">
        <input type="checkbox" data-member="${esc(m.creative_id)}" ${ex.has(m.creative_id) ? "" : "checked"}>
        <div>${m.image_url ? `<img alt="" data-creative="${esc(m.creative_id)}" data-src="${esc(m.image_url)}">` : ""}
          <div class="snip">${esc((m.texts && m.texts.join(" · ")) || m.ocr_text || "(image)")}</div></div>
      </label>`).join("");
    return `
      <div class="card prop-card current" data-n="${state.proposals.indexOf(p)}">
        ${head}
        <div class="prop-edit">
          <label>Name<input id="p-name" value="${esc(p.suggested_name)}" autocomplete="off"></label>
          <label>Under<input id="p-parent" list="label-paths" value="${esc(p.suggested_parent?.path || "")}" autocomplete="off"></label>
          <button class="btn btn-danger-ghost" id="p-reject">Reject <kbd>R</kbd></button>
          <button class="btn btn-primary" id="p-accept">Accept and label <kbd>A</kbd></button>
        </div>
        <p class="section-label">Members${p.size > p.members.length ? ` (first ${p.members.length} of ${p.size})` : ""} · untick the ones that do not belong</p>
        <div class="members">${members}</div>
      </div>`;
  }

  function proposalTarget(p) {
    const name = ($("#p-name")?.value.trim() || p.suggested_name).replace(/\\/g, "\\\\").replace(/\//g, "\\/");
    const parent = $("#p-parent")?.value.trim().replace(/\/+$/, "") || p.suggested_parent?.path || "";
    const path = parent ? `${parent}/${name}` : name;
    return { name, parent, path, exists: state.byPath.has(path) };
  }

  function renderAcceptButton(p) {
    const button = $("#p-accept");
    if (!button) return;
    const target = proposalTarget(p);
    button.innerHTML = `${target.exists ? "Add to existing label" : "Accept and label"} <kbd>A</kbd>`;
    button.title = target.exists ? `${target.path} exists: its members get that label` : `Creates ${target.path}`;
  }

  async function acceptProposal(p) {
    const ex = state.excluded.get(p.id) || new Set();
    const target = proposalTarget(p);
    // A label that exists already (an earlier proposal of the same missing label) is used, not duplicated.
    const body = target.exists ? { into: target.path } : { name: $("#p-name")?.value.trim() || p.suggested_name, parent: target.parent || undefined };
    if (ex.size) body.members = p.members.map((m) => m.creative_id).filter((id) => !ex.has(id));
    try {
      const result = await api("POST", `/v1/proposals/${p.id}/accept`, body);
      toast(`${target.exists ? "Added to" : "Created"} ${esc(result.label.path)}: ${result.labelled} creatives labelled.`);
      await loadLabels();
      await loadProposals();
      refreshStats();
    } catch (err) { fail(err); }
  }

  async function rejectProposal(p) {
    try {
      await api("POST", `/v1/proposals/${p.id}/reject`);
      toast(`Proposal “${esc(p.suggested_name)}” rejected; its creatives stay in the queue.`);
      await loadProposals();
    } catch (err) { fail(err); }
  }

  async function runDiscovery() {
    try {
      await api("POST", "/v1/proposals/discover", {});
      toast("Discovery queued: proposals refresh in a few seconds.");
      state.discoveryPending = true;
      renderProposals();
      setTimeout(loadProposals, 4000);
      setTimeout(loadProposals, 12000);
    } catch (err) { fail(err); }
  }

  // ---------------------------------------------------------------------------------------------- views
  function switchView(view) {
    state.view = view;
    $$(".tab").forEach((t) => t.classList.toggle("active", t.dataset.view === view));
    $("#filters").style.visibility = view === "queue" ? "visible" : "hidden";
    if (view === "queue") {
      $("#left-title").textContent = "Up next";
      if (state.item) { renderItem(); loadUpcoming(); } else nextItem();
    } else {
      renderProposalsLoading();
      loadProposals();
    }
    renderKeys();
  }

  function renderProposalsLoading() {
    $("#main").innerHTML = `<div class="proposals"><div class="skeleton sk-bar"></div><div class="skeleton sk-card"></div></div>`;
  }

  function renderKeys() {
    const hints = state.view === "queue"
      ? [["⏎", "confirm"], ["1–9", "pick"], ["/", "search"], ["N", "new label"], ["X", "reject"], ["S", "skip"], ["U", "undo"], ["M", "similar"], ["Space", "select"], ["P", "proposals"], ["?", "help"]]
      : [["J/K", "next/previous"], ["A", "accept"], ["R", "reject"], ["D", "discover"], ["Q", "queue"], ["?", "help"]];
    $("#keys").innerHTML = hints.map(([k, v]) => `<span><kbd>${esc(k)}</kbd>${esc(v)}</span>`).join("");
  }

  // -------------------------------------------------------------------------------------------- keyboard
  function onKey(e) {
    if ($("#app").hidden) return;
    if (state.modal) {
      if (e.key === "Escape") { e.preventDefault(); closeModal(); return; }
      if (state.modal.onKey && state.modal.onKey(e)) { e.preventDefault(); }
      return;
    }
    const inSimilar = e.target.matches("#similar input[data-similar]");
    if (inSimilar) {
      // In the similar list: arrows move, Space ticks (the checkbox's own), Esc leaves; every other key is the
      // page's, so a reviewer ticks twins and decides without reaching for the mouse.
      if (e.key === " ") return;
      if (e.key === "ArrowDown" || e.key === "j") { e.preventDefault(); return focusSimilar(1); }
      if (e.key === "ArrowUp" || e.key === "k") { e.preventDefault(); return focusSimilar(-1); }
      if (e.key === "Escape" || e.key === "Tab") { if (e.key === "Escape") e.target.blur(); return; }
      e.target.blur();
    }
    const typing = !inSimilar && e.target.matches("input, select, textarea");
    if (typing) {
      if (e.key === "Escape") e.target.blur();
      if (e.key === "Enter" && e.target.closest("#filters")) { e.preventDefault(); e.target.blur(); releaseCurrent().then(() => { state.item = null; nextItem(); }); }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key;
    const handled = () => e.preventDefault();
    if (k === "?") { handled(); return helpDialog(); }
    if (k === "q" || k === "Q") { handled(); return switchView("queue"); }
    if (k === "p" || k === "P") { handled(); return switchView("proposals"); }
    if (state.view === "proposals") {
      const current = state.proposals[state.proposalIndex];
      if (k === "j" || k === "ArrowDown") { handled(); state.proposalIndex = Math.min(state.proposalIndex + 1, state.proposals.length - 1); return renderProposals(); }
      if (k === "k" || k === "ArrowUp") { handled(); state.proposalIndex = Math.max(state.proposalIndex - 1, 0); return renderProposals(); }
      if ((k === "a" || k === "A") && current) { handled(); return acceptProposal(current); }
      if ((k === "r" || k === "R") && current) { handled(); return rejectProposal(current); }
      if (k === "d" || k === "D") { handled(); return runDiscovery(); }
      if ((k === "e" || k === "E") && current) { handled(); $("#p-name")?.focus(); return; }
      return;
    }
    const it = state.item;
    if (k === "Enter" || k === "c" || k === "C") { handled(); if (it?.suggested_label) decide(ACTION.CONFIRM); return; }
    if (/^[1-9]$/.test(k)) { handled(); return pick(Number(k) - 1); }
    if (k === "/" || k === "l" || k === "L") {
      handled();
      if (!it) return;
      return labelPalette({ title: "Apply another label", onPick: (label) => decide(ACTION.RELABEL, label.path) });
    }
    if (k === "n" || k === "N") {
      handled();
      if (!it) return;
      return newLabelDialog({ parent: defaultParent(it), onSubmit: (path) => decideOrThrow(ACTION.NEW_LABEL, path) });
    }
    if (k === "x" || k === "X") { handled(); if (it) rejectDialog((note) => decide(ACTION.REJECT, null, note)); return; }
    if (k === "s" || k === "S" || k === "ArrowRight") { handled(); return skip(); }
    if (k === "u" || k === "U") { handled(); return undo(); }
    if ((k === "m" || k === "M") && it) { handled(); return focusSimilar(0); }
    if ((k === "a" || k === "A") && it) { handled(); return tickAllSimilar(); }
    if (k === " " && it) {
      handled();
      if (state.selected.has(it.id)) state.selected.delete(it.id); else state.selected.add(it.id);
      renderQueue();
      toast(`${state.selected.size} selected for a bulk decision.`, "", 1800);
    }
  }

  async function decideOrThrow(action, label) {
    // The new-label dialog shows the API's refusal (parent missing, duplicate) in place instead of closing.
    const it = state.item;
    if (state.similarSelected.size) return decideGroup(action, label, null, { throwErrors: true });
    const result = await api("POST", `/v1/review/${it.id}/decision`, { action, label, version: it.version });
    state.lastDecided = it.id;
    state.lastGroup = [];
    toast(`Created and applied ${esc(result.decision.label?.path || label)} <kbd>U</kbd> undo`);
    closeModal();
    await loadLabels();
    nextItem();
  }

  // --------------------------------------------------------------------------------------------- wiring
  function wire() {
    $("#signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("#signin-key").value.trim()); });
    $("#signout").addEventListener("click", () => { releaseCurrent(); signOut(""); });
    $("#help-btn").addEventListener("click", helpDialog);
    $$(".tab").forEach((t) => t.addEventListener("click", () => switchView(t.dataset.view)));
    $("#filters").addEventListener("change", () => releaseCurrent().then(() => { state.item = null; nextItem(); }));
    $("#filters").addEventListener("submit", (e) => e.preventDefault());
    $("#tree-filter").addEventListener("input", renderTree);
    $("#overlay").addEventListener("click", (e) => { if (e.target.id === "overlay" || e.target.closest("[data-close]")) closeModal(); });
    $("#main").addEventListener("click", (e) => {
      const act = e.target.closest("[data-act]")?.dataset.act;
      const pickRow = e.target.closest("[data-pick]");
      const it = state.item;
      if (pickRow) return pick(Number(pickRow.dataset.pick));
      if (!act) return;
      if (act === "confirm") return decide(ACTION.CONFIRM);
      if (act === "search") return labelPalette({ title: "Apply another label", onPick: (l) => decide(ACTION.RELABEL, l.path) });
      if (act === "new") return newLabelDialog({ parent: defaultParent(it), onSubmit: (p) => decideOrThrow(ACTION.NEW_LABEL, p) });
      if (act === "reject") return rejectDialog((note) => decide(ACTION.REJECT, null, note));
      if (act === "skip") return skip();
      if (act === "undo") return undo();
    });
    $("#main").addEventListener("click", (e) => {
      if (e.target.closest("[data-similar-retry]") && state.item) return loadSimilar(state.item);
      const group = e.target.closest("[data-group]")?.dataset.group;
      if (!group || !state.item) return;
      if (group === "clear") { [...state.similarSelected].forEach((id) => tickSimilar(id, false)); return; }
      if (group === "confirm") return decide(ACTION.CONFIRM);
      if (group === "search") return labelPalette({ title: `Label ${state.similarSelected.size + 1} items`, onPick: (l) => decide(ACTION.RELABEL, l.path) });
      if (group === "reject") return rejectDialog((note) => decide(ACTION.REJECT, null, note));
    });
    $("#main").addEventListener("change", (e) => {
      const box = e.target.closest("input[data-similar]");
      if (box) tickSimilar(Number(box.dataset.similar), box.checked);
    });
    $("#queue").addEventListener("click", (e) => {
      const box = e.target.closest("[data-select]");
      if (box) {
        const id = Number(box.dataset.select);
        if (box.checked) state.selected.add(id); else state.selected.delete(id);
        return renderBulkbar();
      }
      const row = e.target.closest("[data-id]");
      if (row) return openItem(Number(row.dataset.id));
      const prop = e.target.closest("[data-proposal]");
      if (prop) { state.proposalIndex = Number(prop.dataset.proposal); renderProposals(); }
    });
    $("#bulkbar").addEventListener("click", (e) => {
      const what = e.target.closest("[data-bulk]")?.dataset.bulk;
      if (what === "clear") { state.selected.clear(); return renderQueue(); }
      if (what === "confirm") return bulk(ACTION.CONFIRM);
      if (what === "relabel") return labelPalette({ title: `Relabel ${state.selected.size} items`, onPick: (l) => bulk(ACTION.RELABEL, l.path) });
      if (what === "reject") return rejectDialog((note) => bulk(ACTION.REJECT, null, note));
    });
    $("#tree").addEventListener("click", (e) => {
      const toggle = e.target.closest("[data-toggle]");
      const add = e.target.closest("[data-add]");
      if (toggle) {
        const id = Number(toggle.dataset.toggle);
        if (state.expanded.has(id)) state.expanded.delete(id); else state.expanded.add(id);
        return renderTree();
      }
      if (add && state.item) {
        return newLabelDialog({ parent: add.dataset.add, onSubmit: (p) => decideOrThrow(ACTION.NEW_LABEL, p) });
      }
      const node = e.target.closest("[data-node]");
      if (node && state.item && state.view === "queue") {
        labelPalette({ title: "Apply this label?", initial: node.dataset.path, onPick: (l) => decide(ACTION.RELABEL, l.path) });
      }
    });
    document.addEventListener("keydown", onKey);
    window.addEventListener("beforeunload", () => {
      // Hand the item back so the next reviewer need not wait for the claim to expire.
      if (state.item && state.item.status === STATUS.OPEN && state.key) {
        fetch(`/v1/review/${state.item.id}/claim`, { method: "DELETE", headers: { "X-API-Key": state.key }, keepalive: true });
      }
    });
  }

  wire();
  if (state.key) {
    signIn(state.key).then((ok) => { if (!ok) signOut("Sign in again."); });
  } else {
    signOut("");
  }
})();
