// guestlist admin portal: the little that needs a script.
// - Times are shown in UTC by the server; this adds the browser's local time.
// - Audience uploads stream the chosen file to the API with a progress bar.
//   The browser reads the file from disk as it sends it, so a file of
//   millions of lines is never held whole in memory, here or on the server.
//   A replace or remove is previewed first (a dry run) and, when it would
//   remove more than the page's threshold of the audience, published only
//   once confirmed. The page's facts, versions and history then refresh in place.
// - Delete stays disabled until the campaign id is typed exactly.
"use strict";

function localTimes(root = document) {
  const fmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  });
  for (const el of root.querySelectorAll("time.utc[datetime]")) {
    if (el.querySelector(".local")) continue;
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) continue;
    const local = document.createElement("span");
    local.className = "local";
    local.textContent = "local: " + fmt.format(when);
    el.appendChild(local);
  }
}

function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
  return (n / 1024 / 1024).toFixed(1) + " MB";
}

function num(n) {
  return Number(n).toLocaleString("en-US");
}

function show(target, kind, build) {
  target.replaceChildren();
  const box = document.createElement("div");
  box.className = "alert " + kind + (kind === "ok" ? " result" : "");
  build(box);
  target.appendChild(box);
}

function text(parent, tag, content) {
  const el = document.createElement(tag);
  el.textContent = content;
  parent.appendChild(el);
  return el;
}

// Sends `file` with `method` to `url`, reporting upload progress; resolves
// with the status and the JSON body (status 0 when the server was not reached).
function sendFile(method, url, file, csrf, onProgress, csv) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("Content-Type", csv ? "text/csv" : "text/plain");
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); });
    xhr.upload.addEventListener("load", () => onProgress(file.size, file.size));
    xhr.addEventListener("load", () => resolve({ status: xhr.status, body: xhr.response || {} }));
    xhr.addEventListener("error", () => resolve({ status: 0, body: {} }));
    xhr.send(file);
  });
}

// Waits for one of the buttons built in `box`; resolves with its value.
function choose(box, choices) {
  return new Promise((resolve) => {
    const row = document.createElement("div");
    row.className = "actions";
    for (const [label, value, kind] of choices) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = kind;
      b.textContent = label;
      b.addEventListener("click", () => { row.remove(); resolve(value); });
      row.appendChild(b);
    }
    box.appendChild(row);
    row.querySelector("button").focus();
  });
}

// Swaps in the page's facts and history as the server now renders them,
// and drops a banner about an earlier action ("Campaign created.").
async function refreshCampaign() {
  const res = await fetch(location.pathname, { credentials: "same-origin" });
  if (!res.ok) return;
  const fresh = new DOMParser().parseFromString(await res.text(), "text/html");
  for (const selector of ["dl.facts", "section[aria-labelledby=versions-title]", "section[aria-labelledby=audit-title]"]) {
    const now = document.querySelector(selector);
    const next = fresh.querySelector(selector);
    if (now && next) {
      now.replaceWith(next);
      localTimes(next);
    }
  }
  const banner = document.querySelector(".page-head + .alert.ok[role=status]");
  if (banner) banner.remove();
  if (location.search.includes("done=")) history.replaceState(null, "", location.pathname);
}

// Trims what the server trims around a field: ASCII white space only.
function asciiTrim(s) {
  return s.replace(/^[ \t\r\n\f]+|[ \t\r\n\f]+$/g, "");
}

// The first rows of CSV text, read as RFC 4180 (quoted fields with commas,
// doubled quotes and line breaks): for the preview only, the server parses
// the whole file. A last row that may be cut off by the sample is dropped.
function csvRows(sample, limit, complete, keepFirst) {
  const rows = [];
  let row = [], field = "", quoted = false, i = 0;
  if (sample.charCodeAt(0) === 0xfeff) i = 1;
  for (; i < sample.length && rows.length < limit; i++) {
    const c = sample[i];
    if (quoted) {
      if (c === '"' && sample[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === "") quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && sample[i + 1] === "\n") i++;
      row.push(field); field = "";
      // Blank rows (`,,,` too) are skipped, as the server skips them,
      // except a declared header's, which the caller takes as it comes.
      if (row.some((f) => asciiTrim(f) !== "") || (keepFirst && rows.length === 0)) rows.push(row);
      row = [];
    } else field += c;
  }
  if (complete && rows.length < limit && (field !== "" || row.length > 0)) { row.push(field); rows.push(row); }
  return rows;
}

