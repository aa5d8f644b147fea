"""The `telesession` command line, run as a real process against real files, SQLite and Redis."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import pty
import shlex
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from telesession import FileStorage, SessionEngine, SessionMiddleware, storage_from_url
from telesession.storage.sqlite import SQLiteStorage

from .conftest import Counter, make_bot, text_update
from .redis_server import free_port, shared_redis_server
from .test_concurrency import Done

CLI = [sys.executable, "-m", "telesession"]
KINDS = ["file", "sqlite", "redis"]
QUARANTINED = "quarantine:20261203T101502.123456Z:-5"

FAKE_EDITOR = r"""
import json, os, sys
path, mode = sys.argv[-1], os.environ["FAKE_EDIT"]
record = json.load(open(path))
if mode == "fail":
    sys.exit(3)
if mode == "same":
    sys.exit(0)
if mode == "not-json":
    open(path, "w").write("{oops")
    sys.exit(0)
if mode == "not-a-record":
    record = {"n": 1}
elif mode == "bad-type":
    record["data"]["n"] = "many"
elif mode == "inc":
    record["data"]["n"] += 1
elif mode == "bot-saves":  # the bot saves the session while the editor is open
    from telesession import SessionEngine, storage_from_url
    with storage_from_url(os.environ["FAKE_URL"]) as storage:
        with SessionEngine(initial=dict, storage=storage).edit(os.environ["FAKE_KEY"]) as session:
            session["n"] += 1000
    record["data"]["n"] += 1
json.dump(record, open(path, "w"), indent=4)  # "reformat" only changes the layout
"""

BOT_MODULE = """
from dataclasses import dataclass
from telesession import MemoryStorage, SessionMiddleware

@dataclass
class Counter:
    n: int = 0

sessions = SessionMiddleware(initial=Counter, storage=MemoryStorage(), migrations={1: lambda data: {"n": data.get("count", 0)}})
"""


# -- helpers ----------------------------------------------------------------------------------


def url_for(kind: str, tmp_path: Path, name: str = "store") -> str:
    """A URL of a new, empty storage of ``kind``."""
    if kind == "file":
        return f"file:{tmp_path / name}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / name}.db"
    return f"{shared_redis_server().url}?prefix=cli-{uuid.uuid4().hex}:"


def cli(*args: str, input: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None, wrap: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m telesession ARGS`` (under ``wrap``, a command that runs another); never waits past 60 s."""
    full_env = {**os.environ, "VISUAL": "", "EDITOR": "false", **(env or {})}
    return subprocess.run([*(wrap or []), *CLI, *args], input=input, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60)


def ok(*args: str, **kwargs: Any) -> str:
    """Run a command that must succeed silently on stderr (stderr is no terminal: no bar); its stdout."""
    done = cli(*args, **kwargs)
    assert (done.returncode, done.stderr) == (0, ""), done
    return done.stdout


def fails(*args: str, **kwargs: Any) -> str:
    """Run a command that must fail (exit status 1) with one line on stderr and no traceback; that line."""
    done = cli(*args, **kwargs)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("telesession: ") and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def editor(tmp_path: Path, mode: str, **env: str) -> dict[str, str]:
    script = tmp_path / "fake_editor.py"
    script.write_text(FAKE_EDITOR)
    return {"EDITOR": f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}", "FAKE_EDIT": mode, **env}


def records() -> dict[str, Any]:
    """Records under awkward keys, holding what JSON can: every one must come back identical."""
    now = time.time()
    keys = ["-100123", "42", "user:42", "-100123:42", "-100123:topic:7", "ключ", "emoji 🎉", "tab\there", "new\nline",
            "k" * 300, "\ud800lone", QUARANTINED]  # fmt: skip
    values = [0.1, 1e-300, 1.7976931348623157e308, -0.0, 2**63 - 1, -(2**63), 2**64 - 1, "é\u2028🎉", None, True, [], {}]
    return {
        key: {
            "data": {"n": i, "value": values[i], "nested": {"list": [1, [2, {"three": 3.5}]], "text": f"record {i}"}},
            "schema": i % 3,
            "saved_at": now - i * 1000.25,
            **({"extra": {"kept": [1, "x"]}} if i % 2 else {}),
        }
        for i, key in enumerate(keys)
    }


