// The operators' pages: queues and workers, providers, dead-letter webhooks and API keys.
import { announce, api, badge, cells, failure, h, message, redrawEvery, table, when } from "./core.js";

const REFRESH_MS = 3000;

function seconds(value) {
  return value < 60 ? `${value.toFixed(1)} s` : `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

/** Each queue's waiting, scheduled and running jobs and its oldest wait; the busy worker nodes. */
export async function queuesPage(main, { signal }) {
  const content = h("div");
  main.append(h("h1", {}, "Queues and workers"), h("p", { class: "hint" }, "From the jobs table, refreshed every 3 seconds."), content);
  await redrawEvery(REFRESH_MS, signal, async () => {
    const stats = await api("/api/v1/queues", { signal });
    const queues = stats.queues.map((q) => h("tr", {}, cells([q.queue, q.waiting, q.scheduled, q.running, seconds(q.oldestWaitSeconds)])));
    const workers = stats.workers.map((w) => h("tr", {}, cells([h("span", { class: "mono" }, w.node), w.running, `${seconds(w.lastHeartbeatSeconds)} ago`])));
    content.replaceChildren(
      table("queues", "Queues, highest priority first", [["Queue"], ["Waiting", 1], ["Scheduled", 1], ["Running", 1], ["Oldest wait"]], queues),
      h("h2", {}, "Workers running jobs"),
      workers.length ? table("workers", "Nodes, busiest first", [["Node"], ["Running", 1], ["Last heartbeat"]], workers)
        : message("No worker is running a job now."));
  });
}

function testButton(name, outcome) {
  const button = h("button", {
    type: "button", class: "secondary", "aria-label": `Test ${name}`, onclick: async () => {
      button.disabled = true;
      outcome.textContent = "testing…";
      try {
        const result = await api("/api/v1/providers/test", { method: "POST", body: { provider: name } });
        outcome.textContent = result.success ? `ok in ${Math.round(result.responseTimeMs)} ms` : `failed: ${result.error}`;
      } catch (error) {
        outcome.replaceChildren(failure(error));
      }
      button.disabled = false;
    },
  }, "Test");
  return button;
}

function circuit(p) {
  if (p.circuit !== "open" || !p.circuitOpenUntil) return badge(p.circuit);
  return h("span", {}, badge("open"), h("span", { class: "hint" }, ` until ${new Date(p.circuitOpenUntil).toLocaleTimeString()}`));
}

/** Every provider's health, circuit breaker, latency, cost and models, with a button to probe it. */
export async function providersPage(main, { signal }) {
  const content = h("div");
  main.append(h("h1", {}, "Providers"), content);
  const { providers } = await api("/api/v1/providers/status", { signal });
  const rows = providers.map((p) => {
    const outcome = h("span", { class: "hint", role: "status" });
    return h("tr", { "data-provider": p.provider }, cells([h("strong", {}, p.provider), badge(p.status), circuit(p), p.consecutiveFailures,
      `${Math.round(p.avgResponseTimeMs)} ms`, `$${p.costPerRequest.toFixed(4)}`, p.models.join(", ") || "—", when(p.lastCheckedAt),
      h("span", {}, testButton(p.provider, outcome), " ", outcome)]));
  });
  content.replaceChildren(providers.length ? table("providers",
    "An open circuit takes no job until its time; a half-open one gets the next try, after the others",
    [["Provider"], ["Health"], ["Circuit"], ["Failures in a row", 1], ["Average latency"], ["Cost per video"], ["Models"], ["Last checked"], ["Check now"]], rows)
    : message("No provider is configured."));
}

function redeliverButton(delivery, row) {
  const button = h("button", {
    type: "button", "aria-label": `Redeliver ${delivery.eventType} of job ${delivery.jobId}`, onclick: async () => {
      button.disabled = true;
      try {
        const again = await api(`/api/v1/webhooks/deliveries/${encodeURIComponent(delivery.id)}/redeliver`, { method: "POST" });
        row.querySelector(".state").replaceChildren(badge(again.state));
        button.replaceWith(h("span", { class: "hint" }, "sent again"));
        announce(`Delivery ${again.eventId} is ${again.state} again`);
      } catch (error) {
        button.replaceWith(failure(error));
      }
    },
  }, "Redeliver");
  return button;
}

/** Webhook deliveries by state (the dead letters first), each with a Redeliver button. */
export async function webhooksPage(main, { signal, query }) {
  const state = query.get("state") || "dead";
  main.append(h("h1", {}, "Dead letters"), h("p", { class: "hint" },
    "Deliveries whose retries ran out. Redeliver sends one again with its event id, so a receiver can tell a duplicate. Show: ",
    ["dead", "pending", "delivered"].map((name) => [h("a", { href: `/ui/webhooks?state=${name}`, "aria-current": name === state ? "true" : null }, name), " "])));
  const page = await api(`/api/v1/webhooks/deliveries?state=${encodeURIComponent(state)}&take=100`, { signal });
  if (!page.deliveries.length) {
    main.append(message(state === "dead" ? "No dead letters: every webhook was delivered or is still being tried." : `No ${state} deliveries.`));
    return;
  }
  const rows = page.deliveries.map((d) => {
    const row = h("tr", { "data-delivery": d.id });
    row.append(...cells([d.eventType, h("a", { href: `/ui/jobs/${encodeURIComponent(d.jobId)}` }, h("span", { class: "mono" }, d.jobId)),
      h("span", { class: "mono" }, d.url), d.attempts, d.lastError || String(d.lastStatusCode ?? "—"), when(d.createdAt)]),
    h("td", { class: "state" }, badge(d.state)), h("td", {}, redeliverButton(d, row)));
    return row;
  });
  main.append(table("deliveries", `${page.total} ${state} ${page.total === 1 ? "delivery" : "deliveries"}, newest first`,
    [["Event"], ["Job"], ["URL"], ["Attempts", 1], ["Last answer"], ["Created"], ["State"], ["Action"]], rows));
}

function deleteKeyButton(key, row) {
  const button = h("button", {
    type: "button", class: "danger", "aria-label": `Delete key ${key.name} of ${key.userId}`, onclick: async () => {
      if (!window.confirm(`Delete the key "${key.name}" of ${key.userId}? It stops working within 5 seconds.`)) return;
      button.disabled = true;
      try {
        await api(`/api/v1/api-keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
        row.remove();
        announce("Key deleted");
      } catch (error) {
        button.replaceWith(failure(error));
      }
    },
  }, "Delete");
  return button;
}

