// The console's router: draws the page that the address names, and keeps the key form.
import { announce, apiKey, failure, h, message, navigate } from "./core.js";
import { jobPage, jobsPage, submitPage } from "./jobs.js";
import { keysPage, providersPage, queuesPage, webhooksPage } from "./operations.js";

const PAGES = [
  [/^\/ui\/?$/, "jobs", jobsPage, "Jobs"],
  [/^\/ui\/jobs\/([^/]+)$/, "jobs", jobPage, "Job"],
  [/^\/ui\/submit$/, "submit", submitPage, "Submit a job"],
  [/^\/ui\/queues$/, "queues", queuesPage, "Queues and workers"],
  [/^\/ui\/providers$/, "providers", providersPage, "Providers"],
  [/^\/ui\/webhooks$/, "webhooks", webhooksPage, "Dead letters"],
  [/^\/ui\/keys$/, "keys", keysPage, "API keys"],
];
let drawing = new AbortController();

async function draw() {
  drawing.abort();
  drawing = new AbortController();
  const { signal } = drawing;
  const main = document.getElementById("main");
  const found = PAGES.find(([pattern]) => pattern.test(location.pathname));
  main.replaceChildren();
  for (const link of document.querySelectorAll("nav a")) {
    if (found && link.dataset.page === found[1]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!found) {
    document.title = "Not found · VideoGen";
    main.append(h("h1", {}, "Not found"), message("No console page has this address."));
    return;
  }
  const [pattern, , page, title] = found;
  document.title = `${title} · VideoGen`;
  const args = location.pathname.match(pattern).slice(1).map(decodeURIComponent);
  try {
    await page(main, { signal, args, query: new URLSearchParams(location.search) });
  } catch (error) {
    if (!signal.aborted) main.append(failure(error));
  }
}

function start() {
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  input.value = apiKey.get();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apiKey.set(input.value.trim());
    announce(input.value.trim() ? "API key saved for this tab" : "API key cleared");
    draw();
  });
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[href^='/ui']");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    navigate(link.getAttribute("href"));
    document.getElementById("main").focus();
  });
  window.addEventListener("popstate", draw);
  draw();
}

start();