def fill(url: str, stored: dict[str, Any]) -> None:
    with storage_from_url(url) as storage:
        for key, record in stored.items():
            storage.set(key, record)


def snapshot(url: str) -> dict[str, Any]:
    with storage_from_url(url) as storage:
        return {key: storage.get(key) for key in storage.keys()}


def snapshot_keys(url: str) -> list[str]:
    with storage_from_url(url) as storage:
        return list(storage.keys())


def canonical(stored: dict[str, Any]) -> dict[str, bytes]:
    """Records as JSON bytes: equal only if identical (1 and 1.0, 0.0 and -0.0 differ)."""
    return {key: orjson.dumps(record, option=orjson.OPT_SORT_KEYS) for key, record in stored.items()}


def corrupt(url: str, key: str) -> None:
    """Store bytes that are not JSON under ``key``, as a crash or a hand edit could leave them."""
    with storage_from_url(url) as storage:
        if isinstance(storage, FileStorage):
            storage.file(key).write_bytes(b"{oops")
        elif isinstance(storage, SQLiteStorage):
            with sqlite3.connect(storage.path) as db:
                db.execute("INSERT INTO sessions (key, value) VALUES (?, ?)", (key.encode(), b"{oops"))
        else:
            from telesession.storage.redis import RedisStorage

            assert isinstance(storage, RedisStorage)
            storage.client.set(f"{storage.prefix}data:{key}", b"{oops")  # the documented layout


def session(n: int, **extra: Any) -> dict[str, Any]:
    return {"data": {"n": n}, "schema": 0, "saved_at": time.time(), **extra}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- the commands -----------------------------------------------------------------------------


def test_every_command_has_help_with_an_example() -> None:
    """`--help` of the command and of each subcommand exits 0 and shows an example."""
    assert "telesession ls" in ok("--help")
    for command in ["ls", "show", "edit", "rm", "export", "import", "copy", "gc", "doctor", "stats", "restore"]:
        assert f"example:\n  telesession {command}" in ok(command, "--help").replace("EDITOR=nano ", "")


def test_importing_telesession_imports_neither_the_cli_nor_its_libraries() -> None:
    """A bot pays nothing for the command line."""
    check = "import telesession, sys; print(sorted({'tqdm', 'argparse', 'telesession.cli'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_the_console_script_runs(tmp_path: Path) -> None:
    """The `telesession` entry point installed by setup.py does what `python -m telesession` does."""
    script = Path(sys.executable).with_name("telesession")
    assert script.exists(), "no console script: pip install -e ."
    url = url_for("file", tmp_path)
    fill(url, {"7": session(1), "8": session(2)})
    done = subprocess.run([str(script), "ls", url], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "7\n8\n", "")


def test_ls_lists_keys_sorted_one_a_line(kind: str, tmp_path: Path) -> None:
    """Plain, by glob, long and JSON; a key that is not one printable line is shown as a JSON string."""
    url = url_for(kind, tmp_path)
    stored = records()
    fill(url, stored)
    lines = ok("ls", url).splitlines()
    shown = {key: json.dumps(key) if key in ("tab\there", "new\nline", "\ud800lone") else key for key in stored}
    assert lines == [shown[key] for key in sorted(stored)]
    assert ok("ls", url, "user:*") == "user:42\n"
    assert ok("ls", url, "quarantine:*") == f"{QUARANTINED}\n"
    assert [json.loads(line)["key"] for line in ok("ls", "--json", url).splitlines()] == sorted(stored)
    long = [json.loads(line) for line in ok("ls", "-l", "--json", url).splitlines()]
    assert {row["key"]: (row["size"], row["saved_at"]) for row in long} == {
        key: (len(orjson.dumps(record)), record["saved_at"]) for key, record in stored.items()
    }
    first = ok("ls", "-l", url, "42").split()
    assert first[0] == "42" and int(first[1]) == len(orjson.dumps(stored["42"])) and first[2].endswith("Z")


