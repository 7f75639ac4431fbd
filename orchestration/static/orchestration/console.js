/* The console's Overview: refresh from the JSON endpoint in place (no page reload) and draw the
 * two charts as inline SVG with their axes and legends. No library, nothing loaded from anywhere
 * else, no inline style (a Content-Security-Policy without 'unsafe-inline' holds). */
(function () {
  "use strict";

  var root = document.getElementById("aol-console");
  var initial = document.getElementById("aol-snapshot");
  if (!root || !initial) return;

  var jsonUrl = root.dataset.jsonUrl;
  var actionUrl = root.dataset.actionUrl;
  var refreshMs = Math.max(500, parseInt(root.dataset.refreshMs, 10) || 3000);
  var SVG = "http://www.w3.org/2000/svg";
  var TICK_COLOURS = {SUCCESS: "#2e7d32", PARTIAL: "#ef8f00", FAIL: "#c62828", PAUSED: "#8d8d8d", KILLED: "#222"};
  var DEPTH_COLOURS = {PENDING: "#1565c0", READY: "#00838f", RETRY: "#ef8f00", RUNNING: "#2e7d32", DLQ: "#c62828",
                       NEEDS_REVIEW: "#6a1b9a", AWAITING_APPROVAL: "#ad1457"};

  function get(obj, path) {
    return path.split(".").reduce(function (o, k) { return o === null || o === undefined ? undefined : o[k]; }, obj);
  }
  function blank(v) { return v === null || v === undefined || v === ""; }
  function shortTime(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    /* The one date format of the console (templatetags/aol_console.py short_time): 2026-12-01 02:16:33 UTC */
    return isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  function ago(v) {
    if (blank(v)) return "—";
    v = Math.max(0, Number(v));
    if (v < 120) return v.toFixed(0) + " s ago";
    if (v < 7200) return (v / 60).toFixed(0) + " min ago";
    return (v / 3600).toFixed(1) + " h ago";
  }
  var FORMATS = {
    text: function (v) { return blank(v) ? "—" : String(v); },
    seconds: function (v) { return blank(v) ? "—" : Number(v).toFixed(1) + " s"; },
    seconds3: function (v) { return blank(v) ? "—" : Number(v).toFixed(3) + " s"; },
    ago: ago,
    time: shortTime,
    yesno: function (v) { return v ? "YES" : "no"; },
    keyset: function (v) { return v ? "set" : "not set"; },
    holder: function (v) { return v || "— (free)"; },
    badge: function (v) { return v || "none yet"; },
    lastchange: function (v) { return v && v.updated_by ? v.updated_by + ", " + shortTime(v.updated_at) : "none yet: the defaults"; }
  };

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (!blank(text)) node.textContent = String(text);
    return node;
  }
  function cell(row, text, cls) { var td = el("td", cls ? {"class": cls} : {}, blank(text) ? "—" : text); row.appendChild(td); return td; }
  function holder(row, child) { var td = el("td"); td.appendChild(child); row.appendChild(td); return td; }
  function actionLink(id) {
    var a = el("a", {href: actionUrl + id + "/"}, "#" + id);
    return a;
  }
  function emptyRow(tbody, columns, text) {
    var tr = el("tr", {"class": "empty"});
    var td = el("td", {colspan: String(columns)}, text);
    tr.appendChild(td);
    tbody.appendChild(tr);
  }
  function compact(obj) {
    if (!obj || typeof obj !== "object") return blank(obj) ? "—" : String(obj);
    var parts = Object.keys(obj).filter(function (k) { return k !== "ids"; }).map(function (k) {
      var v = obj[k];
      return k + "=" + (typeof v === "string" ? v : JSON.stringify(v));
    });
    return parts.length ? parts.join(", ") : "—";
  }

  function applyCount(node, s, status) {
    /* An estimate (a large finished status on PostgreSQL) says so: "about …", with the reason as its tooltip. */
    var estimated = (s.counts_estimated || []).indexOf(status) >= 0;
    var value = get(s, "counts." + status);
    node.textContent = blank(value) ? "—" : (estimated ? "about " : "") + Number(value).toLocaleString("en-US");
    node.classList.toggle("estimate", estimated);
    if (estimated) node.title = s.counts_note; else node.removeAttribute("title");
  }

  function applyFields(s) {
    var note = document.getElementById("counts-note");
    if (note) { note.textContent = s.counts_note || ""; note.hidden = !s.counts_note; }
    root.querySelectorAll("[data-field]").forEach(function (node) {
      var path = node.dataset.field;
      if (path.indexOf("counts.") === 0) return applyCount(node, s, path.slice(7));
      var format = FORMATS[node.dataset.format || "text"] || FORMATS.text;
      var value = get(s, path);
      if (path === "lease.expires_in_seconds" && !s.lease.holder) value = null;
      node.textContent = format(value);
      if (node.dataset.format === "badge") node.className = "badge badge-" + (value || "none");
    });
  }

  function applyBanners(s) {
    var mode = s.flags.mode;
    var banner = document.getElementById("banner-mode");
    if (!banner) return;
    banner.className = "banner mode-" + mode.toLowerCase();
    document.getElementById("mode-explained").textContent = mode === "PROOF"
      ? "adapters write a PROOF artifact and its SHA-256; nothing is posted"
      : "actions act on the world for real";
    document.getElementById("mode-forced").hidden = !(mode === "PROOF" && s.flags.mode_forced_by);
    document.getElementById("mode-note").hidden = !s.flags.mode_note;
    document.getElementById("daemon-hint").hidden = !s.daemon_hint;
    var llmCard = document.getElementById("card-llm");
    if (llmCard && s.llm) llmCard.classList.toggle("card-warn", !!s.llm.calls_failing);
    document.getElementById("banner-killed").hidden = !s.flags.killed;
    document.getElementById("banner-paused").hidden = !s.flags.paused;
    document.getElementById("banner-blocked").hidden = !(s.environment && s.environment.blocked);
    var light = document.getElementById("lease-light");
    light.className = "light light-" + s.lease.state;
    light.title = s.lease.state;
    root.dataset.leaseState = s.lease.state;
  }

  function renderLogs(s) {
    var tbody = document.querySelector("#logs-table tbody");
    if (!tbody) return;
    tbody.textContent = "";
    if (!s.recent_logs.length) return emptyRow(tbody, 6, "No execution log yet.");
    s.recent_logs.forEach(function (log) {
      var tr = el("tr", {"class": "level-" + log.level, "data-log-id": String(log.id)});
      cell(tr, shortTime(log.ts), "nowrap");
      cell(tr, log.level);
      if (log.action_id) holder(tr, actionLink(log.action_id)); else cell(tr, "—");
      /* As the template's truncatechars:300; the whole line is on the action's page. */
      var message = cell(tr, log.message.length > 300 ? log.message.slice(0, 299) + "…" : log.message);
      message.title = log.message.slice(0, 2000);
      cell(tr, log.artifact_ref || "—", "mono small");
      var sha = log.artifact_sha256;
      var shaCell = cell(tr, sha ? sha.slice(0, 16) + "…" : "—", "mono small");
      if (sha) shaCell.title = sha;
      tbody.appendChild(tr);
    });
  }

  function renderAudit(s) {
    var tbody = document.querySelector("#audit-table tbody");
    if (!tbody) return;
    tbody.textContent = "";
    if (!s.operator_actions.length) return emptyRow(tbody, 6, "No operator action recorded yet.");
    s.operator_actions.forEach(function (e) {
      var tr = el("tr", {"class": "outcome-" + e.outcome});
      cell(tr, shortTime(e.ts), "nowrap");
      cell(tr, e.actor);
      cell(tr, e.verb + (e.target ? " — " + e.target : ""));
      cell(tr, compact(e.before) + " → " + compact(e.after));
      cell(tr, e.reason);
      holder(tr, el("span", {"class": "badge badge-" + e.outcome}, e.outcome));
      tbody.appendChild(tr);
    });
  }

  var PROBLEMS_SHOWN = 8;
  function renderProblems(s) {
    /* The Overview's "Recent problems": the newest DLQ and NEEDS_REVIEW actions (retried on Attention). */
    var tbody = document.querySelector("#problems-table tbody");
    if (!tbody) return;
    tbody.textContent = "";
    if (!s.attention.length) return emptyRow(tbody, 6, "No action needs attention.");
    s.attention.slice(0, PROBLEMS_SHOWN).forEach(function (a) {
      var tr = el("tr", {"data-action-id": String(a.id)});
      holder(tr, actionLink(a.id));
      holder(tr, el("span", {"class": "badge badge-" + a.status}, a.status));
      cell(tr, a.action_type);
      cell(tr, a.attempts);
      cell(tr, shortTime(a.updated_at), "nowrap");
      cell(tr, a.last_error, "error");
      tbody.appendChild(tr);
    });
  }

  function svgNode(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (!blank(text)) node.textContent = String(text);
    return node;
  }
  var W = 480, H = 150, LEFT = 44, RIGHT = 8, TOP = 10, BOTTOM = 20;

  function axes(svg, maxLabel, leftLabel, rightLabel) {
    svg.appendChild(svgNode("line", {x1: LEFT, y1: TOP, x2: LEFT, y2: H - BOTTOM, "class": "axis"}));
    svg.appendChild(svgNode("line", {x1: LEFT, y1: H - BOTTOM, x2: W - RIGHT, y2: H - BOTTOM, "class": "axis"}));
    svg.appendChild(svgNode("text", {x: LEFT - 4, y: TOP + 8, "text-anchor": "end", "class": "label"}, maxLabel));
    svg.appendChild(svgNode("text", {x: LEFT - 4, y: H - BOTTOM, "text-anchor": "end", "class": "label"}, "0"));
    svg.appendChild(svgNode("text", {x: LEFT, y: H - 4, "class": "label"}, leftLabel));
    svg.appendChild(svgNode("text", {x: W - RIGHT, y: H - 4, "text-anchor": "end", "class": "label"}, rightLabel));
  }
  function noData(svg, text) {
    svg.appendChild(svgNode("text", {x: W / 2, y: H / 2, "text-anchor": "middle", "class": "nodata"}, text));
  }

  function legend(id, colours, names) {
    var node = document.getElementById(id);
    if (!node) return;
    node.textContent = "";
    names.forEach(function (name) {
      var item = el("span", {"class": "legend-item"});
      item.appendChild(el("span", {"class": "swatch swatch-" + name}));
      item.appendChild(document.createTextNode(name + " "));
      node.appendChild(item);
    });
  }

  function drawTicks(s) {
    var svg = document.getElementById("chart-ticks");
    if (!svg) return;
    svg.textContent = "";
    legend("ticks-legend", TICK_COLOURS, Object.keys(TICK_COLOURS));
    var ticks = s.charts.tick_durations;
    document.getElementById("ticks-count").textContent = String(ticks.length);
    if (!ticks.length) return noData(svg, "No tick recorded yet");
    var max = Math.max.apply(null, ticks.map(function (t) { return t.seconds; }).concat([0.001]));
    var slot = (W - LEFT - RIGHT) / Math.max(ticks.length, 10);
    var height = H - TOP - BOTTOM;
    ticks.forEach(function (t, i) {
      var h = Math.max(1, (t.seconds / max) * height);
      var bar = svgNode("rect", {
        x: (LEFT + 1 + i * slot).toFixed(1), y: (H - BOTTOM - h).toFixed(1),
        width: Math.max(1, slot - 1).toFixed(1), height: h.toFixed(1),
        fill: TICK_COLOURS[t.status] || "#555", "class": "bar"
      });
      bar.appendChild(svgNode("title", {}, "tick " + t.id + " " + t.status + ": " + t.seconds.toFixed(3) + " s"));
      svg.appendChild(bar);
    });
    axes(svg, max.toFixed(max < 1 ? 3 : 1) + " s", shortTime(ticks[0].started_at).slice(11), shortTime(ticks[ticks.length - 1].started_at).slice(11));
  }

  function drawDepth(s) {
    var svg = document.getElementById("chart-depth");
    if (!svg) return;
    svg.textContent = "";
    var points = s.charts.queue_depth;
    var statuses = s.charts.queue_depth_statuses;
    legend("depth-legend", DEPTH_COLOURS, statuses);
    if (!points.length) return noData(svg, "No tick in the last hour");
    var times = points.map(function (p) { return new Date(p.t).getTime(); });
    var t0 = times[0], t1 = Math.max(times[times.length - 1], t0 + 1);
    var max = 1;
    points.forEach(function (p) { statuses.forEach(function (st) { max = Math.max(max, p.depth[st] || 0); }); });
    var width = W - LEFT - RIGHT, height = H - TOP - BOTTOM;
    statuses.forEach(function (status) {
      var coords = points.map(function (p, i) {
        var x = LEFT + ((times[i] - t0) / (t1 - t0)) * width;
        var y = H - BOTTOM - ((p.depth[status] || 0) / max) * height;
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      if (coords.length === 1) coords.push((LEFT + width).toFixed(1) + "," + coords[0].split(",")[1]);
      var line = svgNode("polyline", {points: coords.join(" "), fill: "none", stroke: DEPTH_COLOURS[status], "stroke-width": "2", "class": "series series-" + status});
      line.appendChild(svgNode("title", {}, status + ": " + (points[points.length - 1].depth[status] || 0) + " now"));
      svg.appendChild(line);
    });
    axes(svg, String(max), shortTime(points[0].t).slice(11), shortTime(points[points.length - 1].t).slice(11));
  }

  /* Flow control (docs/flow-control.md): approvals, rate-limit deferrals, paused action types. */
  var approvalsUrl = root.dataset.approvalsUrl;

  function renderApprovals(s) {
    var tbody = document.querySelector("#approvals-table tbody");
    if (!tbody || !s.approvals) return;
    tbody.textContent = "";
    if (!s.approvals.length) return emptyRow(tbody, 7, "Nothing awaits approval.");
    s.approvals.forEach(function (a) {
      var tr = el("tr", {"data-action-id": String(a.id)});
      holder(tr, actionLink(a.id));
      cell(tr, a.action_type);
      cell(tr, a.idempotency_key, "mono small");
      cell(tr, a.priority);
      var sha = cell(tr, a.artifact_sha256 ? a.artifact_sha256.slice(0, 16) + "…" : "—", "mono small");
      if (a.artifact_sha256) sha.title = a.artifact_sha256;
      cell(tr, shortTime(a.updated_at));
      holder(tr, el("a", {"class": "button", href: approvalsUrl + a.id + "/"}, "Review"));
      tbody.appendChild(tr);
    });
  }

  function renderDeferred(s) {
    var tbody = document.querySelector("#deferred-table tbody");
    if (!tbody || !s.deferred) return;
    tbody.textContent = "";
    if (!s.deferred.length) return emptyRow(tbody, 5, "No action is deferred.");
    s.deferred.forEach(function (d) {
      var tr = el("tr", {"data-action-id": String(d.id)});
      holder(tr, actionLink(d.id));
      cell(tr, d.action_type);
      cell(tr, d.rate_key, "mono small");
      cell(tr, shortTime(d.not_before), "nowrap");
      cell(tr, d.note, "small");
      tbody.appendChild(tr);
    });
  }

  function applyTypePauses(s) {
    var paused = {};
    (s.paused_types || []).forEach(function (p) { paused[p.action_type] = p; });
    var banner = document.getElementById("banner-types-paused");
    if (banner) {
      banner.hidden = !(s.paused_types || []).length;
      document.getElementById("types-paused-list").textContent =
        (s.paused_types || []).map(function (p) { return p.action_type; }).join(", ");
    }
    document.querySelectorAll("#types-table tbody tr[data-type]").forEach(function (tr) {
      var p = paused[tr.dataset.type];
      var cells = tr.querySelectorAll("td");
      tr.className = p ? "type-paused" : "";
      var badge = cells[1].querySelector(".badge");
      badge.className = "badge badge-" + (p ? "PAUSED" : "RUNNING");
      badge.textContent = p ? "PAUSED" : "running";
      cells[2].textContent = p ? p.paused_by : "—";
      cells[3].textContent = p ? shortTime(p.paused_at) : "—";
      cells[4].textContent = p ? p.reason : "—";
    });
  }

  var refreshes = 0;
  function render(s) {
    applyFields(s);
    applyBanners(s);
    applyTypePauses(s);
    renderApprovals(s);
    renderDeferred(s);
    renderLogs(s);
    renderAudit(s);
    renderProblems(s);
    drawTicks(s);
    drawDepth(s);
  }

  function stale(reason) {
    document.getElementById("stale-reason").textContent = reason;
    document.getElementById("banner-stale").hidden = !reason;
  }

  function refresh() {
    fetch(jsonUrl, {credentials: "same-origin", cache: "no-store", headers: {Accept: "application/json"}})
      .then(function (response) {
        if (response.status === 401 || response.status === 403) throw new Error("your session has ended; reload the page to log in again");
        if (!response.ok) throw new Error("the server answered " + response.status);
        return response.json();
      })
      .then(function (s) {
        render(s);
        stale("");
        refreshes += 1;
        root.dataset.refreshes = String(refreshes);
      })
      .catch(function (error) { stale(error.message || String(error)); })
      .then(function () { window.setTimeout(refresh, refreshMs); });
  }

  render(JSON.parse(initial.textContent));
  window.setTimeout(refresh, refreshMs);
})();
