"""The pytest plugin (entry point pytest11), used from a sample project in a temp dir."""

from __future__ import annotations

import sys

pytest_plugins = ["pytester"]

SAMPLE_TESTS = '''
import pytest
import mvactors

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param

def test_vm_from_a_script_next_to_the_test(mvactors_vm):
    vm = mvactors_vm("counter.js")
    assert vm.exports[1]() == 1
    assert vm.exports[1]() == 2

def test_compile_source_text(mvactors_compile, mvactors_vm):
    vm = mvactors_vm(mvactors_compile("vmExport(1, (x) => x * 2);"))
    assert vm.exports[1](21) == 42

@pytest.mark.anyio
async def test_runtime_on_virtual_time(mvactors_runtime, mvactors_compile):
    actor = await mvactors_runtime.spawn(mvactors_compile("sleeper.js"), imports={9: mvactors.imports.sleep})
    assert await actor.call(1, 3_600_000) == "woke"   # an hour of guest time, no real waiting
    assert mvactors_runtime.clock.now() >= 3600
'''


def make_sample(pytester):
    pytester.makefile(".js", counter="let n = 0;\nvmExport(1, () => { n++; return n; });\n")
    pytester.makefile(
        ".js",
        sleeper="const sleep = vmImport(9);\nvmExport(1, async (ms) => { await sleep(ms); return 'woke'; });\n",
    )
    pytester.makepyfile(test_sample=SAMPLE_TESTS)


def test_fixtures_work_in_a_project_that_only_installed_mvactors(pytester):
    make_sample(pytester)
    pytester.runpytest_subprocess().assert_outcomes(passed=4)


def test_snapshots_are_cached_across_runs(pytester, tmp_path, monkeypatch):
    make_sample(pytester)
    pytester.runpytest_subprocess().assert_outcomes(passed=4)
    # A second run with a compiler that always fails: only cached snapshots can pass.
    broken = tmp_path / "broken-microvium.cjs"
    broken.write_text("console.error('compiler ran'); process.exit(1);\n", encoding="utf-8")
    monkeypatch.setenv("MVACTORS_MICROVIUM", str(broken))
    pytester.runpytest_subprocess().assert_outcomes(passed=4)
    (pytester.path / "counter.js").write_text("vmExport(1, () => 7);\n", encoding="utf-8")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=3, failed=1)  # changed source is compiled again, not served stale
    result.stdout.fnmatch_lines(["*compiler ran*"])


def test_the_plugin_is_registered_as_a_pytest11_entry_point():
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("mvactors") == "mvactors.testing.pytest_plugin", sys.path
