"""mvactors.metrics: Runtime.stats() scraped as Prometheus text."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import mvactors
from mvactors.metrics import RuntimeCollector

pytestmark = pytest.mark.anyio

COUNTER = "let n = 0;\nvmExport(1, () => { n++; return n; });\n"


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_a_scrape_reads_the_runtime_stats_of_that_moment(compile_js):
    registry = CollectorRegistry()
    async with mvactors.Runtime(clock="virtual") as rt:
        RuntimeCollector(rt, labels={"runtime": "test"}).register(registry)
        before = scrape(registry)
        label = (("runtime", "test"),)
        assert before[("mvactors_turns_total", label)] == 0
        assert before[("mvactors_actors", label)] == 0
        actors = [await rt.spawn(compile_js(COUNTER)) for _ in range(3)]
        for actor in actors:
            await actor.call(1)
        await actors[0].call(1)
        after = scrape(registry)
        assert after[("mvactors_turns_total", label)] == rt.stats()["turns"] == 4
        assert after[("mvactors_actors", label)] == 3
        assert after[("mvactors_resident", label)] == 3
        p50 = after[("mvactors_turn_latency_seconds", (("quantile", "0.5"), ("runtime", "test")))]
        assert 0 < p50 == pytest.approx(rt.stats()["turn_latency_p50_us"] / 1e6, rel=0.5)


async def test_stats_the_collector_does_not_know_are_gauges_under_their_name(monkeypatch):
    registry = CollectorRegistry()
    async with mvactors.Runtime(clock="virtual") as rt:
        original = rt.stats
        monkeypatch.setattr(rt, "stats", lambda: {**original(), "brand_new_count": 7, "label": "text"})
        RuntimeCollector(rt).register(registry)
        samples = scrape(registry)
    assert samples[("mvactors_brand_new_count", ())] == 7
    assert not any(name == "mvactors_label" for name, _ in samples)
    assert not any(name.startswith("mvactors_turns_per_second") for name, _ in samples)


def test_without_prometheus_client_the_import_error_names_the_extra():
    import subprocess
    import sys

    code = "import sys; sys.modules['prometheus_client'] = None; import mvactors.metrics"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert 'pip install "mvactors[metrics]"' in proc.stderr
