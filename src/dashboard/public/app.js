// The Supaqueue dashboard's page: three views picked by the address's hash (#/, #/queue/<name>, #/job/<id>), each
// redrawn from the JSON API every two seconds. Text from the database only ever goes in as text (textContent),
// never as HTML.

const REFRESH_MS = 2000;
const main = document.getElementById("main");
let meta = { readOnly: true };
let timer = null;
let drawing = 0;

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "rect", "line"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

async function api(path, method = "GET") {
  const response = await fetch(`/api/${path}`, { method, headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok && !("message" in body)) throw new Error(body.error ?? `HTTP ${response.status}`);
  return body;
}

const enc = encodeURIComponent;
const fmtTime = (t) => (t ? new Date(t).toLocaleString() : "–");
const fmtMs = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} ms`);

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

const capped = (n, cap) => (n >= cap ? `${cap.toLocaleString()}+` : n.toLocaleString());
const badge = (status) =>
  h("span", { class: `badge ${status}`, "data-status": status }, status.replace("_", " "));

/** A bar per minute: successful jobs (below) and failed ones (stacked above), scaled to the busiest minute. */
function sparkline(minutes, label) {
  const w = 90;
  const ht = 24;
  const bar = w / minutes.length;
  const top = Math.max(1, ...minutes.map(([, ok, failed]) => ok + failed));
  const bars = minutes.flatMap(([, ok, failed], i) => {
    const okH = (ok / top) * ht;
    const failH = (failed / top) * ht;
    return [
      h("rect", { class: "ok", x: i * bar, y: ht - okH, width: bar - 1, height: okH }),
      h("rect", { class: "fail", x: i * bar, y: ht - okH - failH, width: bar - 1, height: failH }),
    ];
  });
  return h(
    "svg",
    {
      class: "spark",
      width: w,
      height: ht + 1,
      viewBox: `0 0 ${w} ${ht + 1}`,
      role: "img",
      "aria-label": label,
    },
    h("line", { class: "base", x1: 0, y1: ht + 0.5, x2: w, y2: ht + 0.5 }),
    bars,
  );
}

/** Asks before an action, says what the action did, and redraws. */
function confirmThen(text, note, path) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-note").textContent = note ?? "";
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok") {
      draw();
      return;
    }
    try {
      const result = await api(path, "POST");
      notice(result.message ?? "Done.", !result.ok);
    } catch (error) {
      notice(error.message, true);
    }
    draw();
  };
  dialog.showModal();
}

function notice(text, bad = false) {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.className = bad ? "error" : "";
  el.hidden = false;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => {
    el.hidden = true;
  }, 8000);
}

const MANAGED_NOTE = (q) =>
  q.managed_by
    ? `This queue is managed by ${q.managed_by}: the next deploy follows the file (its paused: setting), whatever you choose here.`
    : null;

function pauseButton(q) {
  if (meta.readOnly) return null;
  const verb = q.paused ? "resume" : "pause";
  return h(
    "button",
    {
      "data-action": verb,
      onclick: () =>
        confirmThen(
          q.paused
            ? `Resume queue ${q.name}? Its waiting jobs are sent at once.`
            : `Pause queue ${q.name}? Calls in flight finish; new jobs wait.`,
          MANAGED_NOTE(q),
          `queues/${enc(q.name)}/${verb}`,
        ),
    },
    q.paused ? "Resume" : "Pause",
  );
}

/** Links to jobs (a chain's parent, children, fan-in), each shown by the start of its id. */
function jobLinks(ids) {
  return ids.flatMap((id, i) => [i ? ", " : "", h("a", { href: `#/job/${id}` }, id.slice(0, 13))]);
}

