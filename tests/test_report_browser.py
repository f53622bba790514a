"""report.html in a real headless browser (Debian's chromium; .ci/run installs it when missing).

The page is loaded at a 1280 x 900 window with a probe script injected first
in ``<head>``: it records script errors and ``console.error`` calls, and after
the load event writes what it measured (every image's decoded size, every
table's rendered width) into the DOM, which ``--dump-dom`` prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.results.report import write_report

BASELINE = Path(__file__).resolve().parents[1] / "results" / "baseline" / "notebook"
WIDTH = 1280

_PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(
  e.message ? String(e.message) : "failed to load " + (e.target && (e.target.src || e.target.href))
), true);
const __consoleError = console.error;
console.error = function (...args) { window.__errors.push(args.join(" ")); __consoleError.apply(console, args); };
window.addEventListener("load", () => {
  const images = [...document.images].map(i => [i.complete ? i.naturalWidth : 0, i.naturalHeight]);
  const tables = [...document.querySelectorAll("table")].map(t => Math.ceil(t.getBoundingClientRect().width));
  const out = document.createElement("pre");
  out.id = "rsbench-probe";
  out.textContent = JSON.stringify({images, tables, viewport: window.innerWidth,
                                    page: document.documentElement.scrollWidth, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str | None:
    for name in (
        os.environ.get("RSBENCH_CHROMIUM"),
        "chromium",
        "chromium-browser",
        "google-chrome",
    ):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def probe(page: Path, tmp_path: Path) -> dict:
    """Load ``page`` in headless chromium and return what the probe measured."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium)")
    html = page.read_text(encoding="utf-8")
    probed = tmp_path / f"probe-{page.name}"
    probed.write_text(html.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # CI containers run as root
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={WIDTH},900",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probed.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r'<pre id="rsbench-probe">([^<]*)</pre>', done.stdout)
    assert match, f"the probe did not run (exit {done.returncode}): {done.stderr[-2000:]}"
    result = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    # Chromium also logs console errors of the page to stderr.
    result["errors"] += [
        line for line in done.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line
    ]
    return result


def test_report_html_renders_cleanly_in_a_browser(tmp_path):
    folder = tmp_path / "notebook"
    shutil.copytree(BASELINE, folder)
    paths = write_report(folder, n_boot=200)
    figures = [p for p in paths if p.suffix == ".png"]
    result = probe(folder / "report.html", tmp_path)
    assert result["viewport"] == WIDTH
    assert len(result["images"]) == len(figures) >= 3
    assert all(w > 0 and h > 0 for w, h in result["images"]), result["images"]
    assert result["tables"] and max(result["tables"]) <= WIDTH, result["tables"]
    assert result["page"] <= WIDTH  # nothing makes the page scroll sideways
    assert result["errors"] == []


def test_the_probe_sees_broken_images_wide_tables_and_errors(tmp_path):
    """The checks above can fail: a page with each fault is reported as faulty."""
    bad = tmp_path / "bad.html"
    cells = "".join(f"<td>{'x' * 40}{i}</td>" for i in range(40))
    bad.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        '<img src="data:image/png;base64,bm90IGEgcG5n">'
        f"<table style='white-space:nowrap'><tr>{cells}</tr></table>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    result = probe(bad, tmp_path)
    assert result["images"] == [[0, 0]]
    assert max(result["tables"]) > WIDTH
    assert any("boom" in e for e in result["errors"])
    assert any("undefinedFunction" in e for e in result["errors"])
