// Manager dashboard: data from /dashboard/data, refreshed on live events; SLA colours tick
// every second on the server's clock (offset measured at each fetch).
"use strict";
(function () {
  const queueBody = document.querySelector("#queue tbody");
  const repsBody = document.querySelector("#reps tbody");
  const connEl = document.getElementById("conn");
  const filters = document.getElementById("filters");
  const drill = document.getElementById("drill");
  const drillBody = document.getElementById("drill-body");
  const SLA_LABEL = { green: "On time", yellow: "At risk", red: "Breached" };
  let data = null;
  let clockOffsetMs = 0;
  let range = "days_7";
  let refreshTimer = null;
  let reopenTimer = null;

  function cell(row, value, cls) {
    const td = document.createElement("td");
    if (value === null || value === undefined) { td.textContent = "—"; }
    else if (value !== "") { td.textContent = String(value); }
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }
  function seconds(ms) { return ms === null || ms === undefined ? "—" : (ms / 1000).toFixed(1) + " s"; }
  function duration(ms) {
    const negative = ms < 0; let s = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(s / 3600); s -= h * 3600; const m = Math.floor(s / 60); s -= m * 60;
    const body = (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
    return negative ? "overdue " + body : body;
  }
  function query() {
    const params = new URLSearchParams();
    new FormData(filters).forEach(function (value, key) { if (value) { params.set(key, value); } });
    return params.toString();
  }

  function colourAt(sla, nowMs) {
    if (sla.status === "met") { return "green"; }
    if (sla.status === "breached" || nowMs >= Date.parse(sla.due_at)) { return "red"; }
    if (sla.status === "at_risk" || nowMs >= Date.parse(sla.at_risk_at)) { return "yellow"; }
    return "green";
  }

  function tick() {
    if (!data) { return; }
    const nowMs = Date.now() + clockOffsetMs;
    queueBody.querySelectorAll("tr").forEach(function (row) {
      const lead = data.leadsById[row.dataset.leadId];
      if (!lead) { return; }
      const colour = colourAt(lead.sla, nowMs);
      if (row.dataset.sla !== colour) {
        row.dataset.sla = colour;
        row.className = "sla-" + colour;
        row.querySelector(".sla-label").textContent = SLA_LABEL[colour];
      }
      row.querySelector(".due").textContent = duration(Date.parse(lead.sla.due_at) - nowMs);
    });
  }

  // Phone width shows each row as a small card; every cell names its column (CSS ::before).
  function labelCells(table) {
    const names = Array.from(table.querySelectorAll("thead th")).map(function (th) { return th.textContent; });
    table.querySelectorAll("tbody tr").forEach(function (row) {
      Array.from(row.children).forEach(function (td, i) { td.dataset.label = names[i] || ""; });
    });
  }

  function renderFilters(options) {
    [["team", options.teams], ["source", options.sources], ["intent", options.intents]].forEach(function (pair) {
      const select = filters.elements[pair[0]];
      const current = select.value;
      const known = new Set(Array.from(select.options).map(function (o) { return o.value; }));
      (pair[1] || []).forEach(function (value) {
        if (!known.has(value)) {
          const option = document.createElement("option"); option.value = value; option.textContent = value;
          select.appendChild(option);
        }
      });
      select.value = current;
    });
  }

  function render() {
    data.leadsById = {};
    queueBody.replaceChildren();
    data.leads.forEach(function (lead) {
      data.leadsById[lead.id] = lead;
      const row = document.createElement("tr");
      row.dataset.leadId = lead.id;
      const slaCell = cell(row, "", "sla-cell");
      const label = document.createElement("span"); label.className = "sla-label"; slaCell.appendChild(label);
      const leadCell = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button"; button.className = "link";
      button.textContent = lead.name || lead.phone;
      button.setAttribute("aria-label", "Timeline of " + (lead.name || lead.phone));
      button.addEventListener("click", function () { openLead(lead.id); });
      const wrap = document.createElement("span");
      wrap.appendChild(button);
      if (lead.company) { const c = document.createElement("span"); c.className = "muted"; c.textContent = " · " + lead.company; wrap.appendChild(c); }
      leadCell.appendChild(wrap);
      row.appendChild(leadCell);
      cell(row, lead.status.replace(/_/g, " "));
      cell(row, lead.source);
      cell(row, lead.intent);
      cell(row, lead.assigned_rep);
      cell(row, "", "due");
      queueBody.appendChild(row);
    });
    document.getElementById("queue-count").textContent = "(" + data.leads.length + ")";
    repsBody.replaceChildren();
    data.reps.forEach(function (rep) {
      const row = document.createElement("tr");
      row.dataset.repId = rep.id;
      cell(row, rep.name);
      cell(row, rep.status.replace(/_/g, " "), "status-" + rep.status);
      cell(row, rep.on_call ? "on call" : (rep.ringing ? "ringing" : "no"));
      cell(row, rep.leads_today);
      cell(row, seconds(rep.median_ttc_ms));
      cell(row, rep.missed_today + " / " + rep.voicemail_today);
      repsBody.appendChild(row);
    });
    labelCells(document.getElementById("queue"));
    labelCells(document.getElementById("reps"));
    renderFilters(data.filters);
    renderCharts();
    tick();
  }

  function chart(container, points, unit, fixedMax) {
    const NS = "http://www.w3.org/2000/svg";
    const width = 600, height = 160, pad = 28;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("role", "img");
    const values = points.map(function (p) { return p.value; }).filter(function (v) { return v !== null; });
    const max = fixedMax || Math.max(1, ...values);
    const title = document.createElementNS(NS, "title");
    title.textContent = values.length ? points.filter(function (p) { return p.value !== null; }).map(function (p) { return p.day + ": " + p.value + unit; }).join(", ") : "No data yet";
    svg.appendChild(title);
    const step = (width - 2 * pad) / Math.max(1, points.length);
    points.forEach(function (p, i) {
      if (p.value === null) { return; }
      const h = (height - 2 * pad) * (p.value / max);
      const rect = document.createElementNS(NS, "rect");
      rect.setAttribute("x", String(pad + i * step + step * 0.15));
      rect.setAttribute("y", String(height - pad - h));
      rect.setAttribute("width", String(step * 0.7));
      rect.setAttribute("height", String(Math.max(1, h)));
      rect.setAttribute("class", "bar");
      svg.appendChild(rect);
    });
    const axis = document.createElementNS(NS, "line");
    axis.setAttribute("x1", String(pad)); axis.setAttribute("x2", String(width - pad));
    axis.setAttribute("y1", String(height - pad)); axis.setAttribute("y2", String(height - pad));
    axis.setAttribute("class", "axis");
    svg.appendChild(axis);
    [[points[0], pad, "start"], [points[points.length - 1], width - pad, "end"]].forEach(function (t) {
      if (!t[0]) { return; }
      const label = document.createElementNS(NS, "text");
      label.setAttribute("x", String(t[1])); label.setAttribute("y", String(height - 8));
      label.setAttribute("text-anchor", t[2]); label.textContent = t[0].day;
      svg.appendChild(label);
    });
    const top = document.createElementNS(NS, "text");
    top.setAttribute("x", String(pad)); top.setAttribute("y", "16");
    top.textContent = values.length ? (fixedMax ? "" : "max ") + (Math.round(max * 10) / 10) + unit : "No calls in this range yet";
    svg.appendChild(top);
    container.replaceChildren(svg);
  }

  function renderCharts() {
    const rows = data.trends[range];
    chart(document.getElementById("chart-ttc"), rows.map(function (r) { return { day: r.day, value: r.median_ttc_ms === null ? null : Math.round(r.median_ttc_ms / 100) / 10 }; }), " s");
    chart(document.getElementById("chart-sla"), rows.map(function (r) { return { day: r.day, value: r.within_sla_pct }; }), " %", 100);
  }

  async function refresh() {
    const response = await fetch("/dashboard/data?" + query(), { credentials: "same-origin" });
    if (!response.ok) { connEl.textContent = "Data unavailable (" + response.status + ")"; return; }
    const fetched = await response.json();
    clockOffsetMs = Date.parse(fetched.now) - Date.now();
    data = fetched;
    render();
  }
  function scheduleRefresh() {
    if (refreshTimer) { return; }
    refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, 200);
  }

  async function openLead(leadId) {
    const response = await fetch("/dashboard/leads/" + encodeURIComponent(leadId), { credentials: "same-origin" });
    if (!response.ok) { return; }
    const body = await response.json();
    drillBody.replaceChildren();
    const heading = document.createElement("p");
    heading.textContent = (body.lead.name || body.lead.phone) + " · SLA " + body.sla.status.replace(/_/g, " ") + (body.disposition ? " · disposition: " + body.disposition.disposition : "");
    drillBody.appendChild(heading);
    const list = document.createElement("ol");
    list.className = "timeline";
    body.timeline.forEach(function (event) {
      const item = document.createElement("li");
      const time = document.createElement("time");
      time.dateTime = event.at; time.textContent = new Date(event.at).toLocaleTimeString();
      item.appendChild(time);
      item.appendChild(document.createTextNode(" " + event.kind + " " + (Object.keys(event.data).length ? JSON.stringify(event.data) : "")));
      list.appendChild(item);
    });
    drillBody.appendChild(list);
    drill.showModal();
  }

  document.querySelectorAll(".range button").forEach(function (button) {
    button.addEventListener("click", function () {
      range = button.dataset.range;
      document.querySelectorAll(".range button").forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
      if (data) { renderCharts(); }
    });
  });
  filters.addEventListener("change", refresh);

  function connect() {
    if (reopenTimer) { clearTimeout(reopenTimer); reopenTimer = null; }
    const source = new EventSource("/dashboard/events");
    source.addEventListener("open", function () { connEl.textContent = "Live"; connEl.dataset.state = "live"; scheduleRefresh(); });
    source.addEventListener("live", scheduleRefresh);
    source.addEventListener("error", function () {
      connEl.textContent = "Reconnecting…"; connEl.dataset.state = "down";
      if (source.readyState === EventSource.CLOSED) { reopenTimer = setTimeout(connect, 2000); }
    });
  }
  refresh();
  setInterval(tick, 1000);
  setInterval(refresh, 15000);
  connect();
})();