def test_show_prints_the_record_as_indented_json(kind: str, tmp_path: Path) -> None:
    """The record as stored; a negative chat id needs no `--`, a per-user-in-chat key does."""
    url = url_for(kind, tmp_path)
    stored = records()
    fill(url, stored)
    out = ok("show", url, "-100123")
    assert out.startswith("{\n  ") and canonical({"k": json.loads(out)}) == canonical({"k": stored["-100123"]})
    assert json.loads(ok("show", url, "--", "-100123:42")) == stored["-100123:42"]
    assert json.loads(ok("show", url, "ключ")) == stored["ключ"]


def test_edit_writes_a_valid_edit_and_refuses_a_bad_one(kind: str, tmp_path: Path) -> None:
    """Valid edits are written; not JSON, not a record, not decoding, a failed editor: refused, original kept."""
    url = url_for(kind, tmp_path)
    fill(url, {"42": session(1)})
    (tmp_path / "botmod.py").write_text(BOT_MODULE)

    def stored() -> Any:
        return snapshot(url)["42"]

    before = stored()
    assert cli("edit", url, "42", env=editor(tmp_path, "inc")).returncode == 0
    assert stored()["data"] == {"n": 2} and stored()["saved_at"] == before["saved_at"]
    kept = stored()
    for mode, says in [("not-json", "refused: it is not JSON"), ("not-a-record", "refused: it is not a session record"), ("fail", "exited with status 3")]:
        assert says in fails("edit", url, "42", env=editor(tmp_path, mode))
        assert stored() == kept
    assert "does not fit Counter" in fails("edit", url, "42", "--class", "botmod:Counter", env=editor(tmp_path, "bad-type"), cwd=tmp_path)
    assert stored() == kept
    for mode in ("same", "reformat"):
        done = cli("edit", url, "42", env=editor(tmp_path, mode))
        assert done.returncode == 0 and "nothing written" in done.stderr
        assert canonical({"k": stored()}) == canonical({"k": kept})
    assert cli("edit", url, "42", "--class", "botmod:sessions", env=editor(tmp_path, "inc"), cwd=tmp_path).returncode == 0
    assert stored()["data"] == {"n": 3}


def test_edit_refuses_when_the_bot_saved_meanwhile(kind: str, tmp_path: Path) -> None:
    """The record is read again under the key's hold before writing: a save during the edit wins, and we say so."""
    url = url_for(kind, tmp_path)
    fill(url, {"42": session(1)})
    message = fails("edit", url, "42", env=editor(tmp_path, "bot-saves", FAKE_URL=url, FAKE_KEY="42"))
    assert "changed while it was being edited" in message
    assert snapshot(url)["42"]["data"] == {"n": 1001}


def test_rm_removes_and_asks_before_removing_several(kind: str, tmp_path: Path) -> None:
    """One key goes at once; several only after a yes (or --yes); a missing key is named, the others still go."""
    url = url_for(kind, tmp_path)
    fill(url, {key: session(1) for key in ["1", "2", "3", "4", "5", "-100123"]})
    ok("rm", url, "-100123")
    assert "nothing was removed" in cli("rm", url, "1", "2", input="n\n").stderr
    assert "nothing was removed" in cli("rm", url, "1", "2", input="").stderr
    assert sorted(snapshot(url)) == ["1", "2", "3", "4", "5"]
    assert cli("rm", url, "1", "2", input="y\n").returncode == 0
    ok("rm", "--yes", url, "3", "4")
    message = fails("rm", "--yes", url, "nope", "5")
    assert "'nope'" in message and "1 other removed" in message
    assert snapshot(url) == {}