/** The per-user keys (admin): a form that makes one (its secret shown once), and the list. */
export async function keysPage(main, { signal }) {
  const list = h("div");
  const draw = async () => {
    const page = await api("/api/v1/api-keys?take=100", { signal });
    const rows = page.apiKeys.map((key) => {
      const row = h("tr", { "data-key": key.id });
      row.append(...cells([h("span", { class: "mono" }, key.prefix), key.name, h("span", { class: "mono" }, key.userId), when(key.createdAt)]),
        h("td", {}, deleteKeyButton(key, row)));
      return row;
    });
    list.replaceChildren(rows.length ? table("keys", `${page.total} keys, newest first`, [["Key"], ["Name"], ["User"], ["Created"], ["Action"]], rows)
      : message("No per-user keys yet."));
  };
  const user = h("input", { id: "key-user", name: "userId", required: true, autocomplete: "off" });
  const name = h("input", { id: "key-name", name: "name", required: true, maxlength: 128, autocomplete: "off" });
  const issued = h("div", { id: "issued-key" });
  const form = h("form", {
    class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const made = await api("/api/v1/api-keys", { method: "POST", body: { userId: user.value.trim(), name: name.value.trim() } });
        issued.replaceChildren(h("p", {}, `The key of ${made.userId}, shown this once: store it now.`),
          h("output", { class: "secret mono", "aria-label": "New API key" }, made.key));
        form.reset();
        await draw();
      } catch (error) {
        issued.replaceChildren(failure(error));
      }
    },
  }, h("label", { for: "key-user" }, "User", user), h("label", { for: "key-name" }, "Name", name), h("button", { type: "submit" }, "Create key"));
  form.querySelectorAll("label").forEach((label) => label.classList.add("stacked"));
  main.append(h("h1", {}, "API keys"), h("p", { class: "hint" }, "Each key acts for one user: it sees and makes only that user's jobs."),
    form, issued, list);
  await draw();
}
