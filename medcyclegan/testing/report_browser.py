"""Open a Snakemake 9 HTML report in headless Chromium, click through it like a user, and return what it rendered.

Why: ``snakemake --report`` writes one self-contained page whose menu, tables and images are all drawn by
JavaScript (React) from data embedded in the file. A report that is valid HTML and holds every PNG can still show
nothing: a script error blanks the page, a result lands in the wrong category, a "PNG" that is not one shows as a
broken image. Only a real browser proves that a user sees the categories and that the images load.

How the report app is navigated (Snakemake 9, ``snakemake/report/html_reporter/template/components``): the left
``<nav>`` panel has breadcrumbs (``nav ol > li``; the first is a home link) over a panel ``nav div.p-3``. On the home
menu, the entries after the "Results" heading are the categories (a one-category report shows a single "Results"
entry). Clicking a category shows either its subcategory entries or, when it has a single subcategory, the results
table. Each table row has an "eye" link: for PNG/SVG/JPEG it shows the image as ``<img>`` in the content area
(``#app > div > div.grow``), for HTML/PDF as an ``<iframe>``; other types (CSV, JSON...) get a plain download link,
which is not clicked. When a second label of the results takes two values, a toggle (``fieldset``) above the table
switches between them; every value is visited. An image counts as loaded when ``img.decode()`` resolves and the image
has a natural width. Needs ``chromium`` and ``chromedriver`` (Debian: ``apt-get install chromium chromium-driver``)
and the ``selenium`` package; see :func:`browser_available`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROME_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1200")
PANEL = "nav div.p-3"  # the left panel under the breadcrumbs: menu entries or a results table
CONTENT = "#app > div > div.grow"  # the area right of the panel, where a selected result is shown

# the panel as the user sees it: breadcrumb texts (home icon and search box left out), entries ("a" link / "h" heading)
_PANEL_STATE_JS = f"""
const panel = document.querySelector('{PANEL}');
const crumbs = [...document.querySelectorAll('nav ol > li')].filter(li => !li.querySelector('input'))
    .map(li => li.textContent.trim()).filter(text => text);
const items = panel ? [...panel.querySelectorAll(':scope > ul > li')]
    .map(li => [li.querySelector('a') ? 'a' : 'h', li.textContent.trim()]) : [];
return {{crumbs: crumbs, items: items, table: !!(panel && panel.querySelector('table'))}};
"""
_DECODE_JS = f"""
const done = arguments[arguments.length - 1];
const img = document.querySelector('{CONTENT} img');
if (!img) {{ done(null); return; }}
const size = () => [img.complete && img.naturalWidth > 0, img.naturalWidth, img.naturalHeight];
img.decode().then(() => done(size()), () => done([false, img.naturalWidth, img.naturalHeight]));
"""
_CONTENT_KIND_JS = f"""
const content = document.querySelector('{CONTENT}');
if (!content) return null;
return content.querySelector('img') ? 'image' : (content.querySelector('iframe') ? 'iframe' : null);
"""
# the app highlights the row whose result the content area shows
_ROW_SELECTED_JS = f"""
const row = document.querySelectorAll('{PANEL} table tbody tr')[arguments[0]];
return !!row && row.querySelector('td').className.includes('bg-slate-700');
"""
_SELECTED_PATH_JS = "return typeof app === 'undefined' ? null : (app.state.resultPath || null);"
_PATH_FOR_URI_JS = """
if (typeof app === 'undefined' || typeof categories === 'undefined') return null;
const paths = (categories[app.state.category] || {})[app.state.subcategory] || [];
return paths.find(path => results[path].data_uri === arguments[0]) || null;
"""
_ALL_PATHS_JS = """
if (typeof categories === 'undefined') return [];
return Object.values(categories).flatMap(subs => Object.values(subs).flat());
"""


class ReportRenderError(RuntimeError):
    """The browser could not be started, or the report did not render what navigation waited for."""


@dataclass(frozen=True)
class RenderedResult:
    """One result row as the report showed it."""

    name: str  #: the file name (from the result's path), or the row's labels when the path is unknown
    labels: tuple[str, ...]  #: the row's cells, then the toggle value that showed it, if any
    kind: str  #: "image" (shown as <img>), "iframe" (HTML/PDF) or "download" (a link only, e.g. CSV)
    image_loaded: bool | None  #: for images, whether the browser decoded it with a non-zero size; else None
    path: str | None = None  #: the result's path in the report's data
    natural_size: tuple[int, int] | None = None  #: (width, height) of a loaded image


@dataclass
class ReportView:
    """What :func:`render_report` found."""

    categories: dict[str, dict[str, list[RenderedResult]]]  #: category -> subcategory ("" if none shown) -> rows
    console_errors: list[str]  #: SEVERE browser console entries (script errors, console.error, failed loads)
    dom: str  #: the page's rendered DOM at the end of the navigation
    missing: list[str]  #: result paths in the report's embedded data that navigation never showed
    seconds: float  #: wall time, browser start included

    def results(self) -> list[RenderedResult]:
        return [r for subs in self.categories.values() for rows in subs.values() for r in rows]

    def images_not_loaded(self) -> list[RenderedResult]:
        return [r for r in self.results() if r.kind == "image" and not r.image_loaded]


def _browser_binary() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def browser_available() -> str | None:
    """None when selenium, a Chromium binary and chromedriver are all found, else why not (for a pytest skip)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install selenium"
    if _browser_binary() is None:
        return f"none of {', '.join(BROWSERS)} found on PATH: apt-get install chromium chromium-driver"
    if shutil.which("chromedriver") is None:
        return "chromedriver not found on PATH: apt-get install chromium chromium-driver"
    return None