def test_rm_removes_an_unreadable_record(kind: str, tmp_path: Path) -> None:
    """The usual cure for what doctor finds unreadable."""
    url = url_for(kind, tmp_path)
    corrupt(url, "garbage")
    ok("rm", url, "garbage")
    assert snapshot(url) == {}


@pytest.mark.parametrize("src_kind", KINDS)
@pytest.mark.parametrize("dst_kind", KINDS)
def test_export_import_and_copy_give_identical_records(src_kind: str, dst_kind: str, tmp_path: Path) -> None:
    """Every pair of storage kinds: export | import, and copy, store byte-identical JSON; again, nothing changes."""
    src = url_for(src_kind, tmp_path, "src")
    stored = records()
    fill(src, stored)
    export = tmp_path / "export.jsonl"
    export.write_text(ok("export", src))
    assert export.read_text().count("\n") == len(stored)  # U+2028 inside a line is no line break

    dst = url_for(dst_kind, tmp_path, "dst")
    assert ok("import", dst, str(export)).endswith(f"{len(stored)} new\n")
    assert canonical(snapshot(dst)) == canonical(stored)
    assert ok("import", dst, input=export.read_text()).endswith(f"{len(stored)} unchanged\n")

    copied = url_for(dst_kind, tmp_path, "copied")
    dry = ok("copy", "--dry-run", src, copied).split("\n")
    assert len([line for line in dry if line.startswith("copy ")]) == len(stored)
    assert not (tmp_path / "copied").exists() and not (tmp_path / "copied.db").exists()  # a dry run makes nothing
    assert snapshot(copied) == {}
    assert ok("copy", src, copied).endswith(f"{len(stored)} new\n")
    assert canonical(snapshot(copied)) == canonical(stored)
    assert ok("copy", src, copied).endswith(f"{len(stored)} identical\n")


def test_import_skips_or_overwrites_existing_keys_and_stops_at_a_bad_line(tmp_path: Path) -> None:
    """Existing keys are skipped by default, replaced with --overwrite; a bad line names itself; --dry-run writes nothing."""
    url = url_for("file", tmp_path)
    fill(url, {"a": session(1), "b": session(2)})
    lines = [json.dumps({"key": key, "record": record}) for key, record in [("a", session(10)), ("c", session(3))]]
    lines.insert(1, json.dumps({"key": "b", "record": snapshot(url)["b"]}))
    text = "\n".join(lines) + "\n"
    assert ok("import", "--dry-run", url, input=text) == "would import 3 sessions from stdin: 1 new, 1 unchanged, 1 skipped\n"
    assert sorted(snapshot(url)) == ["a", "b"]
    assert ok("import", url, input=text) == "imported 3 sessions from stdin: 1 new, 1 unchanged, 1 skipped\n"
    assert snapshot(url)["a"]["data"] == {"n": 1}
    assert ok("import", "--overwrite", url, input=text) == "imported 3 sessions from stdin: 1 replaced, 2 unchanged\n"
    assert snapshot(url)["a"]["data"] == {"n": 10}

    bad = text + json.dumps({"key": "d", "record": {"n": 4}}) + "\n" + json.dumps({"key": "e", "record": session(5)}) + "\n"
    message = fails("import", url, input=bad)
    assert "stdin, line 4 (key 'd')" in message and "not a session record" in message and "none after" in message
    assert "line 2: not JSON" in fails("import", url, input=text.replace("\n", "\n{oops\n", 1))
    assert 'not an exported record' in fails("import", url, input='{"key": "x", "value": {}}\n')
    assert sorted(snapshot(url)) == ["a", "b", "c"]


