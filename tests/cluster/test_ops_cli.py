"""``mvactors actors ...`` and ``mvactors workers`` (issue 16's CLI), run in this process against a real Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import mvactors
from mvactors.cli import main


@pytest.fixture
def spawned(redis_url: str, snapshot: Callable[[str], bytes]) -> list[str]:
    async def spawn() -> list[str]:
        async with mvactors.connect(redis_url) as client:
            ids = [await client.spawn(snapshot("ops_actor"), imports="counter", actor_id=f"a{n}") for n in range(3)]
            await client.send("a1", 1, "x", message_id="m1")
            await client.pause("a2")
            return ids

    return anyio.run(spawn)


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_list_filters_and_prints_one_json_object_per_line(redis_url: str, spawned: list[str],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["actors", "list", "--redis", redis_url, "--json"]) == 0
    rows = _lines(capsys.readouterr().out)
    assert sorted(r["id"] for r in rows) == spawned  # type: ignore[type-var]
    assert main(["actors", "list", "--redis", redis_url, "--state", "paused", "--json"]) == 0
    assert [r["id"] for r in _lines(capsys.readouterr().out)] == ["a2"]
    assert main(["actors", "list", "--redis", redis_url]) == 0
    table = capsys.readouterr().out
    assert "a0" in table and "paused (operator)" in table


def test_list_pages_with_limit_and_after(redis_url: str, spawned: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["actors", "list", "--redis", redis_url, "--json", "--limit", "2"]) == 0
    first = [r["id"] for r in _lines(capsys.readouterr().out)]
    assert len(first) == 2
    assert main(["actors", "list", "--redis", redis_url, "--json", "--limit", "2", "--after", str(first[-1])]) == 0
    rest = [r["id"] for r in _lines(capsys.readouterr().out)]
    assert sorted(first + rest) == spawned  # type: ignore[type-var]
    with pytest.raises(SystemExit) as exited:
        main(["actors", "list", "--redis", redis_url, "--limit", "0"])
    assert exited.value.code == 2 and "whole number >= 1" in capsys.readouterr().err


def test_redis_defaults_to_the_environment(redis_url: str, spawned: list[str], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MVACTORS_REDIS", redis_url)
    assert main(["actors", "show", "a1", "--json"]) == 0
    [info] = _lines(capsys.readouterr().out)
    assert info["id"] == "a1" and info["mailbox"] == 1 and info["state"] == "idle"
    assert main(["workers", "--json"]) == 0
    assert capsys.readouterr().out == ""


def test_repairs_and_their_errors(redis_url: str, spawned: list[str], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    r = ["--redis", redis_url]
    assert main(["actors", "resume", "a2", *r]) == 0
    assert "resumed" in capsys.readouterr().out
    assert main(["actors", "resume", "a2", *r]) == 2
    assert "is not paused" in capsys.readouterr().err
    assert main(["actors", "retry", "a0", *r]) == 2
    assert "has not failed" in capsys.readouterr().err
    assert main(["actors", "pause", "nobody", *r]) == 2
    assert "mvactors actors list" in capsys.readouterr().err
    assert main(["actors", "cancel", "a1", "m1", *r, "--json"]) == 0
    assert _lines(capsys.readouterr().out) == [{"id": "a1", "message_id": "m1", "cancelled": True}]
    snap = tmp_path / "a0.mvm-bc"
    assert main(["actors", "show", "a0", "--snapshot", str(snap), *r]) == 0
    capsys.readouterr()
    assert main(["info", str(snap)]) == 0
    assert json.loads(capsys.readouterr().out)["exports"] == [1, 2, 5, 7, 8, 10]
    assert main(["actors", "delete", "a0", *r]) == 0
    assert main(["actors", "show", "a0", *r]) == 2


def test_no_redis_is_an_error_saying_what_to_type(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MVACTORS_REDIS", raising=False)
    assert main(["actors", "list"]) == 2
    assert "pass --redis redis://" in capsys.readouterr().err


def test_history_replay_fork_reset_and_upgrade(redis_url: str, compile_js: Callable[[str], bytes], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from .processes import worker
    from .test_history import UP, V1, V2

    r = ["--redis", redis_url]
    (tmp_path / "v2.mvm-bc").write_bytes(compile_js(V2))
    (tmp_path / "up.mvm-bc").write_bytes(compile_js(UP))

    async def run(actor_id: str, export: int, *args: object) -> object:
        async with mvactors.connect(redis_url) as client:
            if actor_id == "":
                return await client.spawn(compile_js(V1), imports="counter", actor_id="h", history=10)
            return await client.call(actor_id, export, *args, timeout=30)

    with worker(redis_url):
        anyio.run(run, "", 0)
        for tag in "abc":
            anyio.run(run, "h", 1, tag)
        assert main(["actors", "history", "h", "--json", *r]) == 0
        assert [row["args"] for row in _lines(capsys.readouterr().out)] == [["a"], ["b"], ["c"]]
        assert main(["actors", "history", "h", *r]) == 0
        assert "3 kept turns" in capsys.readouterr().out
        assert main(["actors", "replay", "h", *r]) == 0
        assert "replayed 3 turns" in capsys.readouterr().out
        assert main(["actors", "replay", "h", "--snapshot", str(tmp_path / "v2.mvm-bc"), *r]) == 1
        assert "diverged at turn 1" in capsys.readouterr().out
        assert main(["actors", "fork", "h", "--turn", "1", "--as", "h1", "--json", *r]) == 0
        assert _lines(capsys.readouterr().out) == [{"id": "h", "turn": 1, "fork": "h1"}]
        assert anyio.run(run, "h1", 3) == 1
        assert main(["actors", "reset", "h", "--turn", "2", *r]) == 0
        assert "reset to its state after turn 2" in capsys.readouterr().out
        assert anyio.run(run, "h", 3) == 2
        assert main(["actors", "upgrade", "h", str(tmp_path / "up.mvm-bc"), "--migrate", "10:11", *r]) == 0
        assert "actor h upgraded" in capsys.readouterr().out
        assert anyio.run(run, "h", 3) == 200
        assert main(["actors", "upgrade", "h", str(tmp_path / "up.mvm-bc"), "--migrate", "10:12", *r]) == 1
        assert "NOT upgraded" in capsys.readouterr().out
        assert main(["actors", "upgrade", "--imports", "counter", str(tmp_path / "up.mvm-bc"), "--json", *r]) == 0
        assert sorted(row["id"] for row in _lines(capsys.readouterr().out)) == ["h", "h1"]
    # Bad input: exit 2, saying what to type.
    assert main(["actors", "fork", "h", "--turn", "99", *r]) == 2
    assert "are kept" in capsys.readouterr().err
    assert main(["actors", "upgrade", "h", str(tmp_path / "up.mvm-bc"), "--migrate", "x", *r]) == 2
    assert "OUT:IN" in capsys.readouterr().err
    assert main(["actors", "upgrade", str(tmp_path / "up.mvm-bc"), *r]) == 2
    assert "name the actors" in capsys.readouterr().err
    assert main(["actors", "replay", "h", "--snapshot", str(tmp_path / "none"), *r]) == 2
    assert "no snapshot file" in capsys.readouterr().err
