"""The HTML report is one self-contained page whose charts are well-formed SVG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from engine.bench.client import Sample
from engine.bench.html import render_html
from engine.bench.results import ScenarioResult

from .conftest import bench_run, stalled_result


def test_the_page_needs_nothing_from_outside() -> None:
    page = render_html(bench_run(stalled_result()))
    assert page.startswith("<!doctype html>")
    assert "<script" not in page and "<link" not in page and "src=" not in page
    urls = set(re.findall(r"https?://[^\"' )]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched


def test_each_scenario_has_its_charts_and_tables() -> None:
    page = render_html(bench_run(stalled_result("open", slo={"p99_ms": 100}), stalled_result()))
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 8
    for svg in svgs:
        ET.fromstring(svg)  # well-formed
    titles = re.findall(r'aria-label="([^"]+)"', page)
    assert (
        titles
        == [
            "Latency over time",
            "Throughput over time",
            "Latency distribution",
            "Latency histogram",
        ]
        * 2
    )
    assert 'id="open"' in page and 'id="load"' in page
    assert "MISSED" in page and "p99 SLO 100 ms" in page  # the objective drawn on the chart
    assert "By replica" in page and "By model" in page and "lag p99 ms" in page
    assert "a &lt;note&gt;" in page and "<note>" not in page
    assert "<td>HTTP 503</td><td>4</td>" in page and "busy &lt;b&gt;" in page  # by status


def test_stalls_put_the_latency_axis_on_a_log_scale() -> None:
    page = render_html(bench_run(stalled_result()))
    over_time = re.search(r'<svg[^>]*aria-label="Latency over time".*?</svg>', page, re.S)
    assert over_time is not None
    labels = re.findall(r">([\d,.k]+)</text>", over_time.group(0))
    assert {"10", "100", "1,000"} <= set(labels)


def test_a_probe_with_few_samples_is_a_table_without_charts() -> None:
    samples = [Sample("w/0/m-0", 0.01 * i, 5.0, 200) for i in range(4)]
    page = render_html(bench_run(ScenarioResult("smoke", "sequential", samples, 0, 0.05, 4)))
    assert "<svg" not in page and "4 samples: too few to chart" in page