def test_gc_removes_what_the_middleware_ttl_would_expire(kind: str, tmp_path: Path) -> None:
    """Saved longer ago than --ttl: removed; within it, without a save time, quarantined or unreadable: kept."""
    url = url_for(kind, tmp_path)
    now = time.time()
    fill(url, {
        "old": session(1, saved_at=now - 7200), "older": session(1, saved_at=now - 86400), "fresh": session(1, saved_at=now - 3000),
        "timeless": {"data": {"n": 1}}, QUARANTINED: session(1, saved_at=now - 86400),
    })  # fmt: skip
    corrupt(url, "garbage")
    assert ok("gc", "--dry-run", url, "--ttl", "3600") == "old\nolder\nwould remove 2 of 5 sessions not saved for 1 h; 1 unreadable left alone\n"
    assert len(snapshot_keys(url)) == 6
    assert ok("gc", url, "--ttl", "3600") == "removed 2 of 5 sessions not saved for 1 h; 1 unreadable left alone\n"
    assert sorted(snapshot_keys(url)) == sorted(["fresh", "timeless", QUARANTINED, "garbage"])
    with storage_from_url(url) as storage:  # and the middleware's own sweep agrees: nothing more to remove
        storage.delete("garbage")
        assert SessionEngine(initial=dict, storage=storage, ttl=3600).sweep() == 0


def test_doctor_reports_every_kind_of_problem_and_changes_nothing(kind: str, tmp_path: Path) -> None:
    """Not JSON, not a record, newer, not decoding, quarantined (with a restore command that works); exit 1."""
    (tmp_path / "botmod.py").write_text(BOT_MODULE)
    url = url_for(kind, tmp_path)
    fill(url, {
        "fine": session(1, schema=1), "old-shape": {"data": {"count": 4}, "schema": 0}, "not-a-record": {"n": 1},
        "newer": {"data": {"n": 1}, "schema": 2}, "wrong-type": {"data": {"n": "many"}, "schema": 1}, QUARANTINED: session(1),
    })  # fmt: skip
    corrupt(url, "garbage")
    before = canonical(snapshot_all(url))

    out = cli("doctor", url, "--class", "botmod:sessions", cwd=tmp_path)
    assert out.returncode == 1 and out.stderr == ""
    report = dict(line.split(": ", 1) for line in out.stdout.splitlines()[:-1])
    assert sorted(report) == sorted(["garbage", "not-a-record", "newer", "wrong-type", QUARANTINED])
    assert report["garbage"].startswith("unreadable: ")
    assert report["not-a-record"] == "it is not a session record (no 'data' object)"
    assert report["newer"] == "is from a newer version: schema 2, and this code knows schema 1"
    assert report["wrong-type"].startswith("does not fit Counter: ") and "Counter.n" in report["wrong-type"]
    assert out.stdout.splitlines()[-1].endswith(": 4 with problems, 1 quarantined")

    with_schema = cli("doctor", url, "--schema", "1").stdout
    assert "newer: is from a newer version" in with_schema and "wrong-type" not in with_schema
    assert "(--class or --schema checks versions too)" in cli("doctor", url).stdout
    assert canonical(snapshot_all(url)) == before

    with storage_from_url(url) as storage:
        for key in ("garbage", "not-a-record", "newer", "wrong-type"):
            storage.delete(key)
    hint = report[QUARANTINED].split("restore with: ")[1]
    ok(*shlex.split(hint)[1:])
    assert canonical({"k": snapshot(url)["-5"]}) == canonical({"k": orjson.loads(before[QUARANTINED])})
    clean = cli("doctor", url, "--class", "botmod:sessions", cwd=tmp_path)
    assert clean.returncode == 0 and clean.stdout.endswith(": all fine\n") and clean.stdout.count("\n") == 1


def snapshot_all(url: str) -> dict[str, Any]:
    """Every record, an unreadable one as the string 'unreadable'."""
    out: dict[str, Any] = {}
    with storage_from_url(url) as storage:
        for key in storage.keys():
            try:
                out[key] = storage.get(key)
            except ValueError:
                out[key] = "unreadable"
    return out


