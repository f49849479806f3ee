// stadtlink twin view: entities from Server-Sent Events on a Leaflet map (no tiles unless
// configured) and in a table. All interpretation (summary, colour) is done by the server.
// Every value of an entity is untrusted text: it reaches the page only through textContent (or
// DOM nodes built with it), never as HTML -- Leaflet's bindTooltip/setTooltipContent/bindPopup
// would parse a string as HTML. The server's Content-Security-Policy forbids inline scripts too.
(function () {
  "use strict";
  const COLORS = { ok: "#1a7f37", warn: "#b7791f", bad: "#c53030", unknown: "#718096", closed: "#1a202c", idle: "#4a5568" };
  const RADIUS = { parking: 6, climate: 9, water: 9, pv: 10, other: 6 };
  const entities = new Map();   // id -> item
  const markers = new Map();    // id -> Leaflet layer
  const connection = document.getElementById("connection");
  const tbody = document.querySelector("#entities tbody");
  const counts = document.getElementById("counts");
  let fitted = false;

  const map = L.map("map", { zoomControl: true, attributionControl: false, preferCanvas: false }).setView([51.1, 10.4], 6);
  window.twinMap = map;   // for tests and the browser console
  fetch("/config.json").then(r => r.json()).then(cfg => {
    if (cfg.tileUrl) L.tileLayer(cfg.tileUrl, { maxZoom: 19 }).addTo(map);
  }).catch(() => {});

  function visibleFamilies() {
    return new Set([...document.querySelectorAll('input[name="family"]:checked')].map(i => i.value));
  }

  function label(item) {
    return (item.name || item.id.split(":").slice(-1)[0]) + (item.summary ? ": " + item.summary : "");
  }

  // A tooltip's content as a DOM node holding plain text (a string would be parsed as HTML).
  function labelNode(item) {
    const span = document.createElement("span");
    span.className = "twin-label-text";
    span.textContent = label(item);
    return span;
  }

  function upsertMarker(item) {
    if (!item.location) return;
    const [lon, lat] = item.location;
    const style = { radius: RADIUS[item.family] || 6, color: "#fff", weight: 1.5, fillOpacity: 0.9,
                    fillColor: COLORS[item.state] || COLORS.unknown,
                    className: "twin-marker family-" + item.family + " state-" + item.state };
    let m = markers.get(item.id);
    if (!m) {
      m = L.circleMarker([lat, lon], style);
      m.bindTooltip(labelNode(item), { className: "twin-label", direction: "right" });
      markers.set(item.id, m);
    } else {
      m.setLatLng([lat, lon]);
      m.setStyle(style);
      m.setTooltipContent(labelNode(item));
      const el = m.getElement();
      if (el) el.setAttribute("class", "leaflet-interactive " + style.className);
    }
    m.options.family = item.family;
    m.options.town = townOf(item.id);
  }

  // Entity ids are urn:ngsi-ld:<Type>:<town>:<local id>: the town is the adapter's namespace.
  function townOf(id) {
    const parts = id.split(":");
    return parts.length > 4 ? parts[3] : "";
  }

  const townSelect = document.getElementById("town");
  function refreshTowns() {
    const towns = [...new Set([...markers.values()].map(m => m.options.town).filter(Boolean))].sort();
    const have = [...townSelect.options].map(o => o.value).filter(Boolean);
    if (towns.join() === have.join()) return;
    const current = townSelect.value;
    townSelect.replaceChildren(new Option("all towns", ""), ...towns.map(t => new Option(t, t)));
    townSelect.value = towns.includes(current) ? current : "";
  }
  function zoomToTown() {
    const town = townSelect.value;
    const pts = [...markers.values()].filter(m => map.hasLayer(m) && (!town || m.options.town === town))
      .map(m => m.getLatLng());
    if (!pts.length) return;
    const bounds = L.latLngBounds(pts);
    map.invalidateSize({ animate: false });
    // One point (or all on one spot) has no extent to fit: centre on it at street level.
    if (bounds.getNorthEast().equals(bounds.getSouthWest())) map.setView(bounds.getCenter(), 16, { animate: false });
    else map.fitBounds(bounds.pad(0.3), { maxZoom: 16, animate: false });
  }
  townSelect.addEventListener("change", () => { zoomToTown(); renderTable(); });

  // Labels stay on screen once zoomed in far enough that they don't pile up.
  function updateLabels() {
    const show = map.getZoom() >= 13;
    for (const m of markers.values()) {
      if (!map.hasLayer(m)) continue;
      if (show) m.openTooltip(); else m.closeTooltip();
    }
  }
  map.on("zoomend", updateLabels);

  function applyFilters() {
    const show = visibleFamilies();
    for (const [id, m] of markers) {
      const on = show.has(m.options.family);
      if (on && !map.hasLayer(m)) m.addTo(map);
      if (!on && map.hasLayer(m)) map.removeLayer(m);
      const el = m.getElement && m.getElement();
      if (el) el.setAttribute("data-entity-id", id);
    }
    renderTable();
  }

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }

  function renderTable() {
    const show = visibleFamilies();
    const town = document.getElementById("town").value;
    const rows = [...entities.values()].filter(e => show.has(e.family) && (!town || townOf(e.id) === town))
      .sort((a, b) => (b.receivedAt || 0) - (a.receivedAt || 0));
    const frag = document.createDocumentFragment();
    for (const e of rows) {
      const tr = document.createElement("tr");
      tr.dataset.entityId = e.id;
      tr.dataset.family = e.family;
      const cells = [e.type, e.name || e.id, e.summary, fmtTime(e.observedAt),
                     e.receivedAt ? new Date(e.receivedAt * 1000).toLocaleTimeString() : ""];
      cells.forEach((text, i) => {
        const td = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) td.scope = "row";
        if (i === 2) { td.className = "value state-" + e.state; }
        td.textContent = text;
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
    const perFamily = {};
    for (const e of entities.values()) perFamily[e.family] = (perFamily[e.family] || 0) + 1;
    counts.textContent = Object.entries(perFamily).map(([f, n]) => f + ": " + n).join(" · ");
  }

  function take(items) {
    for (const item of items) {
      entities.set(item.id, item);
      upsertMarker(item);
    }
    applyFilters();
    refreshTowns();
    if (!fitted && markers.size) {
      const pts = [...markers.values()].map(m => m.getLatLng());
      map.fitBounds(L.latLngBounds(pts).pad(0.2), { animate: false });   // no transition a town choice could race
      fitted = true;
    }
    updateLabels();
    document.body.dataset.entities = String(entities.size);
  }

  function setConnection(state, text) {
    connection.className = "connection " + state;
    connection.textContent = text;
    document.body.classList.toggle("disconnected", state === "disconnected");
  }

  function connect() {
    const es = new EventSource("/events");
    es.addEventListener("open", () => setConnection("live", "live"));
    es.addEventListener("snapshot", ev => { take(JSON.parse(ev.data)); });
    es.addEventListener("update", ev => { take(JSON.parse(ev.data)); });
    es.addEventListener("status", ev => {
      const s = JSON.parse(ev.data);
      if (s.broker === false) setConnection("disconnected", "disconnected: broker unreachable");
      else setConnection("live", "live");
    });
    es.addEventListener("error", () => setConnection("disconnected", "disconnected — reconnecting…"));
  }

  document.getElementById("filters").addEventListener("change", applyFilters);
  const btnMap = document.getElementById("show-map"), btnTable = document.getElementById("show-table");
  function view(which) {
    document.getElementById("map-view").hidden = which !== "map";
    document.getElementById("table-view").hidden = which !== "table";
    btnMap.setAttribute("aria-pressed", String(which === "map"));
    btnTable.setAttribute("aria-pressed", String(which === "table"));
    if (which === "map") map.invalidateSize();
  }
  btnMap.addEventListener("click", () => view("map"));
  btnTable.addEventListener("click", () => view("table"));
  connect();
})();
