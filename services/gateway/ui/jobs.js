// The jobs pages: the live list, one job (events, attempts, deliveries, video) and the submit form.
import { FINAL, announce, api, badge, cells, failure, follow, followMany, h, message, navigate, redrawEvery, table, when } from "./core.js";

const STATUSES = ["queued", "processing", "completed", "failed", "cancelled"];
// The list takes in new jobs this often; the bars of its active rows move over one event stream.
const LIST_REFRESH_MS = 5000;

function jobLink(job) {
  return h("a", { href: `/ui/jobs/${encodeURIComponent(job.id)}` }, job.prompt.length > 80 ? `${job.prompt.slice(0, 80)}…` : job.prompt);
}

/** A progress bar with its number, for a job; update() moves it. */
function progressBar(job) {
  const bar = h("progress", { max: 100, value: job.progressPercent, "aria-label": `Progress of job ${job.id}` });
  const text = h("span", { class: "percent" }, `${job.progressPercent} %`);
  const stage = h("span", { class: "hint stage" }, job.progressStage);
  const cell = h("span", { class: "bar" }, bar, text, stage);
  cell.update = (next) => {
    bar.value = next.progressPercent;
    text.textContent = `${next.progressPercent} %`;
    stage.textContent = next.progressStage;
  };
  return cell;
}

function jobRow(job) {
  const bar = progressBar(job);
  const status = h("td", { class: "status" }, badge(job.status));
  const row = h("tr", { "data-job": job.id }, h("td", { class: "prompt" }, jobLink(job)), h("td", { class: "mono" }, job.userId),
    status, h("td", {}, bar), h("td", {}, when(job.createdAt)));
  row.update = (next) => {
    status.replaceChildren(badge(next.status));
    bar.update(next);
  };
  return row;
}

function listQuery(query) {
  const params = new URLSearchParams({ take: "20" });
  for (const name of ["userId", "status", "cursor"]) if (query.get(name)) params.set(name, query.get(name));
  return params;
}

function filters(query) {
  const user = h("input", { id: "filter-user", name: "userId", value: query.get("userId") || "", autocomplete: "off" });
  const status = h("select", { id: "filter-status", name: "status" }, h("option", { value: "" }, "any"),
    STATUSES.map((name) => h("option", { value: name, selected: query.get("status") === name }, name)));
  return h("form", {
    class: "filters", role: "search", onsubmit: (event) => {
      event.preventDefault();
      const params = new URLSearchParams();
      if (user.value.trim()) params.set("userId", user.value.trim());
      if (status.value) params.set("status", status.value);
      navigate(`/ui/${params.size ? `?${params}` : ""}`);
    },
  }, h("label", { for: "filter-user" }, "User", user), h("label", { for: "filter-status" }, "Status", status),
  h("button", { type: "submit" }, "Filter"));
}

