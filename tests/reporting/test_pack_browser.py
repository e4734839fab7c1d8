"""The panel pack in a real browser: Debian's chromium driven by Playwright (no browser download).

Skipped with a reason when /usr/bin/chromium is missing on a developer's machine; in CI
(CI=true) a missing browser is a failure, because `.ci/run` installs it."""

from __future__ import annotations

import os
from pathlib import Path

import packkit
import polars as pl
import pytest
from playwright import sync_api as playwright  # a locked dev dependency: never skipped

CHROMIUM = os.environ.get("IOM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("IOM_TEST_ARTIFACTS", Path(__file__).parents[1] / "artifacts"))

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI=true but no chromium at {CHROMIUM}: .ci/run must install it (apt-get install chromium)")
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium to run the browser tests)",
                allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return packkit.latest_output(packkit.build(tmp_path_factory.mktemp("browser")))


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture
def page(browser, out):
    """The pack opened from file://, recording console errors and every request made."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.errors, page.requests = [], []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    pack_url = (out / "pack.html").as_uri()

    def route(r):
        page.requests.append(r.request.url)
        if r.request.url.split("#")[0] == pack_url:
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)
    page.goto(pack_url)
    yield page
    context.close()


def proposed(out: Path) -> pl.DataFrame:
    return pl.read_csv(out / "cohort.csv")


def test_the_pack_loads_with_no_console_error_and_no_request_but_itself(page, out):
    page.wait_for_load_state("load")
    assert page.errors == []
    assert [u.split("#")[0] for u in page.requests] == [(out / "pack.html").as_uri()]
    assert page.evaluate("window.__pwned") is None


def test_one_row_per_proposed_member_and_a_click_opens_that_card(page, out):
    members = proposed(out)
    rows = page.locator("#ranked-table tbody tr")
    assert rows.count() == members.height
    assert page.locator(".card:visible").count() == 0
    third = rows.nth(2)
    key = third.get_attribute("data-key")
    assert key == members["person_key"][2]
    third.click()
    card = page.locator(f"#card-{key}")
    assert card.is_visible()
    assert page.locator(".card:visible").count() == 1
    assert "component by component" in card.inner_text()
    assert card.locator("svg.timeline").count() in (0, 1)


def test_keyboard_enter_on_the_name_opens_the_card(page, out):
    first = page.locator("#ranked-table tbody tr").first
    key = first.get_attribute("data-key")
    first.locator("a").focus()
    page.keyboard.press("Enter")
    assert page.locator(f"#card-{key}").is_visible()


def test_filtering_by_area_shows_only_that_area(page, out):
    members = proposed(out)
    area = members["area"].drop_nulls().mode().sort()[0]
    page.select_option("#f-area", area)
    visible = page.locator("#ranked-table tbody tr:visible")
    assert visible.count() == members.filter(pl.col("area") == area).height
    assert set(visible.evaluate_all("rows => rows.map(r => r.dataset.area)")) == {area}
    page.select_option("#f-area", "")
    assert page.locator("#ranked-table tbody tr:visible").count() == members.height


def test_search_finds_a_person_by_an_identifier(page, out):
    members = proposed(out).filter(pl.col("crn").is_not_null())
    crn = members["crn"][0]
    page.fill("#f-search", crn.lower())
    visible = page.locator("#ranked-table tbody tr:visible")
    assert visible.count() == 1
    assert visible.first.get_attribute("data-key") == members["person_key"][0]


def test_sorting_by_score_puts_the_highest_first_then_reverses(page, out):
    button = page.locator("#ranked-table thead button", has_text="score")
    button.click()  # rank is sorted ascending; the first click on score sorts ascending
    scores = page.locator("#ranked-table tbody tr td:nth-child(8)").all_inner_texts()
    assert [int(s) for s in scores] == sorted(int(s) for s in scores)
    button.click()
    scores = page.locator("#ranked-table tbody tr td:nth-child(8)").all_inner_texts()
    assert [int(s) for s in scores] == sorted((int(s) for s in scores), reverse=True)


def hostile_names_proposed(out: Path) -> set[str]:
    import duckdb

    con = duckdb.connect(str(out.parents[1] / "warehouse.duckdb"), read_only=True)
    try:
        surnames = {r[0] for r in con.execute(
            "SELECT surname FROM people WHERE person_key IN (SELECT unnest(?::VARCHAR[]))",
            [proposed(out)["person_key"].to_list()]).fetchall()}
    finally:
        con.close()
    return surnames & set(packkit.HOSTILE)


def test_hostile_names_show_as_text(page, out):
    hostile = hostile_names_proposed(out)
    assert {"<script>window.__pwned=1</script>", '"><img src=x onerror="window.__pwned=1">'} <= hostile
    page.click("#show-all")
    text = page.locator("#cards").inner_text()
    for name in hostile:
        assert name in text
    assert page.locator("#cards img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


def test_a_screenshot_and_a_print_preview_are_written_as_artifacts(page, out):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#ranked-table tbody tr").first.click()
    shot = ARTIFACTS / "pack.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    pdf = ARTIFACTS / "pack-a4.pdf"
    page.pdf(path=str(pdf), format="A4")
    assert pdf.read_bytes()[:4] == b"%PDF"