@contextmanager
def _chromium(timeout_s: float) -> Iterator[Any]:
    """A headless Chromium driver that works as root in a container; always quit. Explicit paths: no
    selenium-manager, so nothing is downloaded."""
    reason = browser_available()
    if reason:
        raise ReportRenderError(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.binary_location = _browser_binary()
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.set_page_load_timeout(timeout_s)
        driver.set_script_timeout(timeout_s)
        yield driver
    finally:
        driver.quit()


class _Navigator:
    """Clicks through the report's panel; every wait shares one deadline."""

    def __init__(self, driver: Any, deadline: float) -> None:
        self.driver = driver
        self.deadline = deadline
        self.seen: set[str] = set()

    def wait(self, condition: Callable[[Any], Any], what: str) -> Any:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, max(0.5, self.deadline - time.monotonic()), 0.05).until(condition)
        except TimeoutException:
            errors = "; ".join(_console_errors(self.driver)) or "none"
            raise ReportRenderError(f"timed out waiting for {what} (console errors: {errors})") from None

    def panel(self) -> dict:
        return self.driver.execute_script(_PANEL_STATE_JS)

    def home(self) -> dict:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, "nav ol > li:first-child > a").click()
        return self.wait(lambda d: (s := self.panel()) and not s["crumbs"] and s["items"] and s, "the home menu")

    def click_entry(self, label: str) -> None:
        from selenium.webdriver.common.by import By

        for link in self.driver.find_elements(By.CSS_SELECTOR, f"{PANEL} > ul > li > a"):
            if link.get_attribute("textContent").strip() == label:
                link.click()
                return
        raise ReportRenderError(f"no menu entry {label!r} in the report's panel")

    def open(self, *labels: str) -> dict:
        """From the home menu, click the entries `labels` in turn; return the panel state after the last."""
        state = self.home()
        for label in labels:
            depth = len(state["crumbs"])  # each click adds a breadcrumb
            self.click_entry(label)
            state = self.wait(
                lambda d, depth=depth: len((s := self.panel())["crumbs"]) > depth and (s["table"] or s["items"]) and s,
                f"the view of {label!r}",
            )
        return state

    def category(self, label: str) -> tuple[str, dict[str, list[RenderedResult]]]:
        """Open the category behind menu entry `label`: its name (last breadcrumb) and results per subcategory."""
        state = self.open(label)
        name = state["crumbs"][-1]
        if state["table"]:
            return name, {"": self.table()}
        subs = {}
        for sub in [text for kind, text in state["items"] if kind == "a"]:
            state = self.open(label, sub)
            if not state["table"]:
                raise ReportRenderError(f"subcategory {name!r} / {sub!r} shows no results table")
            subs[sub] = self.table()
        return name, subs

    def table(self) -> list[RenderedResult]:
        """Every row of the shown results table, once per toggle value when there is a toggle."""
        from selenium.webdriver.common.by import By

        toggles = self.driver.find_elements(By.CSS_SELECTOR, f"{PANEL} fieldset label")
        values = [toggle.get_attribute("textContent").strip() for toggle in toggles] or [None]
        rows = []
        for index, value in enumerate(values):
            if value is not None:
                toggles[index].click()
                radio = toggles[index].find_element(By.TAG_NAME, "input")
                self.wait(lambda d, radio=radio: radio.get_property("checked"), f"toggle {value!r}")
            n_rows = len(self.driver.find_elements(By.CSS_SELECTOR, f"{PANEL} table tbody tr"))
            rows.extend(self.row(i, value) for i in range(n_rows))
        return rows

    def row(self, i: int, toggle: str | None) -> RenderedResult:
        """Show row `i` of the results table (click its eye link) and check what the content area displays."""
        from selenium.webdriver.common.by import By

        tr = self.driver.find_elements(By.CSS_SELECTOR, f"{PANEL} table tbody tr")[i]
        cells = tr.find_elements(By.TAG_NAME, "td")
        labels = tuple(c.get_attribute("textContent").strip() for c in cells[:-1]) + ((toggle,) if toggle else ())
        eye = cells[-1].find_element(By.TAG_NAME, "a")
        href = eye.get_dom_attribute("href") or ""
        if href != "#":  # a type the report cannot show: a download link, not clicked
            path = self.driver.execute_script(_PATH_FOR_URI_JS, href)
            return self._result(labels, "download", None, path, eye.get_dom_attribute("download"))
        eye.click()
        self.wait(lambda d: d.execute_script(_ROW_SELECTED_JS, i), f"row {labels} to be selected")
        kind = self.wait(lambda d: d.execute_script(_CONTENT_KIND_JS), f"the content of row {labels}")
        path = self.driver.execute_script(_SELECTED_PATH_JS)
        if kind != "image":
            return self._result(labels, kind, None, path)
        loaded, width, height = self.driver.execute_async_script(_DECODE_JS) or (False, 0, 0)
        return self._result(labels, kind, bool(loaded), path, size=(width, height) if loaded else None)

    def _result(self, labels, kind, loaded, path, name=None, size=None) -> RenderedResult:
        if path:
            self.seen.add(path)
        name = name or (Path(path).name if path else " / ".join(labels))
        return RenderedResult(name, labels, kind, loaded, path, size)