// Shows the first rows of the chosen file as a table, the ID column marked,
// so a wrong column or a missing header is seen before anything is sent.
let previewGeneration = 0;
async function previewFile(file, header, column, target) {
  // Typing in the column field starts a preview per key; only the latest
  // may draw, or several tables would pile up.
  const generation = ++previewGeneration;
  target.replaceChildren();
  if (!file) return;
  const SAMPLE = 64 * 1024;
  const sample = await file.slice(0, SAMPLE).text();
  if (generation !== previewGeneration) return;
  const rows = csvRows(sample, 6, file.size <= SAMPLE, header);
  if (rows.length === 0) return;
  const names = header ? rows[0] : null;
  const body = header ? rows.slice(1) : rows;
  let index = -1;
  const wanted = asciiTrim(column);
  if (/^[0-9]+$/.test(wanted)) index = Number(wanted) - 1;
  else if (wanted && names) index = names.findIndex((n) => asciiTrim(n) === wanted);
  else if (!wanted && rows[0].length === 1) index = 0;
  const table = document.createElement("table");
  table.className = "preview";
  const hint = index >= 0 ? ""
    : wanted && !/^[0-9]+$/.test(wanted) && !names ? ": a column name needs \u201cThe first row is a header\u201d ticked"
    : wanted ? ": no such column"
    : rows[0].length > 1 ? ": choose the ID column" : "";
  text(table, "caption", "First rows of " + file.name + hint);
  if (names) {
    const tr = document.createElement("tr");
    names.forEach((n, i) => { const th = text(tr, "th", n); if (i === index) th.className = "id-column"; });
    table.appendChild(tr);
  }
  for (const r of body) {
    const tr = document.createElement("tr");
    r.forEach((v, i) => { const td = text(tr, "td", v); if (i === index) td.className = "id-column"; });
    table.appendChild(tr);
  }
  target.appendChild(table);
}

