// Rep console: live cards over SSE. Lead data is only ever written with textContent.
"use strict";
(function () {
  const DISPOSITIONS = [
    ["connected", "Connected"], ["voicemail", "Voicemail"], ["wrong_number", "Wrong number"],
    ["qualified", "Qualified"], ["not_interested", "Not interested"], ["callback", "Callback"],
  ];
  const STATE_TEXT = {
    calling: "Calling your phone…", ringing: "Ringing — pick up", answered: "You answered — dialling the prospect",
    prospect_dialled: "Dialling the prospect…", prospect_ringing: "Prospect's phone is ringing",
    prospect_answered: "Prospect answered", connected: "Connected", call_ended: "Call ended — add a disposition",
  };
  const cardsEl = document.getElementById("cards");
  const emptyEl = document.getElementById("empty");
  const connEl = document.getElementById("conn");
  const template = document.getElementById("card-template");
  const cards = new Map();
  let source = null;
  let reopenTimer = null;

  function text(el, value) { el.textContent = value === null || value === undefined || value === "" ? "—" : String(value); }
  function slot(card, name) { return card.querySelector('[data-slot="' + name + '"]'); }
  function refreshEmpty() { emptyEl.hidden = cards.size > 0; }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    let payload = null;
    try { payload = await response.json(); } catch (e) { payload = null; }
    if (!response.ok) {
      const message = payload && payload.error ? payload.error.message : response.statusText;
      throw new Error(message);
    }
    return payload;
  }

  function buildCard(leadId, lead) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.leadId = leadId;
    card.setAttribute("aria-label", "Lead " + (lead && lead.name ? lead.name : leadId));
    const choices = slot(card, "choices");
    DISPOSITIONS.forEach(function (pair, index) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio"; input.name = "disposition-" + leadId; input.value = pair[0];
      if (index === 0) { input.required = true; }
      label.appendChild(input);
      label.appendChild(document.createTextNode(" " + pair[1]));
      choices.appendChild(label);
    });
    card.querySelector('[data-action="decline"]').addEventListener("click", async function (ev) {
      ev.target.disabled = true;
      try { await post("/console/decline", { lead_id: leadId }); removeCard(leadId); }
      catch (err) { ev.target.disabled = false; setState(card, "Could not decline: " + err.message); }
    });
    const form = slot(card, "disposition");
    form.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const chosen = form.querySelector('input[type="radio"]:checked');
      if (!chosen) { return; }
      const button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      try {
        await post("/console/disposition", { lead_id: leadId, disposition: chosen.value, notes: form.elements.notes.value });
        text(slot(card, "saved"), "Saved.");
        card.classList.add("done");
        setTimeout(function () { removeCard(leadId); }, 4000);
      } catch (err) {
        button.disabled = false;
        text(slot(card, "saved"), "Not saved: " + err.message);
      }
    });
    cardsEl.prepend(card);
    cards.set(leadId, card);
    refreshEmpty();
    return card;
  }

  function fill(card, lead) {
    if (!lead) { return; }
    text(slot(card, "name"), lead.name || lead.phone);
    text(slot(card, "company"), lead.company);
    text(slot(card, "phone"), lead.phone);
    text(slot(card, "source"), lead.source);
    text(slot(card, "intent"), lead.intent);
    text(slot(card, "submitted"), lead.submitted_at ? new Date(lead.submitted_at).toLocaleTimeString() : null);
    text(slot(card, "attempts"), lead.previous_attempts);
    const fields = slot(card, "fields");
    fields.replaceChildren();
    Object.keys(lead.fields || {}).slice(0, 20).forEach(function (key) {
      const dt = document.createElement("dt"); dt.textContent = key;
      const dd = document.createElement("dd");
      const value = lead.fields[key];
      dd.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
      fields.appendChild(dt); fields.appendChild(dd);
    });
    const crm = slot(card, "crm");
    crm.replaceChildren();
    if (lead.crm_url && /^https?:\/\//.test(lead.crm_url)) {
      const a = document.createElement("a");
      a.href = lead.crm_url; a.textContent = "Open in CRM"; a.target = "_blank"; a.rel = "noopener noreferrer";
      crm.appendChild(a);
    }
  }

  function setState(card, label, state) {
    text(slot(card, "state"), label);
    if (state) { card.dataset.state = state; }
  }

  function removeCard(leadId) {
    const card = cards.get(leadId);
    if (card) { card.remove(); cards.delete(leadId); }
    refreshEmpty();
  }

  function showDisposition(card) {
    card.querySelector('[data-action="decline"]').hidden = true;
    slot(card, "disposition").hidden = false;
  }

  function apply(event) {
    const leadId = event.lead_id;
    const data = event.data || {};
    if (event.kind === "rep_status") { setPresence(data.status); return; }
    if (!leadId) { return; }
    let card = cards.get(leadId);
    switch (event.kind) {
      case "ringing":
      case "answered":
        if (!card) { card = buildCard(leadId, data.lead); }
        fill(card, data.lead);
        setState(card, STATE_TEXT[data.state] || STATE_TEXT[event.kind], event.kind);
        if (event.kind === "answered") { showDisposition(card); }
        break;
      case "leg_ended":
      case "declined":
        if (card && card.dataset.state !== "answered") { removeCard(leadId); }
        break;
      case "call_ended":
        if (card) { setState(card, STATE_TEXT.call_ended, "ended"); showDisposition(card); }
        break;
      case "disposition":
        if (card) { text(slot(card, "saved"), "Saved."); }
        break;
      default:
        if (card && STATE_TEXT[event.kind]) { setState(card, STATE_TEXT[event.kind]); }
    }
  }

  function setPresence(status) {
    document.querySelectorAll('#presence input[name="status"]').forEach(function (input) {
      input.checked = input.value === status;
    });
  }

  document.querySelectorAll('#presence input[name="status"]').forEach(function (input) {
    input.addEventListener("change", async function () {
      try { await post("/console/status", { status: input.value }); }
      catch (err) { connEl.textContent = "Status not changed: " + err.message; }
    });
  });

  function connect() {
    if (reopenTimer) { clearTimeout(reopenTimer); reopenTimer = null; }
    source = new EventSource("/console/events");
    source.addEventListener("open", function () { connEl.textContent = "Live"; connEl.dataset.state = "live"; });
    source.addEventListener("snapshot", function (msg) {
      const snapshot = JSON.parse(msg.data);
      // Cards still waiting for a disposition stay; ringing ones are replaced by the server's.
      cards.forEach(function (card, leadId) { if (card.dataset.state === "ringing") { removeCard(leadId); } });
      (snapshot.cards || []).forEach(apply);
      if (snapshot.rep_status) { setPresence(snapshot.rep_status); }
    });
    source.addEventListener("live", function (msg) { apply(JSON.parse(msg.data)); });
    source.addEventListener("error", function () {
      connEl.textContent = "Reconnecting…"; connEl.dataset.state = "down";
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. an error status during a restart): try again ourselves.
        reopenTimer = setTimeout(connect, 2000);
      }
    });
  }
  refreshEmpty();
  connect();
})();
