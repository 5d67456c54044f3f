// The graph view: draws the server's elements with cytoscape (attack paths left to right,
// a neighbourhood around its entity), lists the nodes as buttons (keyboard use), and expands a
// node's neighbours on demand; a refusal of the cost guard is shown as a message.
"use strict";
(function () {
  const container = document.getElementById("graph-canvas");
  const source = document.getElementById("graph-elements");
  if (!container || !source || typeof cytoscape !== "function") return;
  const message = document.getElementById("graph-message");
  const selectedBox = document.getElementById("graph-selected");
  const list = document.getElementById("graph-nodes");
  const mode = container.dataset.mode;

  const cy = cytoscape({
    container: container,
    elements: JSON.parse(source.textContent),
    wheelSensitivity: 0.3,
    maxZoom: 1.6,  // a few nodes are not blown up to giant labels
    style: [
      { selector: "node", style: {
        "label": "data(label)", "font-size": 10, "text-wrap": "wrap", "text-max-width": 140,
        "text-valign": "bottom", "text-margin-y": 4, "background-color": "#5b7fb0",
        "width": 22, "height": 22, "color": "#1f2933" } },
      { selector: "node[kind = 'port']", style: { "background-color": "#2a9d8f", "shape": "round-rectangle" } },
      { selector: "node[kind = 'risk']", style: { "background-color": "#b42318", "shape": "triangle" } },
      { selector: "node[kind = 'seed'], node[kind = 'capability']", style: { "background-color": "#7c5cbf", "shape": "hexagon" } },
      { selector: "node[?entry]", style: { "border-width": 4, "border-color": "#d9480f" } },
      { selector: "node[?jewel]", style: { "border-width": 4, "border-color": "#b8860b", "background-color": "#f2c94c", "shape": "star", "width": 30, "height": 30 } },
      { selector: "node[?centre]", style: { "border-width": 4, "border-color": "#1f4e8c", "width": 30, "height": 30 } },
      { selector: "node[!expandable]", style: { "background-color": "#9ca3af" } },
      { selector: "node:selected", style: { "overlay-opacity": 0.15, "overlay-color": "#1f4e8c", "border-width": 4, "border-color": "#ffbf47" } },
      { selector: "edge", style: {
        "width": 2, "line-color": "#9aa5b1", "target-arrow-color": "#9aa5b1",
        "target-arrow-shape": "triangle", "curve-style": "bezier", "label": "data(relationship)",
        "font-size": 8, "color": "#52606d", "text-rotation": "autorotate" } },
    ],
  });
  window.bastionGraph = cy;  // read by the browser tests

  function layout() {
    const entries = cy.nodes("[?entry]");
    const options = mode === "paths"
      ? { name: "breadthfirst", directed: true, roots: entries.length ? entries : undefined, spacingFactor: 1.1 }
      : { name: "concentric", concentric: function (n) { return n.data("centre") ? 10 : 1; }, levelWidth: function () { return 1; }, minNodeSpacing: 40 };
    cy.layout(Object.assign({ animate: false, fit: true, padding: 30 }, options)).run();
  }

  function say(text, isError) {
    message.textContent = text;
    message.className = isError ? "refusal" : "notice";
  }

  function select(node) {
    cy.nodes().unselect();
    node.select();
    const d = node.data();
    selectedBox.className = "";
    selectedBox.replaceChildren();
    const code = document.createElement("code");
    code.textContent = d.key;
    const kind = document.createElement("div");
    kind.className = "muted";
    kind.textContent = d.kind + (d.entry ? " · entry point" : "") + (d.jewel ? " · crown jewel" : "");
    selectedBox.append(kind, code);
    if (d.expandable) {
      const open = document.createElement("a");
      open.href = container.dataset.graphUrl + "?key=" + encodeURIComponent(d.key);
      open.textContent = "Neighbourhood and provenance";
      open.className = "button secondary";
      selectedBox.append(document.createElement("br"), open);
    }
  }

  function expand(node) {
    if (!node.data("expandable")) { say("This node's key is masked for your role: it cannot be expanded.", true); return; }
    const base = container.dataset.neighborsUrl;
    const target = base + (base.includes("?") ? "&" : "?") + "key=" + encodeURIComponent(node.data("key"));
    say("Expanding " + node.data("label") + "…", false);
    fetch(target, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.json().then(function (body) { return { ok: response.ok, body: body }; }); })
      .then(function (answer) {
        if (!answer.ok) {
          say((answer.body.refused ? "The cost guard refused: " : "Not expanded: ") + answer.body.message, true);
          return;
        }
        const fresh = answer.body.elements.filter(function (e) { return cy.getElementById(e.data.id).empty(); })
          .map(function (e) { if (e.data.centre) delete e.data.centre; return e; });
        cy.add(fresh);
        node.data("expanded", true);
        say("Added " + fresh.filter(function (e) { return e.group === "nodes"; }).length + " node(s) around " + node.data("label") + ".", false);
        layout();
        renderList();
      }, function () { say("The server did not answer.", true); });
  }

  function renderList() {
    list.replaceChildren();
    cy.nodes().sort(function (a, b) { return a.data("label").localeCompare(b.data("label")); }).forEach(function (node) {
      const li = document.createElement("li");
      li.dataset.key = node.data("key");
      const show = document.createElement("button");
      show.type = "button";
      show.className = "link node-label";
      show.textContent = node.data("label") + " (" + node.data("kind") + ")";
      show.addEventListener("click", function () { select(node); });
      li.append(show);
      if (mode === "neighbourhood" && node.data("expandable") && !node.data("expanded") && !node.data("centre")) {
        const more = document.createElement("button");
        more.type = "button";
        more.className = "secondary expand";
        more.textContent = "Expand";
        more.setAttribute("aria-label", "Expand the neighbours of " + node.data("key"));
        more.addEventListener("click", function () { expand(node); });
        li.append(more);
      }
      list.append(li);
    });
  }

  cy.on("tap", "node", function (event) {
    select(event.target);
    if (mode === "neighbourhood" && !event.target.data("expanded") && !event.target.data("centre")) expand(event.target);
  });
  layout();
  renderList();
})();