function uploads() {
  const form = document.getElementById("upload");
  if (!form) return;
  const headerBox = document.getElementById("csv-header");
  const columnInput = document.getElementById("csv-column");
  const previewBox = document.getElementById("file-preview");
  const campaign = form.dataset.campaign;
  const csrf = form.dataset.csrf;
  // A change removing more than this share of the audience is published
  // only after the administrator confirms it.
  // Unreadable, it fails closed: every removal asks.
  const parsedShare = Number.parseFloat(form.dataset.confirmShare);
  const confirmShare = Number.isFinite(parsedShare) ? parsedShare : 0;
  const fileInput = form.querySelector("input[type=file]");
  const button = form.querySelector("button[type=submit]");
  const progressBox = document.getElementById("upload-progress");
  const bar = progressBox.querySelector("progress");
  const progressText = progressBox.querySelector(".progress-text");
  const result = document.getElementById("upload-result");
  const preview = () => previewFile(fileInput.files[0], headerBox.checked, columnInput.value, previewBox)
    .catch((e) => console.error("preview", e));
  for (const el of [fileInput, headerBox]) el.addEventListener("change", preview);
  columnInput.addEventListener("input", preview);

  const failed = (status, body) => {
    bar.value = 0;
    progressText.textContent = "Failed";
    show(result, "error", (box) => {
      if (status === 0) {
        box.textContent = "The upload could not reach the server. Nothing was changed.";
        return;
      }
      let message = body.message || ("Upload failed (HTTP " + status + ").");
      if (body.line) {
        text(box, "strong", "Line " + num(body.line) + ": ");
        message = message.replace(/^line \d+: /, "");
      }
      box.appendChild(document.createTextNode(message));
      if (status === 401 || status === 403) {
        box.appendChild(document.createTextNode(" Your session may have ended: sign in again."));
      }
    });
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = fileInput.files[0];
    if (!file) {
      show(result, "error", (box) => { box.textContent = "Choose a file first."; });
      return;
    }
    const mode = form.querySelector("input[name=mode]:checked").value;
    const base = "/v1/campaigns/" + encodeURIComponent(campaign) + "/audience";
    const path = mode === "replace" ? base : base + "/" + mode;
    // The CSV options go with a .csv file, or make any file CSV.
    const params = new URLSearchParams();
    if (headerBox.checked) params.set("header", "true");
    if (asciiTrim(columnInput.value)) params.set("column", asciiTrim(columnInput.value));
    const csv = file.name.toLowerCase().endsWith(".csv") || params.toString() !== "";
    const urlWith = (extra) => {
      const q = new URLSearchParams(params);
      if (extra) q.set("dry_run", "true");
      const query = q.toString();
      return query ? path + "?" + query : path;
    };
    const url = urlWith(false);
    const method = mode === "replace" ? "PUT" : "POST";
    let started = performance.now();
    let phase = "";
    const progress = (loaded, total) => {
      const pct = Math.floor((loaded / Math.max(total, 1)) * 100);
      bar.value = pct;
      const secs = Math.max((performance.now() - started) / 1000, 0.001);
      progressText.textContent = phase + pct + "% · " + bytes(loaded) + " of " + bytes(total) +
        " · " + bytes(loaded / secs) + "/s";
    };
    button.disabled = true;
    result.replaceChildren();
    progressBox.hidden = false;
    bar.value = 0;
    try {
      // Replace and remove can take IDs away: preview them first, and ask
      // before a change that removes a large share of the audience.
      if (mode !== "add") {
        phase = "Previewing · ";
        progressText.textContent = "Checking what would change…";
        const dry = await sendFile(method, urlWith(true), file, csrf, progress, csv);
        if (dry.status < 200 || dry.status >= 300) return failed(dry.status, dry.body);
        const p = dry.body;
        const share = p.current_size > 0 ? p.would_remove / p.current_size : 0;
        if (share > confirmShare) {
          progressText.textContent = "Previewed · nothing changed yet";
          let box;
          show(result, "warn", (b) => {
            box = b;
            text(b, "strong", "This would remove " + num(p.would_remove) + " of " + num(p.current_size) +
              " IDs (" + (share * 100).toFixed(1) + "%).");
            const dl = document.createElement("dl");
            for (const [k, v] of [["Would add", num(p.would_add)], ["Would remove", num(p.would_remove)],
              ["Size now", num(p.current_size)], ["Size after", num(p.new_size)],
              ["Some removed IDs", p.would_remove_sample.join(", ")]]) {
              text(dl, "dt", k); text(dl, "dd", v);
            }
            b.appendChild(dl);
            text(b, "p", "Nothing has changed yet. Publish it?");
          });
          const go = await choose(box, [["Publish anyway", true, "danger"], ["Cancel", false, ""]]);
          if (!go) {
            bar.value = 0;
            progressText.textContent = "Cancelled";
            show(result, "ok", (b) => { text(b, "strong", "Nothing was changed."); });
            return;
          }
        }
      }
      phase = "";
      started = performance.now();
      progressText.textContent = "Starting…";
      const sent = await sendFile(method, url, file, csrf, (loaded, total) => {
        progress(loaded, total);
        if (loaded >= total) progressText.textContent = "100% · " + bytes(file.size) + " sent · checking and saving…";
      }, csv);
      if (sent.status < 200 || sent.status >= 300) return failed(sent.status, sent.body);
      const body = sent.body;
      progressText.textContent = "Done · " + bytes(file.size) + " in " +
        ((performance.now() - started) / 1000).toFixed(1) + " s";
      document.getElementById("audience-size").textContent = num(body.audience_size);
      document.getElementById("audience-version").textContent = body.version;
      show(result, "ok", (box) => {
        text(box, "strong", mode === "replace" ? "Audience replaced." : mode === "add" ? "IDs added." : "IDs removed.");
        const dl = document.createElement("dl");
        const rows = mode === "replace"
          ? [["Received", body.received], ["Duplicates", body.duplicates]]
          : [[mode === "add" ? "Added" : "Removed", mode === "add" ? body.added : body.removed]];
        rows.push(["New size", body.audience_size], ["Version", body.version]);
        for (const [k, v] of rows) { text(dl, "dt", k); text(dl, "dd", num(v)); }
        box.appendChild(dl);
      });
      await refreshCampaign();
    } finally {
      button.disabled = false;
    }
  });
}

function deleteConfirm() {
  const input = document.querySelector("input[data-must-equal]");
  if (!input) return;
  const button = input.form.querySelector("button[type=submit]");
  const sync = () => { button.disabled = input.value.trim() !== input.dataset.mustEqual; };
  input.addEventListener("input", sync);
  sync();
}

document.addEventListener("DOMContentLoaded", () => {
  // Each feature on its own, so one failing cannot disable the others.
  for (const init of [() => localTimes(), uploads, deleteConfirm]) {
    try { init(); } catch (e) { console.error(init.name, e); }
  }
});