function table(headers, rows) {
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      {},
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          headers.map(([text, cls]) => h("th", { class: cls }, text)),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------------------------------------------

async function drawQueues() {
  const data = await api("overview");
  const rows = data.queues.map((q) => {
    const ok = q.minutes.reduce((n, [, s]) => n + s, 0);
    const failed = q.minutes.reduce((n, [, , f]) => n + f, 0);
    const rate = ok + failed > 0 ? `${((100 * failed) / (ok + failed)).toFixed(1)}%` : "–";
    return h(
      "tr",
      { "data-queue": q.name },
      h("td", {}, h("a", { href: `#/queue/${enc(q.name)}` }, q.name)),
      h(
        "td",
        { "data-field": "state" },
        badge(q.paused ? "paused" : "running"),
        q.managed_by ? h("span", { class: "muted", title: `managed by ${q.managed_by}` }, " yml") : null,
        ...q.alerts.map((a) =>
          h(
            "span",
            {
              class: "badge failed",
              "data-field": "alert",
              title: `since ${new Date(a.opened_at).toLocaleString()}`,
            },
            `alert: ${a.kind.replace("_", " ")}`,
          ),
        ),
      ),
      h("td", { class: "num", "data-field": "workers" }, `${q.busy}/${q.workers}`),
      h("td", { class: "num", "data-field": "due" }, capped(q.due, data.backlog_cap)),
      h("td", { class: "num", "data-field": "scheduled" }, capped(q.scheduled, data.backlog_cap)),
      h("td", { class: "num", "data-field": "oldest" }, fmtAge(q.oldest_due_s)),
      h(
        "td",
        { "data-field": "throughput" },
        sparkline(q.minutes, `${ok} jobs finished in the last ${q.minutes.length} minutes`),
        h("span", { class: "chart-label", "data-field": "finished" }, `${ok + failed}`),
      ),
      h("td", { class: "num", "data-field": "failure-rate" }, rate),
      h("td", { class: "num" }, `${fmtMs(q.p50_ms)} / ${fmtMs(q.p95_ms)}`),
      h("td", { class: "num" }, rateText(q)),
      h(
        "td",
        {},
        q.dead_letter_queue
          ? h("a", { href: `#/queue/${enc(q.dead_letter_queue)}` }, q.dead_letter_queue)
          : "–",
      ),
      h("td", {}, pauseButton(q)),
    );
  });
  return [
    h("h1", {}, "Queues"),
    h(
      "p",
      { class: "muted" },
      `Backlog counts stop at ${data.backlog_cap.toLocaleString()}. Charts: jobs finished per minute over the last ${data.queues[0]?.minutes.length ?? 15} minutes (green successful, red failed)${data.charts_capped ? ", from the latest 20,000 finished jobs only" : ""}; call time p50/p95 over the latest finished jobs.`,
    ),
    data.queues.length === 0
      ? h("p", {}, "No queues yet. Add one to supaqueue.yml and deploy.")
      : table(
          [
            ["Queue"],
            ["State"],
            ["Busy/workers", "num"],
            ["Due", "num"],
            ["Scheduled", "num"],
            ["Oldest due", "num"],
            ["Finished / min (15 min)"],
            ["Failed", "num"],
            ["p50 / p95", "num"],
            ["Rate limit", "num"],
            ["Dead letters"],
            [""],
          ],
          rows,
        ),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// A queue
// ---------------------------------------------------------------------------------------------------------------

const FILTERS = ["all", "pending", "waiting", "in_progress", "successful", "failed", "cancelled"];

async function drawQueue(name, params) {
  const status = FILTERS.includes(params.get("status")) ? params.get("status") : "all";
  const cursor = params.get("cursor");
  const [overview, page, errors] = await Promise.all([
    api("overview"),
    api(`queues/${enc(name)}/jobs?status=${status}${cursor ? `&cursor=${enc(cursor)}` : ""}`),
    api(`queues/${enc(name)}/errors`),
  ]);
  const q = overview.queues.find((x) => x.name === name);
  if (!q) return [h("h1", {}, name), h("p", { class: "error" }, "This queue does not exist.")];
  const link = (s, c) => `#/queue/${enc(name)}?status=${s}${c ? `&cursor=${enc(c)}` : ""}`;
  const retryFailed = meta.readOnly
    ? null
    : h(
        "button",
        {
          "data-action": "retry-failed",
          onclick: () =>
            confirmThen(
              `Send every failed job of ${name} round again, each with a fresh set of attempts?`,
              null,
              `queues/${enc(name)}/retry-failed`,
            ),
        },
        "Retry failed jobs",
      );
  return [
    h("p", {}, h("a", { href: "#/" }, "← Queues")),
    h("h1", {}, name, " ", badge(q.paused ? "paused" : "running")),
    h(
      "dl",
      {},
      h("dt", {}, "Target"),
      h("dd", {}, q.target),
      h("dt", {}, "Workers"),
      h("dd", {}, `${q.busy} busy of ${q.workers}`),
      h("dt", {}, "Backlog"),
      h(
        "dd",
        { "data-field": "backlog" },
        `${capped(q.due, overview.backlog_cap)} due, ${capped(q.scheduled, overview.backlog_cap)} scheduled; oldest due ${fmtAge(q.oldest_due_s)}`,
      ),
      h("dt", {}, "Managed by"),
      h("dd", {}, q.managed_by ?? "not supaqueue.yml (made by hand)"),
    ),
    h("div", { class: "toolbar" }, pauseButton(q), retryFailed),
    h(
      "nav",
      { class: "tabs toolbar" },
      FILTERS.map((s) =>
        h(
          "a",
          { href: link(s), class: s === status ? "current" : null, "data-filter": s },
          s.replace("_", " "),
        ),
      ),
    ),
    page.jobs.length === 0
      ? h(
          "p",
          { class: "muted" },
          cursor ? "No more jobs here." : "No jobs with this status among the latest.",
        )
      : table(
          [
            ["Job"],
            ["Status"],
            ["Attempts", "num"],
            ["Created"],
            ["Finished"],
            ["Last status", "num"],
            ["Last error"],
          ],
          page.jobs.map((j) =>
            h(
              "tr",
              { "data-job": j.id },
              h("td", {}, h("a", { href: `#/job/${j.id}` }, j.id.slice(0, 13))),
              h("td", {}, badge(j.status)),
              h("td", { class: "num" }, j.attempts),
              h("td", {}, fmtTime(j.created_at)),
              h("td", {}, fmtTime(j.finished_at)),
              h("td", { class: "num" }, j.last_status_code ?? "–"),
              h("td", { class: "wrap" }, j.last_error ?? ""),
            ),
          ),
        ),
    h(
      "div",
      { class: "toolbar" },
      cursor ? h("a", { href: link(status) }, "Newest") : null,
      page.next ? h("a", { href: link(status, page.next), "data-page": "older" }, "Older →") : null,
      h("span", { class: "muted" }, `looked at ${page.scanned.toLocaleString()} jobs for this page`),
    ),
    h("h2", {}, "Recent errors"),
    errors.errors.length === 0
      ? h("p", { class: "muted" }, "No failed attempts among this queue's latest jobs.")
      : table(
          [["Status", "num"], ["Error"], ["Attempts", "num"], ["Last seen"], ["Example"]],
          errors.errors.map((e) =>
            h(
              "tr",
              {},
              h("td", { class: "num" }, e.status_code ?? "–"),
              h("td", { class: "wrap" }, e.error ?? ""),
              h("td", { class: "num" }, e.count),
              h("td", {}, fmtTime(e.last_seen)),
              h("td", {}, h("a", { href: `#/job/${e.example_job}` }, e.example_job.slice(0, 13))),
            ),
          ),
        ),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// A job
// ---------------------------------------------------------------------------------------------------------------

let revealHeaders = false;

async function drawJob(id) {
  const { job, attempts } = await api(`jobs/${enc(id)}${revealHeaders ? "?reveal=headers" : ""}`);
  const headerRows = [
    ...Object.entries(job.queue_headers).map(([k, v]) => [k, v, "queue"]),
    ...Object.entries(job.job_headers).map(([k, v]) => [k, v, "job"]),
  ].map(([k, v, from]) =>
    h(
      "tr",
      {},
      h("td", {}, k),
      h("td", { class: "wrap" }, v ?? h("span", { class: "muted" }, "hidden")),
      h("td", {}, from),
    ),
  );
  const secretRows = job.secret_headers.map((k) =>
    h(
      "tr",
      {},
      h("td", {}, k),
      h("td", {}, h("span", { class: "muted" }, "secret, kept in Vault: never shown")),
      h("td", {}, "queue"),
    ),
  );
  const actions = [];
  if (!meta.readOnly && (job.status === "failed" || job.status === "cancelled") && !job.in_flight) {
    actions.push(
      h(
        "button",
        {
          "data-action": "retry",
          onclick: () =>
            confirmThen(
              `Send job ${job.id} round again with a fresh set of attempts?`,
              null,
              `jobs/${job.id}/retry`,
            ),
        },
        "Retry",
      ),
    );
  }
  if (!meta.readOnly && (job.status === "pending" || job.status === "in_progress")) {
    actions.push(
      h(
        "button",
        {
          class: "danger",
          "data-action": "cancel",
          onclick: () =>
            confirmThen(
              `Cancel job ${job.id}? A call already in flight finishes but no longer changes it.`,
              null,
              `jobs/${job.id}/cancel`,
            ),
        },
        "Cancel",
      ),
    );
  }
  let payload = job.payload;
  try {
    payload = JSON.stringify(JSON.parse(job.payload), null, 2);
  } catch {
    // Cut at 100,000 characters: shown as it is.
  }
  return [
    h("p", {}, h("a", { href: `#/queue/${enc(job.queue)}` }, `← ${job.queue}`)),
    h("h1", {}, "Job ", job.id),
    h(
      "dl",
      {},
      h("dt", {}, "Status"),
      h(
        "dd",
        { "data-field": "status" },
        badge(job.status),
        job.accepted_at
          ? ` (the target took the call on at ${fmtTime(job.accepted_at)}; its callback is due by ${fmtTime(job.callback_due)})`
          : job.in_flight
            ? " (a call is in flight)"
            : "",
      ),
      h("dt", {}, "Attempts"),
      h("dd", {}, `${job.attempts} of ${job.max_attempts} in this run`),
      h("dt", {}, "Created"),
      h("dd", {}, fmtTime(job.created_at)),
      h("dt", {}, "Runs at"),
      h("dd", {}, fmtTime(job.run_at)),
      h("dt", {}, "Finished"),
      h("dd", {}, fmtTime(job.finished_at)),
      job.dedup_key ? [h("dt", {}, "Dedup key"), h("dd", {}, job.dedup_key)] : null,
      job.last_error ? [h("dt", {}, "Last error"), h("dd", { class: "error" }, job.last_error)] : null,
      job.parent_id
        ? [h("dt", {}, "Came from"), h("dd", { "data-field": "parent" }, jobLinks([job.parent_id]))]
        : null,
      job.children.length
        ? [h("dt", {}, "Started"), h("dd", { "data-field": "children" }, jobLinks(job.children))]
        : null,
      job.after.length
        ? [
            h("dt", {}, job.status === "waiting" ? `Waits for (${job.waiting_for} left)` : "Waited for"),
            h("dd", { "data-field": "after" }, jobLinks(job.after)),
          ]
        : null,
      job.waited_on_by.length
        ? [h("dt", {}, "Waited on by"), h("dd", { "data-field": "waited-on-by" }, jobLinks(job.waited_on_by))]
        : null,
    ),
    actions.length ? h("div", { class: "toolbar" }, actions) : null,
    h("h2", {}, "Payload", job.payload_cut ? " (first 100,000 characters)" : ""),
    h("pre", { "data-field": "payload" }, payload),
    h(
      "h2",
      {},
      "Headers ",
      headerRows.length
        ? h(
            "button",
            {
              "data-action": "reveal",
              onclick: () => {
                revealHeaders = !revealHeaders;
                draw();
              },
            },
            revealHeaders ? "Hide values" : "Show values",
          )
        : null,
    ),
    headerRows.length + secretRows.length === 0
      ? h("p", { class: "muted" }, "None beyond Supaqueue's own.")
      : table([["Name"], ["Value"], ["Set on"]], [...headerRows, ...secretRows]),
    h("h2", {}, "Attempts"),
    attempts.length === 0
      ? h("p", { class: "muted" }, "No attempt yet.")
      : table(
          [
            ["#", "num"],
            ["Result"],
            ["Status", "num"],
            ["Duration", "num"],
            ["Finished"],
            ["Error"],
            ["Response body"],
          ],
          attempts.map((a) =>
            h(
              "tr",
              { "data-attempt": a.attempt },
              h("td", { class: "num" }, a.attempt),
              h("td", {}, badge(a.succeeded ? "successful" : "failed")),
              h("td", { class: "num" }, a.status_code ?? "–"),
              h("td", { class: "num" }, fmtMs(a.duration_ms)),
              h("td", {}, fmtTime(a.finished_at)),
              h("td", { class: "wrap error", "data-field": "error" }, a.error ?? ""),
              h("td", { class: "wrap" }, a.response_body ? h("pre", {}, a.response_body) : ""),
            ),
          ),
        ),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// Routing and refresh
// ---------------------------------------------------------------------------------------------------------------

async function draw() {
  clearTimeout(timer);
  const run = ++drawing;
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    let nodes;
    if (parts[0] === "queue" && parts[1]) nodes = await drawQueue(parts[1], params);
    else if (parts[0] === "job" && parts[1]) nodes = await drawJob(parts[1]);
    else nodes = await drawQueues();
    if (run !== drawing) return;
    main.replaceChildren(...nodes.flat().filter(Boolean));
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (run !== drawing) return;
    document.getElementById("updated").textContent = `not updated: ${error.message}`;
  }
  // A dialog waiting for an answer is left alone; the page catches up once it closes.
  if (run === drawing)
    timer = setTimeout(() => (document.getElementById("confirm").open ? null : draw()), REFRESH_MS);
}

window.addEventListener("hashchange", () => {
  revealHeaders = false;
  document.getElementById("notice").hidden = true;
  draw();
});

meta = await api("meta").catch(() => meta);
document.getElementById("mode").textContent = meta.readOnly ? "read-only" : "";
draw();

/** The rate limit, or what the target's 429/503 lowered it to, or the Retry-After holding the queue. */
function rateText(q) {
  if (q.held_until) return `held until ${new Date(q.held_until).toLocaleTimeString()}`;
  const limit = q.rate_limit ? `${q.rate_limit}/s` : "–";
  if (q.slowed_to !== null && q.slowed_to !== undefined)
    return `slowed to ${Math.round(q.slowed_to * 10) / 10}/s${q.rate_limit ? ` of ${limit}` : ""}`;
  return limit;
}
