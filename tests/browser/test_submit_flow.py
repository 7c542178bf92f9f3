"""The submit flow in a real browser: log in, upload a zip with a progress bar,
watch a real Celery worker score it, and find the entry and its charts on the
leaderboard.

Drives Debian's chromium (`/usr/bin/chromium`) through Playwright; Playwright never
downloads a browser here. Set `REFLADE_SCREENSHOT_DIR` to keep the screenshot of
the benchmark page.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Scoring 8 small samples with the test config on two busy CPU cores takes well under this.
SCORING_TIMEOUT_MS = 300_000

# Records every text of the upload progress label in sessionStorage, which survives
# the redirect to the submission page.
RECORD_PROGRESS = """
() => {
  sessionStorage.setItem("progress", "[]");
  const label = document.getElementById("upload-progress-text");
  const bar = document.getElementById("upload-progress");
  new MutationObserver(() => {
    const seen = JSON.parse(sessionStorage.getItem("progress"));
    seen.push({text: label.textContent, value: Number(bar.value)});
    sessionStorage.setItem("progress", JSON.stringify(seen));
  }).observe(label, {childList: true, characterData: true, subtree: true});
}
"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture
def browser_page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # The Playwright sync API runs an event loop in this thread; the test still
    # calls the ORM only between browser steps, never concurrently.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        # A zone other than the server's UTC shows that times are converted for the viewer.
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US",
                                timezone_id="Asia/Tokyo")
        yield page
        browser.close()


def test_upload_scored_and_charted(live_server, celery_worker_process, browser_page, demo_split, user,
                                   cutout_zip, tmp_path):
    page = browser_page
    base = live_server.url

    # 1. Log in; the login page sends us on to the submit page.
    page.goto(f"{base}/accounts/login/?next=/submit/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password-1")
    page.click("form.stacked button[type=submit]")
    page.wait_for_url(f"{base}/submit/")
    assert "0 of 5 used in the last 24 hours" in page.inner_text(".panel")
    screenshots = Path(os.environ.get("REFLADE_SCREENSHOT_DIR", tmp_path))
    screenshots.mkdir(parents=True, exist_ok=True)

    # 2. Fill the form and upload; the progress bar reports the upload.
    page.select_option("#id_split", str(demo_split.pk))
    page.fill("#id_method_name", "browser-entry")
    page.set_input_files("#id_file", str(cutout_zip))
    page.evaluate(RECORD_PROGRESS)
    page.screenshot(path=str(screenshots / "submit_page.png"), full_page=True)
    page.click("#submit-button")
    page.wait_for_url(f"{base}/submissions/*/")
    progress = page.evaluate("JSON.parse(sessionStorage.getItem('progress'))")
    assert any(entry["text"].startswith("Uploading: 100%") for entry in progress), progress
    assert any(entry["value"] == 100 for entry in progress), progress

    submission_url = page.url
    assert page.inner_text("#evaluation [data-field=state]") in {"Uploaded", "Validating", "Queued", "Scoring",
                                                                 "Aggregating", "Finished"}

    # 3. My submissions follows the worker by polling, without reloading the page.
    page.goto(f"{base}/submissions/")
    page.evaluate("window.loadedOnce = true")
    page.wait_for_selector("tr[data-submission] .state-finished", timeout=SCORING_TIMEOUT_MS)
    assert page.evaluate("window.loadedOnce") is True
    assert page.inner_text("tr[data-submission] [data-field=progress-text]") == "100%"
    assert page.inner_text("tr[data-submission] [data-field=hpa]") != "–"
    # The server writes "YYYY-MM-DD HH:MM UTC"; the page rewrites it in the browser's time zone.
    assert page.inner_text("tr[data-submission] time").endswith("GMT+9")
    page.screenshot(path=str(screenshots / "my_submissions_page.png"), full_page=True)

    # 4. The submission page shows every metric of the finished evaluation.
    page.goto(submission_url)
    page.wait_for_selector("#metrics tr[data-key=hpa]")
    assert page.inner_text("#evaluation [data-field=state]") == "Finished"
    page.screenshot(path=str(screenshots / "submission_page.png"), full_page=True)

    # 5. The entry is on the leaderboard, and plotly drew its charts.
    page.goto(f"{base}/benchmarks/demo/val/")
    assert page.locator("#leaderboard tbody tr").count() == 1
    assert "browser-entry" in page.inner_text("#leaderboard tbody")
    for chart in ("chart-hpa-prompt", "chart-pass-rate", "chart-lpips-dir"):
        page.wait_for_selector(f"#{chart} svg.main-svg", timeout=20_000)

    page.screenshot(path=str(screenshots / "benchmark_page.png"), full_page=True)


def test_leaderboard_sorts_in_browser(live_server, browser_page, demo_split, user, other_user, staff_user,
                                      cutout_zip, tmp_path, monkeypatch):
    from tests.leaderboard.leaderboard_entries import finish_entry

    # The entries are finished by hand, so no validation task may reach a worker.
    monkeypatch.setattr("leaderboard.services.submissions.enqueue_validation", lambda evaluation_id: None)
    for owner, name, quality in ((staff_user, "Strong", 0.8), (user, "Middle", 0.5), (other_user, "Weak", 0.2)):
        finish_entry(user=owner, split=demo_split, zip_path=cutout_zip, method_name=name, quality=quality,
                     tmp_path=tmp_path)
    page = browser_page
    page.goto(f"{live_server.url}/benchmarks/demo/val/")

    def methods() -> list[str]:
        return page.locator("#leaderboard tbody tr td:nth-child(2) a").all_inner_texts()

    def ranks() -> list[str]:
        return page.locator("#leaderboard tbody td.rank").all_inner_texts()

    assert methods() == ["Strong", "Middle", "Weak"]
    # HPA is sorted best first already, so a click reverses it.
    page.click('#leaderboard th[data-key="hpa"] a')
    assert methods() == ["Weak", "Middle", "Strong"]
    assert ranks() == ["1", "2", "3"]
    assert page.url.endswith("?ordering=hpa")
    # FID is lower-is-better: the first click lists the lowest first.
    page.click('#leaderboard th[data-key="fid_foreground"] a')
    assert methods() == ["Strong", "Middle", "Weak"]
    assert page.url.endswith("?ordering=fid_foreground")
    assert page.get_attribute('#leaderboard th[data-key="fid_foreground"]', "class").endswith("sorted-asc")
    # Dates are rewritten in the browser's time zone; the server wrote YYYY-MM-DD.
    first_date = page.inner_text("#leaderboard tbody time")
    assert not re.fullmatch(r"\d{4}-\d{2}-\d{2}", first_date)
