// roomengine operator console: polls /console/api/state and renders it. Plain JavaScript,
// no build step. Every value from the server is inserted as text, never as HTML.
"use strict";

(function () {
  const POLL_MS = 2000;
  let csrf = "";
  let timer = null;
  let pending = null; // the action waiting for confirmation

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function time(s) {
    const d = new Date(s);
    return isNaN(d) ? "" : d.toLocaleTimeString();
  }

  function pill(text, kind) {
    return el("span", { class: "pill " + (kind || "") }, text);
  }

  function statusKind(s) {
    return { publishing: "ok", created: "warn", "co-stream": "info" }[s] || "";
  }

  function side(s) {
    const who = s.name ? s.name + " (" + s.uid + ")" : s.uid;
    return el("span", {}, who, el("br"), el("code", {}, s.roomId || "–"), s.ready ? pill("ready", "ok") : null);
  }

  function renderRooms(st) {
    const body = $("rooms").tBodies[0];
    const rows = st.rooms.map((r) => {
      const end = el("button", { type: "button", class: "danger", "data-action": "end-room", "data-room": r.id }, "End");
      end.addEventListener("click", () =>
        ask("End room " + r.id + " of " + r.name + "? Its viewers get push 8 and the room is gone.", () =>
          post("/console/api/rooms/" + encodeURIComponent(r.id) + "/end", "Room " + r.id + " ended")));
      return el("tr", { "data-room-id": r.id },
        el("td", {}, el("code", {}, r.id)),
        el("td", {}, r.name + " (" + r.uid + ")"),
        el("td", { class: "desc" }, r.description),
        el("td", {}, pill(r.statusText, statusKind(r.statusText)), r.mixReady ? pill("mix ready", "info") : null,
          r.mixed ? pill("mixed", "ok") : null),
        el("td", { class: "num", "data-field": "audience" }, r.audience < 0 ? "?" : r.audience),
        el("td", { class: "num" }, r.subscribers),
        el("td", {}, r.callId ? el("code", {}, r.callId) : "–"),
        el("td", { class: "owner-col" }, r.owner || "–"),
        el("td", {}, time(r.createTime)),
        el("td", {}, end));
    });
    body.replaceChildren(...rows);
    $("rooms-empty").hidden = rows.length > 0;
    $("rooms-more").textContent = st.roomsTotal > st.rooms.length ? "(first " + st.rooms.length + " of " + st.roomsTotal + ")" : "";
  }

  function renderCalls(st) {
    const body = $("calls").tBodies[0];
    const rows = st.calls.map((c) => {
      const close = el("button", { type: "button", class: "danger", "data-action": "close-call", "data-call": c.id }, "Close");
      close.addEventListener("click", () =>
        ask("Close call " + c.id + "? Both sides get push 4 and the mixes stop.", () =>
          post("/console/api/calls/" + encodeURIComponent(c.id) + "/close", "Call " + c.id + " closed")));
      const legs = el("ul", { class: "legs" }, ...c.legs.map((l) =>
        el("li", {}, el("code", {}, l.mix), " → ", el("code", {}, l.main), " ",
          pill(l.state || "idle", { started: "ok", failed: "bad", starting: "warn", stopping: "warn" }[l.state] || ""),
          l.code ? " " + l.code + " " + (l.message || "") : "")));
      return el("tr", { "data-call-id": c.id },
        el("td", {}, el("code", {}, c.id)),
        el("td", {}, pill(c.phase || "admitting", { mixed: "ok", failed: "bad", closing: "warn" }[c.phase] || "info")),
        el("td", {}, c.layout),
        el("td", {}, side(c.inviter)),
        el("td", {}, side(c.invitee)),
        el("td", {}, c.legs.length ? legs : "–"),
        el("td", {}, time(c.createTime)),
        el("td", {}, close));
    });
    body.replaceChildren(...rows);
    $("calls-empty").hidden = rows.length > 0;
  }

  function sum(m) {
    return Object.values(m || {}).reduce((a, b) => a + b, 0);
  }

  function renderPush(st) {
    const body = $("push").tBodies[0];
    const p = st.push;
    if (!p) {
      body.replaceChildren(el("tr", {}, el("td", {}, "WebSocket push is off")));
      return;
    }
    const detail = (m) => el("div", { class: "detail" },
      Object.entries(m || {}).sort().map(([k, v]) => k + " " + v).join(" · "));
    const rows = [
      ["Connections", p.connections], ["Topics", p.topics], ["Messages published", p.published],
      ["Frames sent", p.framesSent],
      ["Connections ended", sum(p.disconnects), detail(p.disconnects)],
      ["Frames dropped", sum(p.dropped), detail(p.dropped)],
    ];
    body.replaceChildren(...rows.map(([k, v, d]) =>
      el("tr", {}, el("th", {}, k, d || null), el("td", { class: "num" }, v))));
  }

  function renderBreakers(st) {
    const rows = st.breakers.map((b) =>
      el("tr", { "data-breaker": b.name }, el("td", {}, b.name),
        el("td", {}, pill(b.state, { closed: "ok", "half-open": "warn", open: "bad" }[b.state] || ""))));
    $("breakers").tBodies[0].replaceChildren(...rows);
    $("breakers").hidden = rows.length === 0;
    $("breakers-empty").hidden = rows.length > 0;
  }

  function renderCluster(st) {
    const c = st.cluster;
    $("node").textContent = c.mode + (c.self ? " · " + c.self : "");
    $("cluster-mode").textContent = c.mode;
    const rows = c.members.map((m) =>
      el("tr", {}, el("td", {}, m.name + (m.self ? " (this node)" : "")), el("td", {}, m.addr || ""), el("td", {}, m.state || "")));
    $("members").tBodies[0].replaceChildren(...rows);
    $("members").hidden = rows.length === 0;
    document.body.classList.toggle("clustered", rows.length > 0);
  }

  function render(st) {
    csrf = st.csrf || csrf;
    renderRooms(st);
    renderCalls(st);
    renderPush(st);
    renderBreakers(st);
    renderCluster(st);
    $("count-rooms").textContent = st.roomsTotal;
    $("count-calls").textContent = st.calls.length;
    $("count-conns").textContent = st.push ? st.push.connections : "–";
    $("count-drops").textContent = st.push ? sum(st.push.disconnects) : "–";
    $("count-frames-dropped").textContent = st.push ? sum(st.push.dropped) : "–";
    $("updated").textContent = "updated " + time(st.time);
    const errs = st.errors || [];
    $("errors").hidden = errs.length === 0;
    $("errors").textContent = errs.join("; ");
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const res = await fetch("/console/api/state", { credentials: "same-origin", cache: "no-store" });
      if (res.status === 401) {
        location.assign("/console"); // the session ended: back to the login form
        return;
      }
      if (!res.ok) throw new Error("HTTP " + res.status);
      render(await res.json());
    } catch (e) {
      $("updated").textContent = "not updated: " + e.message;
    }
    timer = setTimeout(poll, POLL_MS);
  }

  async function post(path, done) {
    try {
      const res = await fetch(path, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
      const body = await res.json().catch(() => ({}));
      toast(res.ok ? done : "Failed: " + (body.error || "HTTP " + res.status), !res.ok);
    } catch (e) {
      toast("Failed: " + e.message, true);
    }
    poll();
  }

  function ask(text, action) {
    pending = action;
    $("confirm-text").textContent = text;
    $("confirm").showModal();
  }

  function toast(text, bad) {
    const t = $("toast");
    t.textContent = text;
    t.className = bad ? "bad" : "ok";
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("confirm").addEventListener("close", () => {
      const action = pending;
      pending = null;
      if ($("confirm").returnValue === "ok" && action) action();
    });
    $("logout").addEventListener("click", async () => {
      await fetch("/console/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
      location.assign("/console");
    });
    poll();
  });
})();