def test_restore_moves_a_quarantined_record_back(kind: str, tmp_path: Path) -> None:
    """To the key it came from; refused over a record unless --force; --to chooses another key."""
    url = url_for(kind, tmp_path)
    quarantined = "bot:quarantine:20261203T101502.123456Z:-100123"  # under a middleware prefix
    fill(url, {quarantined: session(1), "bot:-100123": session(2)})
    message = fails("restore", url, quarantined)
    assert "'bot:-100123' already has a session" in message and "--force" in message
    ok("restore", url, quarantined, "--to", "bot:-100999")
    assert snapshot(url)["bot:-100999"]["data"] == {"n": 1}
    fill(url, {quarantined: session(3)})
    ok("restore", url, quarantined, "--force")
    assert {key: value["data"]["n"] for key, value in snapshot(url).items()} == {"bot:-100123": 3, "bot:-100999": 1}
    assert "not the key of a quarantined record" in fails("restore", url, "bot:-100123")
    assert "no session" in fails("restore", url, quarantined)


def test_stats_counts_bytes_and_save_times(kind: str, tmp_path: Path) -> None:
    """Counts, bytes of JSON, the oldest and newest save, and ages in buckets; text and JSON."""
    url = url_for(kind, tmp_path)
    now = time.time()
    stored = {"a": session(1, saved_at=now - 10), "b": session(22, saved_at=now - 2 * 86400), "c": {"data": {}}, QUARANTINED: session(1)}
    fill(url, stored)
    corrupt(url, "garbage")
    stats = json.loads(ok("stats", "--json", url))
    assert stats["sessions"] == 4 and stats["unreadable"] == 1 and stats["quarantined"] == 1 and stats["no_save_time"] == 1
    assert stats["bytes"] == sum(len(orjson.dumps(stored[key])) for key in "abc")
    assert (stats["oldest_save"], stats["newest_save"]) == (stored["b"]["saved_at"], stored["a"]["saved_at"])
    assert stats["ages"] == {"< 1 h": 1, "< 1 d": 0, "< 1 w": 1, "< 30 d": 0, "< 1 y": 0, ">= 1 y": 0}
    text = ok("stats", url)
    assert "sessions     4 (1 unreadable)" in text and "newest save" in text and "(2 d ago)" in text


# -- while a bot runs -------------------------------------------------------------------------


def _bot_process(url: str, chats: list[int], started: Any, stop: Any, result: Any) -> None:
    """A threaded TeleBot counting /count per chat until ``stop``; puts how many it sent per chat."""
    counter = Counter()
    storage = storage_from_url(url)
    bot = make_bot(threaded=True, num_threads=4)
    bot.setup_middleware(SessionMiddleware(initial=lambda: {"n": 0}, storage=storage))
    bot.setup_middleware(Done(counter))

    @bot.message_handler(commands=["count"])  # type: ignore[untyped-decorator]
    def count(message: Any) -> None:
        value = message.session["n"]
        time.sleep(0.001)  # a slow read-modify-write: a writer that ignored the lock would lose updates
        message.session["n"] = value + 1

    sent = dict.fromkeys(chats, 0)
    while not stop.is_set():
        bot.process_new_updates([text_update("/count", chat_id=chat) for chat in chats])
        for chat in chats:
            sent[chat] += 1
        counter.wait(sum(sent.values()) - 4 * len(chats), timeout=120)  # a short queue
        started.set()
    counter.wait(sum(sent.values()), timeout=120)
    bot.stop_bot()  # type: ignore[no-untyped-call]
    storage.close()
    result.put(sent)


