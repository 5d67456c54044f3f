// Upload a scan with a progress bar: XMLHttpRequest reports upload progress (fetch does not).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const status = document.getElementById("upload-status");
  const bar = document.getElementById("upload-progress");
  const text = document.getElementById("upload-text");
  const result = document.getElementById("upload-result");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRF-Token", document.body.dataset.csrf);
    xhr.setRequestHeader("Accept", "application/json");
    status.hidden = false;
    result.hidden = true;
    bar.removeAttribute("value");
    text.textContent = "Uploading…";
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      const pct = Math.round((100 * e.loaded) / e.total);
      bar.value = pct;
      text.textContent = pct < 100 ? "Uploading… " + pct + "%" : "Importing…";
    });
    xhr.addEventListener("load", function () {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      result.hidden = false;
      result.replaceChildren();
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        bar.value = 100;
        text.textContent = xhr.status === 202 ? "Accepted: importing in the background." : "Imported.";
        const c = body.counts || {};
        const p = document.createElement("p");
        p.className = "notice";
        p.id = "upload-counts";
        p.textContent = "Import " + body.id + " " + body.status + ": " + (c.records || 0) + " records, " +
          (c.created || 0) + " new, " + (c.updated || 0) + " updated, " + (c.unchanged || 0) +
          " unchanged, " + (c.closed || 0) + " closed, " + (c.reopened || 0) + " re-opened. ";
        const a = document.createElement("a");
        a.href = form.action.replace(/upload$/, String(body.id));
        a.textContent = "See its changes";
        p.appendChild(a);
        result.appendChild(p);
      } else {
        text.textContent = "Refused.";
        const p = document.createElement("p");
        p.className = "error";
        p.setAttribute("role", "alert");
        p.textContent = (body && (body.detail || body.title)) || ("The server answered " + xhr.status);
        result.appendChild(p);
      }
    });
    xhr.addEventListener("error", function () {
      text.textContent = "The upload failed (connection lost).";
    });
    xhr.send(new FormData(form));
  });
});
