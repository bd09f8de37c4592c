// guestlist admin portal: the little that needs a script.
// - Times are shown in UTC by the server; this adds the browser's local time.
// - Audience uploads stream the chosen file to the API with a progress bar.
//   The browser reads the file from disk as it sends it, so a file of
//   millions of lines is never held whole in memory, here or on the server.
// - Delete stays disabled until the campaign id is typed exactly.
"use strict";

function localTimes() {
  const fmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  });
  for (const el of document.querySelectorAll("time.utc[datetime]")) {
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

function uploads() {
  const form = document.getElementById("upload");
  if (!form) return;
  const campaign = form.dataset.campaign;
  const csrf = form.dataset.csrf;
  const fileInput = form.querySelector("input[type=file]");
  const button = form.querySelector("button[type=submit]");
  const progressBox = document.getElementById("upload-progress");
  const bar = progressBox.querySelector("progress");
  const progressText = progressBox.querySelector(".progress-text");
  const result = document.getElementById("upload-result");

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = fileInput.files[0];
    if (!file) {
      show(result, "error", (box) => { box.textContent = "Choose a file first."; });
      return;
    }
    const mode = form.querySelector("input[name=mode]:checked").value;
    const base = "/v1/campaigns/" + encodeURIComponent(campaign) + "/audience";
    const url = mode === "replace" ? base : base + "/" + mode;
    const xhr = new XMLHttpRequest();
    xhr.open(mode === "replace" ? "PUT" : "POST", url);
    xhr.setRequestHeader("Content-Type", file.name.toLowerCase().endsWith(".csv") ? "text/csv" : "text/plain");
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.responseType = "json";
    const started = performance.now();
    button.disabled = true;
    result.replaceChildren();
    progressBox.hidden = false;
    bar.value = 0;
    progressText.textContent = "Starting…";
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const pct = Math.floor((e.loaded / e.total) * 100);
      bar.value = pct;
      const secs = Math.max((performance.now() - started) / 1000, 0.001);
      progressText.textContent = pct + "% · " + bytes(e.loaded) + " of " + bytes(e.total) +
        " · " + bytes(e.loaded / secs) + "/s";
    });
    xhr.upload.addEventListener("load", () => {
      bar.value = 100;
      progressText.textContent = "100% · " + bytes(file.size) + " sent · checking and saving…";
    });
    xhr.addEventListener("load", () => {
      button.disabled = false;
      const body = xhr.response || {};
      if (xhr.status >= 200 && xhr.status < 300) {
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
      } else {
        bar.value = 0;
        progressText.textContent = "Failed";
        show(result, "error", (box) => {
          let message = body.message || ("Upload failed (HTTP " + xhr.status + ").");
          if (body.line) {
            text(box, "strong", "Line " + num(body.line) + ": ");
            message = message.replace(/^line \d+: /, "");
          }
          box.appendChild(document.createTextNode(message));
          if (xhr.status === 401 || xhr.status === 403) {
            box.appendChild(document.createTextNode(" Your session may have ended: sign in again."));
          }
        });
      }
    });
    xhr.addEventListener("error", () => {
      button.disabled = false;
      progressText.textContent = "Failed";
      show(result, "error", (box) => { box.textContent = "The upload could not reach the server. Nothing was changed."; });
    });
    xhr.send(file);
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
  for (const init of [localTimes, uploads, deleteConfirm]) {
    try { init(); } catch (e) { console.error(init.name, e); }
  }
});