def test_commands_while_a_bot_updates_the_same_sessions(kind: str, tmp_path: Path) -> None:
    """show, edit, import --overwrite and copy run against a live bot: no update lost, no record torn."""
    url, mirror = url_for(kind, tmp_path), url_for(kind, tmp_path, "mirror")
    chats = [1, 2, 3]
    fill(url, {"other:1": session(0), "other:2": session(0)})
    ctx = multiprocessing.get_context("spawn")
    started, stop, result = ctx.Event(), ctx.Event(), ctx.Queue()
    bot = ctx.Process(target=_bot_process, args=(url, chats, started, stop, result))
    bot.start()
    try:
        assert started.wait(60)
        seen: dict[int, list[int]] = {chat: [] for chat in chats}
        for round in range(1, 4):
            for chat in chats:
                seen[chat].append(json.loads(ok("show", url, str(chat)))["data"]["n"])  # never torn, never behind
            ok("edit", url, "other:1", env=editor(tmp_path, "inc"))
            ok("import", "--overwrite", url, input=json.dumps({"key": "other:2", "record": session(round)}) + "\n")
            ok("copy", url, mirror)  # holds each of the bot's keys in both storages, while the bot counts
        assert bot.is_alive()
    finally:
        stop.set()
    sent = result.get(timeout=120)
    bot.join(60)
    assert bot.exitcode == 0
    final = snapshot(url)
    assert {chat: final[str(chat)]["data"]["n"] for chat in chats} == sent
    assert all(values == sorted(values) and values[-1] > values[0] for values in seen.values()), seen
    assert final["other:1"]["data"] == {"n": 3} and final["other:2"]["data"] == {"n": 3}
    ok("copy", url, mirror)
    assert canonical(snapshot(mirror)) == canonical(final)


# -- failures ---------------------------------------------------------------------------------

ALL_COMMANDS = [["ls"], ["show", "k"], ["edit", "k"], ["rm", "k"], ["export"], ["import"], ["gc", "--ttl", "1"], ["doctor"], ["stats"], ["restore", "k", "--to", "j"]]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: c[0])
def test_a_bad_url_lists_the_accepted_forms(command: list[str]) -> None:
    """Exit status 1, the URL, the accepted forms; no traceback."""
    done = cli(command[0], "bogus://x", *command[1:], input="")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("telesession: cannot make a session storage from 'bogus://x'") and "accepted forms" in done.stderr


def test_copy_names_the_bad_url(tmp_path: Path) -> None:
    url = url_for("file", tmp_path)
    fill(url, {"k": session(1)})
    for args in ([url, "nope"], ["nope", url]):
        done = cli("copy", *args)
        assert done.returncode == 1 and done.stderr.startswith("telesession: cannot make a session storage from 'nope'")


def test_a_usage_error_exits_2() -> None:
    """argparse's own: a missing argument, an unknown option, a bad --ttl."""
    assert cli("show", "file:x").returncode == 2
    assert cli("ls", "file:x", "--bogus").returncode == 2
    assert "positive number of seconds" in cli("gc", "file:x", "--ttl", "-1").stderr
    assert cli().returncode == 2


def test_a_missing_store_is_named_and_not_made(tmp_path: Path) -> None:
    """Looking at a path that is not there does not leave an empty store behind."""
    for url, path in [(f"file:{tmp_path / 'nope'}", tmp_path / "nope"), (f"sqlite:///{tmp_path / 'nope.db'}", tmp_path / "nope.db")]:
        for command in (["ls"], ["doctor"], ["stats"], ["show", "k"], ["gc", "--ttl", "1"], ["import", "--dry-run"]):
            if command[0] == "import":
                assert cli(command[0], url, *command[1:], input="").returncode == 0
            else:
                assert str(path) in fails(command[0], url, *command[1:])
        assert not path.exists()


@pytest.mark.parametrize("command", [["show", "URL", "missing"], ["edit", "URL", "missing"], ["rm", "URL", "missing"], ["rm", "--yes", "URL", "other", "missing"]], ids=" ".join)
def test_a_missing_key_is_named(command: list[str], kind: str, tmp_path: Path) -> None:
    url = url_for(kind, tmp_path)
    fill(url, {"other": session(1)})
    assert "no session 'missing'" in fails(*[url if arg == "URL" else arg for arg in command])