def _console_errors(driver: Any) -> list[str]:
    try:
        return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
    except Exception:  # a driver without the (non-W3C) log endpoint
        return []


def _category_labels(items: list[list[str]]) -> list[str]:
    """Menu entries after the "Results" heading; a one-category report has no headings and one "Results" entry."""
    labels, in_results = [], False
    for kind, text in items:
        if kind == "h":
            in_results = text.lower() == "results"
        elif in_results:
            labels.append(text)
    if not labels and not any(kind == "h" for kind, _ in items):
        labels = [text for kind, text in items if text == "Results"]
    return labels


def render_report(html: Path, timeout_s: float = 60) -> ReportView:
    """Open the report `html` in headless Chromium, visit every category, subcategory and result row like a user
    and return what was shown. Raises :class:`ReportRenderError` when no browser is available (check
    :func:`browser_available` first to skip instead) or when the report does not render within `timeout_s`."""
    html = Path(html).resolve()
    if not html.is_file():
        raise FileNotFoundError(html)
    start = time.monotonic()
    with _chromium(timeout_s) as driver:
        nav = _Navigator(driver, start + timeout_s)
        driver.get(html.as_uri())
        menu = nav.wait(lambda d: (s := nav.panel())["items"] and s, "the report's menu to render")
        categories = dict(nav.category(label) for label in _category_labels(menu["items"]))
        missing = sorted(set(driver.execute_script(_ALL_PATHS_JS)) - nav.seen)
        dom = driver.execute_script("return document.documentElement.outerHTML;")
        errors = _console_errors(driver)
    return ReportView(categories, errors, dom, missing, time.monotonic() - start)
