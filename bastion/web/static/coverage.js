// The coverage heat map: sub-techniques expand under their technique; a click on a cell loads
// what covers it (a server-rendered fragment) into the drawer. Escape closes the drawer.
"use strict";
(function () {
  const matrix = document.getElementById("matrix");
  const drawer = document.getElementById("cell-detail");
  if (!matrix || !drawer) return;
  const body = drawer.querySelector(".body");
  let selected = null;

  function close() {
    drawer.hidden = true;
    if (selected) { selected.setAttribute("aria-pressed", "false"); selected.focus(); }
    selected = null;
  }

  function show(cell) {
    if (selected) selected.setAttribute("aria-pressed", "false");
    selected = cell;
    cell.setAttribute("aria-pressed", "true");
    drawer.hidden = false;
    body.textContent = "Loading " + cell.dataset.technique + "…";
    const target = matrix.dataset.cellUrl + (matrix.dataset.cellUrl.includes("?") ? "&" : "?")
      + "technique=" + encodeURIComponent(cell.dataset.technique);
    fetch(target, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        return response.text().then(function (text) { return { ok: response.ok, text: text }; });
      })
      .then(function (answer) {
        if (answer.ok) {
          body.innerHTML = answer.text;  // the server's escaped template
        } else {
          // an error page: show its message, not the whole page
          const doc = new DOMParser().parseFromString(answer.text, "text/html");
          const main = doc.querySelector("main");
          body.textContent = main ? main.innerText.trim() : "The server refused.";
        }
      }, function () { body.textContent = "The server did not answer."; });
  }

  matrix.addEventListener("click", function (event) {
    const toggle = event.target.closest("button.subs-toggle");
    if (toggle) {
      const list = document.getElementById(toggle.getAttribute("aria-controls"));
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      list.hidden = !open;
      return;
    }
    const cell = event.target.closest("button.cell");
    if (cell) show(cell);
  });
  drawer.querySelector(".close").addEventListener("click", close);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !drawer.hidden) close();
  });
})();