@pytest.mark.parametrize("command", ALL_COMMANDS + [["copy-from"], ["copy-to"]], ids=lambda c: c[0])
def test_a_redis_server_that_is_down_gives_one_line(command: list[str], tmp_path: Path) -> None:
    """A closed port: one line naming the server, exit 1, quickly; --debug shows the traceback."""
    port = free_port()
    down = f"redis://127.0.0.1:{port}/0?socket_connect_timeout=1"
    local = url_for("file", tmp_path)
    fill(local, {"k": session(1)})
    args = {"copy-from": ["copy", down, local], "copy-to": ["copy", local, down]}.get(command[0], [command[0], down, *command[1:]])
    started = time.monotonic()
    line = json.dumps({"key": "k", "record": session(1)}) + "\n"
    message = fails(*args, input=line, env={"EDITOR": "true"})
    assert f"127.0.0.1:{port}" in message and "refused" in message.lower()
    assert time.monotonic() - started < 20
    debug = cli("--debug", *args, input=line)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "StorageError" in debug.stderr


def test_a_permission_error_gives_one_line(tmp_path: Path) -> None:
    """A directory we may list but not write, a file we may not read: one line each, exit 1."""
    url = url_for("file", tmp_path)
    fill(url, {"k": session(1)})
    wrap: list[str] = []
    if os.geteuid() == 0:  # root passes every permission check: run without the capabilities that let it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        wrap = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    record = FileStorage(tmp_path / "store").file("k")
    os.chmod(record, 0o000)
    os.chmod(tmp_path / "store", 0o500)
    try:
        assert "Permission denied" in fails("show", url, "k", wrap=wrap)
        line = json.dumps({"key": "k", "record": session(2)}) + "\n"
        assert "Permission denied" in fails("import", "--overwrite", url, input=line, wrap=wrap)
        assert "Permission denied" in fails("rm", url, "k", wrap=wrap)
    finally:
        os.chmod(tmp_path / "store", 0o700)
        os.chmod(record, 0o600)


def test_an_unknown_class_is_named(tmp_path: Path) -> None:
    url = url_for("file", tmp_path)
    fill(url, {"k": session(1)})
    assert "--class nomodule:X: cannot import it" in fails("doctor", url, "--class", "nomodule:X", cwd=tmp_path)
    (tmp_path / "botmod.py").write_text(BOT_MODULE)
    assert "not a session class" in fails("doctor", url, "--class", "botmod:dataclass", cwd=tmp_path)


def test_ctrl_c_exits_130_and_leaves_no_temp_file(tmp_path: Path) -> None:
    """Interrupted in the editor: exit 130, the record as it was, the temporary copy gone."""
    url = url_for("file", tmp_path)
    fill(url, {"k": session(1)})
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "VISUAL": "", "EDITOR": f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(60)'"}
    process = subprocess.Popen([*CLI, "edit", url, "k"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not list(temp.glob("telesession-*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # in the editor's wait
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130 and err == "telesession: interrupted\n"
    assert list(temp.iterdir()) == [] and snapshot(url)["k"]["data"] == {"n": 1}


# -- progress ---------------------------------------------------------------------------------


def test_bulk_work_shows_a_bar_on_a_terminal_only(tmp_path: Path) -> None:
    """stderr a terminal: a bar; not a terminal (every ok() above): nothing on stderr."""
    url = url_for("file", tmp_path)
    fill(url, {str(n): session(n) for n in range(50)})
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    process = subprocess.Popen([*CLI, "export", url], stdout=subprocess.PIPE, stderr=secondary, stdin=subprocess.DEVNULL)
    os.close(secondary)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the other side closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    out, _ = process.communicate(timeout=60)
    reader.join(10)
    os.close(main)
    bar = b"".join(chunks).decode()
    assert process.returncode == 0 and len(out.splitlines()) == 50
    assert "export" in bar and "100%" in bar and "50/50" in bar
    assert cli("export", url).stderr == ""
