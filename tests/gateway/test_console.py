"""The web console at /ui/ in a real headless Chromium through the edge: submit a job and watch it
finish, play its video, redeliver a dead letter, the operators' pages, the key rules, a phone's
width; a screenshot of each page under .data/screenshots/."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.gateway.conftest import Gateway, GatewayFactory
from tests.gateway.test_events import occupy_the_worker
from tests.gateway.test_webhooks_rest import QUICK, TINY, wait_states
from tests.support.browser import PHONE, chromium, screenshot, wait_for
from tests.support.deliveries import SECRET
from tests.support.factories import unique_user
from tests.support.webhook_receiver import webhook_receiver

# What a page's controls must have: a label a screen reader can say.
UNLABELLED = """return [...document.querySelectorAll('input, select, textarea, button, progress, video')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
  .map(e => e.outerHTML.slice(0, 80));"""


# The cells' text of each row of the job page's attempts table.
ATTEMPT_ROWS = """return [...document.querySelectorAll('#attempts tbody tr')]
  .map(r => [...r.cells].map(c => c.textContent))"""


@pytest.fixture(scope="module")
async def module_gateway(start_module_gateway: GatewayFactory) -> Gateway:
    """A development-mode system (no key: the admin) with quick webhooks, for the module."""
    return await start_module_gateway(stack_options={"jobs": QUICK})


def text(session: WebDriver, selector: str) -> str:
    """The text of the first element selector finds, read in one step: pages redraw parts of themselves."""
    found: str = session.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : ''", selector
    )
    return found


def value(session: WebDriver, selector: str) -> str:
    """The value of the first element selector finds (a progress bar's), read in one step."""
    found: str = session.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? String(e.value) : ''", selector
    )
    return found


def go(session: WebDriver, base: str, path: str, ready: str) -> None:
    session.get(base + path)
    wait_for(session, lambda s: s.find_elements(By.CSS_SELECTOR, ready), what=f"{ready} on {path}")


def submit_and_watch(base: str, user: str) -> dict[str, Any]:
    """Submits a job with the form, follows it to 100 % on its page, and plays its video."""
    with chromium() as session:
        go(session, base, "/ui/", "#jobs tbody")
        assert session.execute_script(UNLABELLED) == []
        session.find_element(By.LINK_TEXT, "Submit").click()
        wait_for(session, lambda s: s.find_elements(By.ID, "prompt"), what="the submit form")
        assert session.execute_script(UNLABELLED) == []
        session.find_element(By.ID, "prompt").send_keys("a red fox running through fresh snow")
        session.find_element(By.ID, "user-id").send_keys(user)
        duration = session.find_element(By.ID, "duration")
        duration.clear()
        duration.send_keys("2")
        screenshot(session, "submit")
        session.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
        wait_for(session, lambda s: "/ui/jobs/" in s.current_url, what="the job's page")
        job_id = session.current_url.rsplit("/", 1)[1]
        bar = "#job-progress progress"
        values: set[int] = set()

        def finished(s: WebDriver) -> bool:
            values.add(int(value(s, bar) or 0))
            return text(s, "dl.facts .badge") == "completed"

        wait_for(session, finished, timeout=90, what="the job completed")
        assert value(session, bar) == "100"
        duration_s = wait_for(
            session,
            lambda s: s.execute_script("const v = document.querySelector('#video video'); return v && v.duration"),
            what="the video's duration",
        )
        started = session.execute_async_script(
            "const done = arguments[0]; const v = document.querySelector('#video video'); v.muted = true;"
            "v.play().then(() => done('playing'), e => done(String(e)));"
        )
        assert started == "playing", started
        played = wait_for(
            session,
            lambda s: s.execute_script("return document.querySelector('#video video').currentTime"),
            what="the video playing on",
        )
        events = [li.text for li in session.find_elements(By.CSS_SELECTOR, "#events li")]
        attempts = wait_for(session, lambda s: s.execute_script(ATTEMPT_ROWS), what="the attempts table")
        assert session.execute_script(UNLABELLED) == []
        screenshot(session, "job")
        go(session, base, "/ui/", f"tr[data-job='{job_id}']")
        row = f"tr[data-job='{job_id}']"
        row_state = (text(session, f"{row} .badge"), value(session, f"{row} progress"))
        screenshot(session, "jobs")
    return {
        "id": job_id,
        "duration": duration_s,
        "played": played,
        "events": events,
        "attempts": attempts,
        "row": row_state,
        "values": values,
    }


async def test_a_job_submitted_in_the_console_is_watched_to_100_percent_and_its_video_plays(
    module_gateway: Gateway,
) -> None:
    base = f"http://127.0.0.1:{module_gateway.edge_port}"

    seen = await asyncio.to_thread(submit_and_watch, base, unique_user())

    job = (await module_gateway.client.get(f"/api/v1/jobs/{seen['id']}")).json()
    assert job["status"] == "completed"
    assert seen["duration"] == pytest.approx(job["result"]["durationSeconds"], abs=0.5)
    assert seen["played"] > 0, seen["played"]
    assert seen["events"][-1].startswith("job.completed"), seen["events"]
    [(number, outcome, provider, error, _, _, worker)] = seen["attempts"]
    assert (number, outcome, provider, error) == ("1", "completed", "local", "—") and worker.startswith("worker")
    assert seen["row"] == ("completed", "100")
    assert max(seen["values"]) == 100


ROWS = "[...document.querySelectorAll('#jobs tbody tr[data-job]')]"
ROW_STATES = (
    f"return {ROWS}.map(r => [r.querySelector('.badge').textContent, String(r.querySelector('progress').value)])"
)
EVENT_STREAMS = """return performance.getEntriesByType('resource').map(e => new URL(e.name))
  .filter(u => u.pathname.endsWith('/events')).map(u => [u.pathname, u.searchParams.getAll('jobId')])"""


def watch_the_list(base: str, user: str, release: Callable[[], None]) -> dict[str, Any]:
    """Opens the user's job list with every job queued, releases the worker, and reads every row to
    its end, then which event streams the page fetched."""

    def all_done(session: WebDriver) -> list[list[str]] | None:
        states: list[list[str]] = session.execute_script(ROW_STATES)
        return states if all(state == ["completed", "100"] for state in states) else None

    with chromium() as session:
        go(session, base, f"/ui/?userId={user}", "#jobs tbody tr[data-job]")
        queued = [status for status, _ in session.execute_script(ROW_STATES)]
        release()
        states = wait_for(session, all_done, timeout=60, what="every row at 100 %")
        screenshot(session, "jobs-live")
        # A fetch's entry is there once its body ended: the stream ends with its last job.
        streams = wait_for(session, lambda s: s.execute_script(EVENT_STREAMS), what="the list's event stream, ended")
    return {"queued": queued, "states": states, "streams": streams}


async def test_the_job_list_moves_every_active_row_over_one_stream(module_gateway: Gateway, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{module_gateway.edge_port}"
    gate, user = tmp_path / "gate", unique_user()
    await occupy_the_worker(module_gateway, gate)
    body = {"userId": user, "prompt": "a fox in the snow", "metadata": TINY}
    jobs = [(await module_gateway.client.post("/api/v1/jobs", json=body)).json() for _ in range(8)]

    seen = await asyncio.to_thread(watch_the_list, base, user, gate.touch)

    assert seen["queued"] == ["queued"] * 8
    assert seen["states"] == [["completed", "100"]] * 8
    # More rows than a browser has connections, all on one stream; no stream of a single job.
    [(path, ids)] = seen["streams"]
    assert path == "/api/v1/events" and sorted(ids) == sorted(j["id"] for j in jobs)


def redeliver_in_console(base: str, delivery_id: str) -> tuple[str, str]:
    with chromium() as session:
        go(session, base, "/ui/webhooks", f"tr[data-delivery='{delivery_id}']")
        row = session.find_element(By.CSS_SELECTOR, f"tr[data-delivery='{delivery_id}']")
        before = row.find_element(By.CSS_SELECTOR, ".state").text
        screenshot(session, "dead-letters")
        row.find_element(By.TAG_NAME, "button").click()
        wait_for(session, lambda s: "sent again" in row.text, what="the redelivery")
        return before, row.find_element(By.CSS_SELECTOR, ".state").text


async def test_a_dead_letter_is_redelivered_from_the_console(module_gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{module_gateway.edge_port}"
    with webhook_receiver(SECRET, failing=True) as receiver:
        created = await module_gateway.client.post(
            "/api/v1/jobs",
            json={
                "userId": unique_user(),
                "prompt": "a lighthouse at night",
                "metadata": TINY,
                "webhookUrl": receiver.url,
                "webhookEvents": ["job.completed"],
            },
        )
        job = created.json()
        [dead] = await wait_states(module_gateway, job["id"], ["dead"])
        receiver.failing = False

        states = await asyncio.to_thread(redeliver_in_console, base, dead["id"])

        await wait_states(module_gateway, job["id"], ["delivered"])
    assert states == ("dead", "pending")
    assert [r.event_id for r in receiver.accepted] == [dead["eventId"]]


def operators_pages(base: str, user: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium() as session:
        go(session, base, "/ui/queues", "#queues tbody tr")
        # Read in one step: the page redraws its tables every few seconds.
        seen["queues"] = session.execute_script(
            "return [...document.querySelectorAll('#queues tbody tr')].map(r => r.cells[0].textContent)"
        )
        screenshot(session, "queues")
        go(session, base, "/ui/providers", "#providers tbody tr")
        row = session.find_element(By.CSS_SELECTOR, "#providers tbody tr")
        seen["circuit"] = text(session, "#providers tbody tr td:nth-child(3)")
        row.find_element(By.TAG_NAME, "button").click()
        seen["tested"] = wait_for(session, lambda s: "ok in" in row.text or "failed" in row.text, what="a test")
        seen["tested"] = row.text
        screenshot(session, "providers")
        go(session, base, "/ui/keys", "#key-user")
        session.find_element(By.ID, "key-user").send_keys(user)
        session.find_element(By.ID, "key-name").send_keys("console test")
        session.find_element(By.CSS_SELECTOR, "form.inline button").click()
        key = wait_for(session, lambda s: text(s, "#issued-key output"), what="the new key")
        assert session.execute_script(UNLABELLED) == []
        screenshot(session, "keys")
        # The user's key, given in the header: it sees its own jobs only, and no admin page.
        field = session.find_element(By.ID, "api-key")
        field.send_keys(key)
        field.send_keys(Keys.ENTER)
        seen["stored"] = session.execute_script("return sessionStorage.getItem('videogen.apiKey')") == key
        wait_for(session, lambda s: "admin key" in text(s, "main .message.error"), what="403 on the keys page")
        seen["keys_as_user"] = text(session, "main .message.error")
        session.find_element(By.LINK_TEXT, "Jobs").click()
        wait_for(session, lambda s: "job" in text(s, "#jobs caption"), what="the user's jobs")
        seen["jobs_as_user"] = text(session, "#jobs caption")
        # On a fresh page, the skip link is the keyboard's first stop.
        go(session, base, "/ui/", "#jobs tbody")
        ActionChains(session).send_keys(Keys.TAB).perform()
        seen["first_tab"] = session.execute_script("return document.activeElement.textContent")
    with chromium(PHONE) as phone:
        go(phone, base, "/ui/", "#jobs tbody")
        seen["phone_overflow"] = phone.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        screenshot(phone, "jobs-phone")
    return seen


async def test_the_operators_pages_and_the_key_rules_in_the_console(module_gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{module_gateway.edge_port}"
    user = unique_user()

    seen = await asyncio.to_thread(operators_pages, base, user)

    assert seen["queues"] == ["high_priority", "default", "low_priority"]
    assert "ok in" in seen["tested"], seen["tested"]
    assert seen["circuit"] == "closed"
    assert seen["stored"]
    assert "403" not in seen["keys_as_user"] and "admin key" in seen["keys_as_user"]
    assert seen["jobs_as_user"] == "0 jobs"
    assert seen["first_tab"] == "Skip to the content"
    assert seen["phone_overflow"] <= 0


async def test_the_console_is_served_with_a_strict_policy_and_versioned_assets(module_gateway: Gateway) -> None:
    client = module_gateway.client

    page = await client.get("/ui/jobs/anything")
    redirect = await client.get("/ui")
    version = page.text.split("/ui/assets/")[1].split("/")[0]
    current = await client.get(f"/ui/assets/{version}/console.js")
    stale = await client.get("/ui/assets/000000000000/console.js")
    unknown = await client.get(f"/ui/assets/{version}/secrets.py")

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert (redirect.status_code, redirect.headers["location"]) == (308, "/ui/")
    assert current.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert current.headers["content-type"].startswith("text/javascript")
    assert (stale.status_code, stale.headers["cache-control"]) == (200, "no-cache")
    assert unknown.status_code == 404