/** The jobs, newest first, a page at a time: bars move over SSE, the first page refreshes itself. */
export async function jobsPage(main, { signal, query }) {
  main.append(h("h1", {}, "Jobs"), filters(query));
  const list = table("jobs", "Loading…", [["Prompt"], ["User"], ["Status"], ["Progress"], ["Created"]], []);
  const [caption, body] = [list.querySelector("caption"), list.querySelector("tbody")];
  const pager = h("p", { class: "pager" });
  main.append(list, pager);
  const rows = new Map();
  // The page's active jobs are followed on one stream (a browser has six connections to a host,
  // not one a row); a refresh that shows an active job the stream lacks opens a new one.
  let live = { ids: new Set(), stop: null };
  const followActive = (jobs) => {
    const active = jobs.filter((job) => !FINAL.has(job.status)).map((job) => job.id);
    if (active.every((id) => live.ids.has(id))) return;
    live.stop?.abort();
    live = { ids: new Set(active), stop: new AbortController() };
    // Ends with the page, or when a newer stream takes over.
    const ended = AbortSignal.any([signal, live.stop.signal]);
    followMany(active, (next) => rows.get(next.id)?.update(next), ended).catch(() => {});
  };
  const load = async () => {
    const page = await api(`/api/v1/jobs?${listQuery(query)}`, { signal });
    caption.textContent = page.total === 1 ? "1 job" : `${page.total} jobs`;
    const ordered = page.jobs.map((job) => {
      const row = rows.get(job.id) || jobRow(job);
      row.update(job);
      rows.set(job.id, row);
      return row;
    });
    for (const id of [...rows.keys()]) if (!page.jobs.some((job) => job.id === id)) rows.delete(id);
    body.replaceChildren(...ordered);
    if (!page.jobs.length) body.append(h("tr", {}, h("td", { colspan: 5 }, "No jobs match.")));
    followActive(page.jobs);
    const next = new URLSearchParams(query);
    next.set("cursor", page.nextCursor || "");
    pager.replaceChildren(query.get("cursor") ? h("a", { href: "/ui/" }, "First page") : "",
      page.nextCursor ? h("a", { href: `/ui/?${next}` }, "Next page") : "");
  };
  // A later page stays as it was drawn: only the first one takes in new jobs.
  if (query.get("cursor")) await load();
  else await redrawEvery(LIST_REFRESH_MS, signal, load);
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function jobFacts(job) {
  return facts([
    ["Status", badge(job.status)], ["Prompt", job.prompt], ["User", h("span", { class: "mono" }, job.userId)],
    ["Provider", job.usedProvider ? `${job.usedProvider} (${job.usedModel || "default model"})` : "—"],
    ["Created", when(job.createdAt)], ["Started", when(job.startedAt)], ["Finished", when(job.completedAt)],
    ["Generation time", job.generationTimeMs === null ? "—" : `${(job.generationTimeMs / 1000).toFixed(1)} s`],
    ["Cost", job.costUsd === null || job.costUsd === undefined ? "—" : `$${job.costUsd.toFixed(4)}`],
    ["Last error", job.errorMessage || "none"],
    ["Metadata", h("span", { class: "mono" }, JSON.stringify(job.metadata))],
  ]);
}

/** The job's attempts: each one that ended (GET …/attempts), then the one running now. */
async function attempts(job, signal) {
  const { attempts: ended } = await api(`/api/v1/jobs/${encodeURIComponent(job.id)}/attempts`, { signal });
  const rows = ended.map((a) => h("tr", {}, cells([a.attempt, badge(a.outcome), a.provider || "—", a.error || "—",
    when(a.startedAt), when(a.endedAt), h("span", { class: "mono" }, a.workerId || "—")])));
  if (job.status === "processing") {
    rows.push(h("tr", {}, cells([job.retryCount + 1, badge("processing"), "—", "—", when(job.startedAt), "—", "—"])));
  }
  const summary = h("p", { class: "hint" }, `${job.maxRetries + 1} attempts allowed; ${job.retryCount} ${job.retryCount === 1 ? "retry" : "retries"} so far.`);
  if (!rows.length) return h("div", {}, summary, message(job.status === "queued" ? "Not started yet." : "No attempt ran."));
  return h("div", {}, summary, table("attempts", "Each attempt, oldest first (the worker is shown to the admin key)",
    [["Attempt", 1], ["Outcome"], ["Provider"], ["Error"], ["Started"], ["Ended"], ["Worker"]], rows));
}

function video(job) {
  if (!job.result) return message(FINAL.has(job.status) ? "This job made no video." : "The video appears here when the job completes.");
  const r = job.result;
  return h("figure", {},
    h("video", { controls: true, preload: "metadata", src: r.videoUrl, "aria-label": `Video of job ${job.id}` }),
    h("figcaption", { class: "hint" }, `${r.width}×${r.height}, ${r.fps} fps, ${r.durationSeconds} s, ${(r.sizeBytes / 1024).toFixed(0)} KiB `,
      h("a", { href: r.videoUrl, download: `${job.id}.mp4` }, "Download")));
}

async function deliveries(job, signal) {
  if (!job.webhookUrl) return message("This job has no webhook.");
  const page = await api(`/api/v1/jobs/${encodeURIComponent(job.id)}/webhooks?take=100`, { signal });
  if (!page.deliveries.length) return message("No deliveries yet.");
  const rows = page.deliveries.map((d) => h("tr", {}, cells([d.eventType, badge(d.state), d.attempts,
    d.lastError || (d.lastStatusCode ? String(d.lastStatusCode) : "—"), when(d.createdAt)])));
  return table("job-deliveries", "Each event sent to the webhook, oldest first",
    [["Event"], ["State"], ["Attempts", 1], ["Last answer"], ["Created"]], rows);
}

function actions(job, refresh) {
  const active = !FINAL.has(job.status);
  const button = h("button", {
    type: "button", class: "danger", onclick: async () => {
      if (!active && !window.confirm("Delete this job and its video?")) return;
      button.disabled = true;
      try {
        await api(`/api/v1/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" });
        announce(active ? "Job cancelled" : "Job deleted");
        if (active) refresh(); else navigate("/ui/");
      } catch (error) {
        button.replaceWith(failure(error));
      }
    },
  }, active ? "Cancel job" : "Delete job");
  return h("p", {}, button);
}

/** One job: its facts, a live bar and event log, its attempts, webhook deliveries and video. */
export async function jobPage(main, { signal, args: [id] }) {
  let job = await api(`/api/v1/jobs/${encodeURIComponent(id)}`, { signal });
  const bar = progressBar(job);
  const log = h("ol", { class: "events", id: "events" });
  const parts = { facts: h("div"), attempts: h("div"), video: h("div", { id: "video" }), deliveries: h("div"), actions: h("div") };
  const refresh = async () => {
    job = await api(`/api/v1/jobs/${encodeURIComponent(id)}`, { signal });
    render();
  };
  let attemptsOf = "";  // the status and retry count the attempts table was drawn for
  const render = () => {
    bar.update(job);
    parts.facts.replaceChildren(jobFacts(job));
    const state = `${job.status}/${job.retryCount}`;
    if (attemptsOf !== state) {
      attemptsOf = state;
      // Drawn only while no later state asked for its own (answers may come out of order).
      const draw = (drawn) => { if (attemptsOf === state) parts.attempts.replaceChildren(drawn); };
      attempts(job, signal).then(draw, (error) => draw(failure(error)));
    }
    parts.actions.replaceChildren(actions(job, refresh));
    if (!parts.video.querySelector("video") || !job.result) parts.video.replaceChildren(video(job));
  };
  main.append(h("h1", {}, "Job ", h("span", { class: "mono" }, job.id)), h("p", { id: "job-progress" }, bar), parts.actions,
    parts.facts, h("h2", {}, "Video"), parts.video, h("h2", {}, "Attempts"), parts.attempts,
    h("h2", {}, "Events"), h("p", { class: "hint" }, "Live since this page opened: each change of status or progress."), log,
    h("h2", {}, "Webhook deliveries"), parts.deliveries);
  render();
  parts.deliveries.replaceChildren(await deliveries(job, signal).catch(failure));
  await follow(id, (next, type) => {
    job = next;
    render();
    log.append(h("li", {}, h("strong", {}, type), ` ${new Date().toLocaleTimeString()}: ${next.status}, ${next.progressPercent} %`,
      next.progressStage ? ` (${next.progressStage})` : ""));
    if (FINAL.has(next.status)) announce(`Job ${next.status}`);
  }, signal);
  if (!signal.aborted) parts.deliveries.replaceChildren(await deliveries(job, signal).catch(failure));
}

function field(label, control, hint) {
  return h("label", { for: control.id }, label, hint ? h("span", { class: "hint" }, hint) : "", control);
}

/** The form that creates a job, then shows it. */
export async function submitPage(main) {
  const prompt = h("textarea", { id: "prompt", name: "prompt", required: true, maxlength: 2000 });
  const user = h("input", { id: "user-id", name: "userId", autocomplete: "off" });
  const priority = h("select", { id: "priority", name: "priority" }, ["normal", "high", "low"].map((p) => h("option", { value: p }, p)));
  const duration = h("input", { id: "duration", name: "durationSeconds", type: "number", min: 1, max: 60, step: 1, value: "4" });
  const provider = h("input", { id: "provider", name: "provider", autocomplete: "off" });
  const webhook = h("input", { id: "webhook-url", name: "webhookUrl", type: "url", autocomplete: "off" });
  const outcome = h("div", { id: "submit-outcome" });
  const button = h("button", { type: "submit" }, "Submit job");
  const form = h("form", {
    class: "stack", onsubmit: async (event) => {
      event.preventDefault();
      const metadata = { priority: priority.value, durationSeconds: Number(duration.value) };
      if (provider.value.trim()) metadata.provider = provider.value.trim();
      const body = { prompt: prompt.value, metadata };
      if (user.value.trim()) body.userId = user.value.trim();
      if (webhook.value.trim()) body.webhookUrl = webhook.value.trim();
      button.disabled = true;
      try {
        const job = await api("/api/v1/jobs", { method: "POST", body });
        announce("Job submitted");
        navigate(`/ui/jobs/${encodeURIComponent(job.id)}`);
      } catch (error) {
        outcome.replaceChildren(failure(error));
        button.disabled = false;
      }
    },
  }, field("Prompt", prompt), field("User id", user, "Required with the admin key; a user key acts for its own user"),
  field("Priority", priority), field("Duration (seconds)", duration), field("Provider", provider, "Optional: one from the Providers page"),
  field("Webhook URL", webhook, "Optional: status changes are POSTed here"), h("p", {}, button), outcome);
  main.append(h("h1", {}, "Submit a job"), form);
}
