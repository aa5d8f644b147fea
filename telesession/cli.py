"""The ``telesession`` command: see, fix, move and clean sessions in a storage, while the bot runs.

A thin shell over the session engine. Every write holds its key as the middleware does
(``SessionEngine.held_record``, ``move``), so a running bot and this command never lose each
other's changes; every check on a record is ``_record``'s (``record_problem``, ``Format``).
Commands that only look (ls, show, export, stats, doctor) read without holding: every storage
replaces a record all at once, so a read sees it old or new, never torn.

Failures end as one line on stderr (``telesession: ...``) and exit status 1; a command line
argparse refuses exits 2, Ctrl-C 130; ``--debug`` shows the traceback instead. Why argparse:
subcommands, ``--help`` and the usage errors are all this needs, and it costs no dependency.
Why tqdm: a bar that knows its terminal's width, rate and time left in one call, and that
passes the iterable through untouched when disabled. Both are imported here and only here:
importing telesession in a bot imports neither.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib
import json
import logging
import os
import shlex
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import IO, Any, TypeVar

import orjson
from tqdm import tqdm

from . import __version__
from ._json import dumps
from ._record import Format, record_problem
from .engine import HeldRecord, SessionEngine, parse_quarantined
from .errors import CorruptRecordError, DecodeError, EncodeError, MigrationError, SessionError
from .storage.base import SessionStorage
from .urls import storage_from_url, without_password

__all__ = ["main"]

T = TypeVar("T")

_URLS = """storage URLs (as storage_from_url takes them):
  file:./sessions, file:///srv/bot/sessions      FileStorage
  sqlite:///sessions.db, sqlite:////srv/bot.db   SQLiteStorage (?table=name)
  redis://[:password@]host[:port][/db]           RedisStorage (?prefix=...; default prefix 'telesession:')
  memory:// is private to one process: a command sees none of a bot's sessions there.

Keys are written as stored, a middleware's prefix included. A key that starts with '-' and is
not a plain number (a per-user-in-chat key, '-100123:42') comes after '--'."""


class Failure(Exception):
    """What ends a command: its message goes to stderr, and the exit status is 1."""


# -- entry point ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = _parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    with _log_to_stderr(debug):
        return _run(args, debug)


def _run(args: argparse.Namespace, debug: bool) -> int:
    try:
        status: int = args.run(args)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        if debug:
            raise
        _say("interrupted")
        return 130
    except BrokenPipeError:
        # `telesession ls URL | head`: the reader left; say nothing more, to it or about it.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:
        if debug:
            raise
        _say(_message(e))
        return 1


def _message(error: Exception) -> str:
    if isinstance(error, Failure):
        return str(error)
    text = " ".join(str(error).split("\n"))
    if isinstance(error, (OSError, ImportError)) or type(error).__module__.startswith("telesession"):
        return text
    return f"unexpected {type(error).__name__}: {text} (--debug shows where)"


def _say(message: str) -> None:
    tqdm.write(f"telesession: {message}", file=sys.stderr)


@contextlib.contextmanager
def _log_to_stderr(debug: bool) -> Iterator[None]:
    """The engine's and the storages' warnings (a move refused, a lock renewal failed) on stderr, as they are."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if debug else "%(message)s"))
    logger = logging.getLogger("telesession")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# -- arguments --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
    parser = argparse.ArgumentParser(
        prog="telesession",
        description="See, fix, move and clean the sessions of telesession bots, while they run.",
        epilog=f"{_URLS}\n\nexamples:\n  telesession ls -l file:./sessions\n  telesession show file:./sessions -- -100123:42\n"
        "  telesession doctor sqlite:////srv/bot/sessions.db --class mybot:sessions\n\n"
        "`telesession COMMAND --help` tells more about each.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"telesession {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(name: str, run: Callable[[argparse.Namespace], int], summary: str, details: str, example: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=summary, description=textwrap.fill(f"{summary} {details}".strip(), 88),
            epilog=f"example:\n  {example}\n\n{_URLS}", formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common],
        )  # fmt: skip
        sub.set_defaults(run=run)
        return sub

    sub = command("ls", _ls, "List stored keys, sorted, one a line.", "Quarantined records too.", "telesession ls -l file:./sessions 'user:*'")
    sub.add_argument("url", metavar="URL")
    sub.add_argument("pattern", metavar="PATTERN", nargs="?", help="only keys this glob matches ('user:*', 'quarantine:*')")
    sub.add_argument("-l", "--long", action="store_true", help="add each record's size in bytes and last save time (UTC)")
    sub.add_argument("--json", action="store_true", help='JSON lines: {"key": ...} (and "size", "saved_at" with -l)')

    sub = command("show", _show, "Print one record as indented JSON.", "", "telesession show sqlite:///bot.db -- -100123")
    sub.add_argument("url", metavar="URL")
    sub.add_argument("key", metavar="KEY")

    sub = command(
        "edit", _edit, "Edit one record in $VISUAL or $EDITOR (else vi).",
        "The edit is written only if it is JSON and a session record (and, with --class, decodes). The key is held "
        "only while writing: an edit of a record that the bot saved meanwhile is refused.",
        "EDITOR=nano telesession edit file:./sessions 42 --class mybot:sessions",
    )  # fmt: skip
    sub.add_argument("url", metavar="URL")
    sub.add_argument("key", metavar="KEY")
    _class_option(sub)

    sub = command(
        "rm", _rm, "Remove records.", "Each is held as the bot holds it. Asks first when there are several.",
        "telesession rm file:./sessions 42 43 --yes",
    )  # fmt: skip
    sub.add_argument("url", metavar="URL")
    sub.add_argument("keys", metavar="KEY", nargs="+")
    sub.add_argument("-y", "--yes", action="store_true", help="do not ask")

    sub = command(
        "export", _export, "Write records as JSON lines.",
        'One {"key": ..., "record": ...} a line, sorted by key; import reads them. Each record is read whole, none '
        "held: one saved during the export is there as it was before or after. A record that is not a readable "
        "session record is left out and named on stderr (exit status 1).",
        "telesession export redis://localhost/0 > sessions.jsonl",
    )  # fmt: skip
    sub.add_argument("url", metavar="URL")
    sub.add_argument("pattern", metavar="PATTERN", nargs="?", help="only keys this glob matches")

    sub = command(
        "import", _import, "Write the records of an export.",
        "Each is held as the bot holds it. A key that has a different record is skipped, or with --overwrite "
        "replaced. The first bad line stops it (the lines before it stay written): --dry-run checks a file first.",
        "telesession import --overwrite sqlite:///bot.db < sessions.jsonl",
    )  # fmt: skip
    sub.add_argument("url", metavar="URL")
    sub.add_argument("file", metavar="FILE", nargs="?", help="the export (default: stdin)")
    existing = sub.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace records that differ")
    existing.add_argument("--skip-existing", action="store_true", help="leave records that exist alone (the default)")
    sub.add_argument("--dry-run", action="store_true", help="check every line and count, write nothing")

    sub = command(
        "copy", _copy, "Copy every record to another storage.",
        "Key by key, each held in both storages. Records already identical are left alone, so a copy that stopped "
        "resumes where it was; a record that differs is replaced.",
        "telesession copy file:./sessions redis://localhost/0 --dry-run",
    )  # fmt: skip
    sub.add_argument("src", metavar="SRC_URL")
    sub.add_argument("dst", metavar="DST_URL")
    sub.add_argument("pattern", metavar="PATTERN", nargs="?", help="only keys this glob matches")
    sub.add_argument("--dry-run", action="store_true", help="list what would be copied, copy nothing")

    sub = command(
        "gc", _gc, "Remove records not saved for longer than --ttl.",
        "The rule of the middleware's ttl; records without a save time, unreadable and quarantined ones stay. "
        "Each is checked again while held, so one the bot just saved stays.",
        "telesession gc file:./sessions --ttl 2592000",
    )  # fmt: skip
    sub.add_argument("url", metavar="URL")
    sub.add_argument("--ttl", type=_seconds, required=True, metavar="SECONDS", help="how long after its last save a record expires")
    sub.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")

    sub = command(
        "doctor", _doctor, "Check every record; change nothing.",
        "Reports each record that is not JSON, not a session record, from a newer schema (with --class or "
        "--schema), or does not decode (with --class); lists quarantined records and how to restore them. "
        "Exit status 1 when it found anything.",
        "telesession doctor file:./sessions --class mybot:sessions",
    )  # fmt: skip
    sub.add_argument("url", metavar="URL")
    sub.add_argument("pattern", metavar="PATTERN", nargs="?", help="only keys this glob matches")
    versions = _class_option(sub)
    versions.add_argument("--schema", type=_count, metavar="N", help="the current schema version (the number of migrations), without --class")

    sub = command(
        "stats", _stats, "Count records and bytes.", "The oldest and newest save, and how many were saved when.",
        "telesession stats file:./sessions",
    )  # fmt: skip
    sub.add_argument("url", metavar="URL")
    sub.add_argument("pattern", metavar="PATTERN", nargs="?", help="only keys this glob matches")
    sub.add_argument("--json", action="store_true", help="one JSON object")

    sub = command(
        "restore", _restore, "Move a quarantined record back.",
        "To the key it was moved from, or to --to KEY; both keys held. Refused when that key has a record, "
        "unless --force.",
        "telesession restore file:./sessions quarantine:20261203T101502.123456Z:-100123",
    )  # fmt: skip
    sub.add_argument("url", metavar="URL")
    sub.add_argument("key", metavar="QUARANTINED_KEY")
    sub.add_argument("--to", metavar="KEY", help="where to move it (default: the key it was quarantined from)")
    sub.add_argument("--force", action="store_true", help="replace a record at the destination")
    return parser


def _class_option(sub: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    group = sub.add_mutually_exclusive_group()
    group.add_argument(
        "--class", dest="cls", metavar="MODULE:NAME", type=_class_spec,
        help="the session class (a dataclass), or the SessionMiddleware or SessionEngine object, which also knows "
        "the migrations; MODULE is imported from the current directory, so keep the bot's polling under "
        "`if __name__ == '__main__':`",
    )  # fmt: skip
    return group


def _class_spec(text: str) -> str:
    module, _, name = text.partition(":")
    if not module or not name:
        raise argparse.ArgumentTypeError(f"expected MODULE:NAME (mybot:Session), got {text!r}")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number 0 or more, got {text!r}")
    return int(text)


# -- commands ---------------------------------------------------------------------------------


def _ls(args: argparse.Namespace) -> int:
    with _open(args.url) as storage:
        keys = _keys(storage, args.pattern)
        out = sys.stdout
        if not args.long:
            for key in keys:
                out.write(_json_line({"key": key}).decode() if args.json else _shown(key) + "\n")
            return 0
        rows = []
        for key in keys:
            record, error = _read(storage, key)
            if record is None and error is None:
                continue  # removed since the listing
            rows.append((key, None if error else _size(record), None if error else _saved_at(record)))
        if args.json:
            for key, size, saved_at in rows:
                out.write(_json_line({"key": key, "size": size, "saved_at": saved_at, **({"unreadable": True} if size is None else {})}).decode())
            return 0
        width = max((len(_shown(key)) for key, _, _ in rows), default=0)
        size_width = max((len(str(size)) for _, size, _ in rows), default=0)
        for key, size, saved_at in rows:
            if size is None:
                out.write(f"{_shown(key):<{width}}  {'?':>{size_width}}  unreadable (telesession doctor tells why)\n")
            else:
                out.write(f"{_shown(key):<{width}}  {size:>{size_width}}  {_when(saved_at)}\n")
    return 0


def _show(args: argparse.Namespace) -> int:
    with _open(args.url) as storage:
        record = _existing(storage, args.key)
        sys.stdout.buffer.write(orjson.dumps(record, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _edit(args: argparse.Namespace) -> int:
    check = _format_of(args.cls) if args.cls else None
    with _open(args.url) as storage:
        key, where = args.key, repr(storage)
        before = _existing(storage, key)
        original = orjson.dumps(before, option=orjson.OPT_INDENT_2) + b"\n"
        fd, path = tempfile.mkstemp(prefix="telesession-", suffix=".json")  # owner-only
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(original)
            while True:
                _run_editor(path)
                with open(path, "rb") as f:
                    edited = f.read()
                if edited == original:
                    _say(f"no change to {key!r}; nothing written")
                    return 0
                try:
                    record = _edited_record(edited, key, storage, check)
                    break
                except Failure as e:
                    if not _ask(f"{e}; edit again?"):
                        raise Failure(f"{e}; the stored record was kept") from None
            if _same(record, before):
                _say(f"no change to {key!r}; nothing written")
                return 0
            with _engine(storage).held_record(key) as held:
                if held.error is not None or not _same(held.record, before):
                    raise Failure(
                        f"session {key!r} in {where} changed while it was being edited (the bot saved it meanwhile): "
                        "nothing was written; edit it again"
                    )
                held.write(record)
        finally:
            os.unlink(path)
    return 0


def _rm(args: argparse.Namespace) -> int:
    keys = list(dict.fromkeys(args.keys))
    with _open(args.url) as storage:
        if len(keys) > 1 and not args.yes:
            shown = ", ".join(repr(key) for key in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            if not _ask(f"remove {len(keys)} sessions ({shown}) from {storage!r}?", tty_only=False):
                raise Failure("nothing was removed (--yes removes without asking)")
        engine = _engine(storage)
        missing = [key for key in keys if not engine.delete(key)]
        if missing:
            removed = len(keys) - len(missing)
            also = f" ({removed} other{'s' if removed != 1 else ''} removed)" if removed else ""
            raise Failure(f"no session {', '.join(repr(key) for key in missing)} in {storage!r}{also}")
    return 0


def _export(args: argparse.Namespace) -> int:
    left = 0
    with _open(args.url) as storage:
        out = sys.stdout.buffer
        quiet = sys.stdout.isatty()  # the lines themselves go to the terminal: no bar between them
        for key in _progress(_keys(storage, args.pattern, quiet=quiet), "export", quiet=quiet):
            record, problem = _travelling(storage, key)
            if problem is not None:
                left += 1
                _say(f"not exported: {problem}")
            elif record is not None:
                out.write(_json_line({"key": key, "record": record}))
        out.flush()
    if left:
        raise Failure(f"{_plural(left, 'record')} not exported: not readable session records (telesession doctor lists them)")
    return 0


def _import(args: argparse.Namespace) -> int:
    counts = dict.fromkeys(("new", "replaced", "unchanged", "skipped"), 0)
    with contextlib.ExitStack() as stack:
        source: IO[bytes] = sys.stdin.buffer if args.file in (None, "-") else stack.enter_context(open(args.file, "rb"))
        name = "stdin" if source is sys.stdin.buffer else args.file
        storage = stack.enter_context(_target(args.url, args.dry_run))
        engine = _engine(storage) if storage is not None else None
        bar = stack.enter_context(tqdm(total=_file_size(source), unit="B", unit_scale=True, desc="import", disable=not sys.stderr.isatty()))
        for lineno, line in enumerate(source, 1):
            bar.update(len(line))
            if not line.strip():
                continue
            try:
                key, record = _import_line(line, lineno, name)
                if engine is None or args.dry_run:
                    counts[_import_one(_Read(storage, key), record, args.overwrite)] += 1
                    continue
                with engine.held_record(key) as held:
                    counts[_import_one(held, record, args.overwrite)] += 1
            except Exception as e:
                if args.dry_run or not sum(counts.values()):
                    raise
                raise Failure(f"{_message(e)} (the lines before it were imported, none after)") from e
    verb = "would import" if args.dry_run else "imported"
    sys.stdout.write(_summary(f"{verb} {_plural(sum(counts.values()), 'session')} from {name}", counts) + "\n")
    return 0


def _import_one(target: HeldRecord | _Read, record: Any, overwrite: bool) -> str:
    """Write ``record`` to ``target`` unless it must stay; new, replaced, unchanged or skipped."""
    if target.record is None and target.error is None:
        outcome = "new"
    elif target.error is None and _same(target.record, record):
        return "unchanged"
    elif overwrite:
        outcome = "replaced"
    else:
        return "skipped"
    target.write(record)
    return outcome


def _copy(args: argparse.Namespace) -> int:
    counts = dict.fromkeys(("new", "replaced", "identical", "left out"), 0)
    actions: list[str] = []
    with _open(args.src) as src, _target(args.dst, args.dry_run) as dst:
        if dst is not None and src.identity() == dst.identity():
            raise Failure(f"{without_password(args.src)} and {without_password(args.dst)} are the same storage ({src!r})")
        # Both storages in one order, whichever is the source: two copies running opposite ways
        # must not each hold a key in one storage and wait for it in the other.
        first, second = sorted((src, dst), key=lambda storage: repr(storage.identity())) if dst is not None else (src, src)
        holds = (_engine(first).held_record, _engine(second).held_record)
        for key in _progress(_keys(src, args.pattern), "copy"):
            try:
                if args.dry_run or dst is None:
                    outcome = _copy_one(_Read(src, key), _Read(dst, key))
                else:
                    with holds[0](key) as a, holds[1](key) as b:
                        outcome = _copy_one(*((a, b) if first is src else (b, a)))
            except CorruptRecordError as e:  # a storage that can't hold an unreadable record raises it
                _say(f"not copied: {e}")
                outcome = "left out"
            if outcome is not None:
                counts[outcome] += 1
            if args.dry_run and outcome in ("new", "replaced"):
                actions.append(f"{'copy' if outcome == 'new' else 'replace'} {_shown(key)}")
    for line in actions:
        sys.stdout.write(line + "\n")
    to = repr(dst) if dst is not None else without_password(args.dst)
    head = f"{'dry run, nothing written: ' if args.dry_run else ''}{_plural(sum(counts.values()), 'session')} from {src!r} to {to}"
    sys.stdout.write(_summary(head, counts) + "\n")
    if counts["left out"]:
        raise Failure(f"{_plural(counts['left out'], 'record')} left out: not readable session records (telesession doctor lists them)")
    return 0


class _Read:
    """A record read without holding its key, shaped like a ``HeldRecord``, that writes nothing (for ``--dry-run``).

    ``storage`` ``None`` stands for one that does not exist yet.
    """

    def __init__(self, storage: SessionStorage | None, key: str):
        self.key = key
        self.record: Any = None
        self.error: CorruptRecordError | None = None
        if storage is not None:
            self.record, self.error = _read(storage, key)

    def write(self, record: Any) -> None:
        pass


def _copy_one(source: HeldRecord | _Read, target: HeldRecord | _Read) -> str | None:
    """Copy ``source``'s record to ``target`` unless it is there already; the outcome, ``None`` when it vanished."""
    if source.error is not None or (source.record is not None and record_problem(source.record) is not None):
        _say(f"not copied: {source.error or f'{source.key!r}: {record_problem(source.record)}'}")
        return "left out"
    if source.record is None:
        return None  # removed since the listing
    if target.error is None and target.record is not None and _same(target.record, source.record):
        return "identical"
    outcome = "new" if target.record is None and target.error is None else "replaced"
    target.write(source.record)
    return outcome


def _gc(args: argparse.Namespace) -> int:
    removed: list[str] = []
    unreadable = 0
    now = time.time()
    with _open(args.url) as storage:
        engine = _engine(storage, ttl=args.ttl)
        expired = engine.format.expired  # the middleware's rule: saved_at + ttl < now
        keys = [key for key in _keys(storage, None) if _quarantined(key) is None]
        for key in _progress(keys, "gc"):
            record, error = _read(storage, key)
            unreadable += error is not None
            if record is None or not expired(record, now):
                continue
            if args.dry_run or engine.remove_if_expired(key, now):  # checked again under the hold: the bot may have saved it
                removed.append(key)
    if args.dry_run:
        for key in removed:
            sys.stdout.write(_shown(key) + "\n")
    verb = "would remove" if args.dry_run else "removed"
    left = f"; {unreadable} unreadable left alone" if unreadable else ""
    sys.stdout.write(f"{verb} {len(removed)} of {len(keys)} sessions not saved for {_duration(args.ttl)}{left}\n")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    check = _format_of(args.cls) if args.cls else None
    version = check.version if check is not None else args.schema
    problems: list[tuple[str, str]] = []
    quarantined: list[tuple[str, str, str]] = []
    with _open(args.url) as storage:
        where = repr(storage)
        keys = _keys(storage, args.pattern)
        for key in _progress(keys, "doctor"):
            found = _quarantined(key)
            if found is not None:
                quarantined.append((key, *found))
                continue
            record, error = _read(storage, key)
            if error is not None:
                problems.append((key, f"unreadable: {error}"))
            elif record is not None:
                problem = record_problem(record)
                schema = record.get("schema", 0) if problem is None else None
                if problem is not None:
                    problems.append((key, problem))
                elif version is not None and schema is not None and schema > version:
                    problems.append((key, f"is from a newer version: schema {schema}, and this code knows schema {version}"))
                elif check is not None:
                    try:
                        check.read(key, record, storage)
                    except (DecodeError, MigrationError, CorruptRecordError) as e:
                        problems.append((key, _decode_problem(e, check)))
    out = sys.stdout
    for key, problem in problems:
        out.write(f"{_shown(key)}: {problem}\n")
    url = without_password(args.url)
    for key, original, when in quarantined:
        out.write(
            f"{_shown(key)}: quarantined {_when(when)} from {original!r}; restore with: "
            f"telesession restore {shlex.quote(url)} {_argument(key)}\n"
        )
    findings = [f"{len(problems)} with problems"] if problems else []
    findings += [f"{len(quarantined)} quarantined"] if quarantined else []
    unchecked = "" if check is not None or version is not None else " (--class or --schema checks versions too)"
    out.write(f"checked {_plural(len(keys), 'record')} in {where}: {', '.join(findings) or 'all fine'}{unchecked}\n")
    return 1 if findings else 0


_AGES = [(3600, "< 1 h"), (86400, "< 1 d"), (7 * 86400, "< 1 w"), (30 * 86400, "< 30 d"), (365 * 86400, "< 1 y"), (float("inf"), ">= 1 y")]


def _stats(args: argparse.Namespace) -> int:
    now = time.time()
    count = size = unreadable = quarantined = 0
    times: list[float] = []
    with _open(args.url) as storage:
        where = repr(storage)
        for key in _progress(_keys(storage, args.pattern), "stats"):
            if _quarantined(key) is not None:
                quarantined += 1
                continue
            record, error = _read(storage, key)
            if error is not None:
                unreadable += 1
            if record is None:
                continue  # unreadable, or removed since the listing
            count += 1
            size += _size(record)
            saved_at = _saved_at(record)
            if saved_at is not None:
                times.append(saved_at)
    ages = dict.fromkeys((label for _, label in _AGES), 0)
    for saved_at in times:
        ages[next(label for limit, label in _AGES if now - saved_at < limit)] += 1
    oldest, newest = (min(times), max(times)) if times else (None, None)
    if args.json:
        sys.stdout.write(
            _json_line({
                "storage": where, "sessions": count + unreadable, "bytes": size, "unreadable": unreadable, "quarantined": quarantined,
                "oldest_save": oldest, "newest_save": newest, "no_save_time": count - len(times), "ages": ages,
            }).decode()
        )  # fmt: skip
        return 0
    rows = [
        ("storage", where),
        ("sessions", f"{count + unreadable}" + (f" ({unreadable} unreadable)" if unreadable else "")),
        ("quarantined", f"{quarantined}"),
        ("bytes", f"{size:,}" + (f" ({size // count:,} per readable session)" if count else "")),
    ]
    if oldest is not None and newest is not None:
        rows += [("oldest save", f"{_when(oldest)} ({_duration(now - oldest)} ago)"), ("newest save", f"{_when(newest)} ({_duration(now - newest)} ago)")]
        rows.append(("saved", "   ".join(f"{label}: {n}" for label, n in ages.items()) + (f"   never: {count - len(times)}" if count > len(times) else "")))
    for label, value in rows:
        sys.stdout.write(f"{label:<12} {value}\n")
    return 0


def _restore(args: argparse.Namespace) -> int:
    key = args.key
    found = _quarantined(key)
    target = args.to if args.to is not None else (found[0] if found else None)
    if target is None:
        raise Failure(f"{key!r} is not the key of a quarantined record (those are <prefix>quarantine:<time>:<key>): give --to KEY")
    if target == key:
        raise Failure(f"{key!r} is already where --to says")
    with _open(args.url) as storage:
        where = repr(storage)
        if not storage.has(key):
            raise Failure(f"no session {key!r} in {where}")
        if not args.force and storage.has(target):
            raise Failure(f"{target!r} already has a session in {where}: nothing moved (--force replaces it; telesession show compares)")
        if not _engine(storage).move(key, target, replace=args.force):
            raise Failure(f"{key!r} was not moved to {target!r}: one of them changed meanwhile; look again")
    return 0


# -- storages and records ---------------------------------------------------------------------


def _storage(url: str, *, create: bool) -> SessionStorage:
    """The storage at ``url``; unless ``create``, a file or database that is not there is refused."""
    try:
        return storage_from_url(url, create=create)
    except FileNotFoundError as e:
        raise Failure(f"{without_password(url)}: {e} (import or copy into it to make it)") from e
    except ValueError as e:
        raise Failure(str(e)) from e


@contextlib.contextmanager
def _open(url: str, *, create: bool = False) -> Iterator[SessionStorage]:
    """The storage at ``url`` (see ``_storage``), closed on leaving."""
    with _storage(url, create=create) as storage:
        yield storage


@contextlib.contextmanager
def _target(url: str, dry_run: bool) -> Iterator[SessionStorage | None]:
    """The storage to write to, made if missing; for a dry run ``None`` when it does not exist (nothing is made)."""
    try:
        storage = _storage(url, create=not dry_run)
    except Failure as e:
        if dry_run and isinstance(e.__cause__, FileNotFoundError):
            yield None
            return
        raise
    with storage:
        yield storage


def _engine(storage: SessionStorage, ttl: float | None = None) -> SessionEngine[dict[str, Any]]:
    # Keys are whole storage keys (prefix included): an engine without prefix holds them as a middleware with one does.
    return SessionEngine(initial=dict, storage=storage, ttl=ttl)


def _keys(storage: SessionStorage, pattern: str | None, *, quiet: bool = False) -> list[str]:
    """Every stored key ``pattern`` matches (all without one), sorted."""
    try:
        listed = storage.keys()
        keys = [key for key in _progress(listed, "listing", leave=False, quiet=quiet) if pattern is None or fnmatch.fnmatchcase(key, pattern)]
    except NotImplementedError as e:
        raise Failure(f"{storage!r} cannot list its keys: {e}") from e
    return sorted(keys)


def _read(storage: SessionStorage, key: str) -> tuple[Any, CorruptRecordError | None]:
    """The record under ``key`` without holding it (``None`` when absent), or the error that says it is unreadable."""
    try:
        return storage.get(key), None
    except CorruptRecordError as e:
        return None, e


def _existing(storage: SessionStorage, key: str) -> Any:
    record, error = _read(storage, key)
    if error is not None:
        raise error
    if record is None:
        raise Failure(f"no session {key!r} in {storage!r}")
    return record


def _travelling(storage: SessionStorage, key: str) -> tuple[Any, str | None]:
    """The record under ``key`` if it may leave its storage (a readable session record), else why not."""
    record, error = _read(storage, key)
    if error is not None:
        return None, str(error)
    problem = record_problem(record) if record is not None else None
    return (record, None) if problem is None else (None, f"{key!r}: {problem}")


def _quarantined(key: str) -> tuple[str, str] | None:
    """``(original key, when)`` of a quarantined record's key, under any prefix; ``None`` for other keys."""
    found = parse_quarantined(key)
    return None if found is None else (found[0] + found[1], found[2])


def _format_of(spec: str) -> Format[Any]:
    """The record format ``--class MODULE:NAME`` names (without ttl: a check decodes expired records too)."""
    module_name, _, name = spec.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the console script's sys.path starts at its own directory
    try:
        found: Any = importlib.import_module(module_name)
        for part in name.split("."):
            found = getattr(found, part)
    except Exception as e:
        raise Failure(f"--class {spec}: cannot import it: {e!r}") from e
    engine = getattr(found, "engine", found)  # a SessionMiddleware's engine
    if isinstance(engine, SessionEngine):
        return Format(engine.format.initial, migrations=engine.format.migrations)
    try:
        return Format(found)
    except (TypeError, ValueError) as e:
        raise Failure(f"--class {spec}: not a session class, SessionMiddleware or SessionEngine: {e}") from e


def _edited_record(raw: bytes, key: str, where: SessionStorage, check: Format[Any] | None) -> Any:
    """The record in an edited file; ``Failure`` saying why it can't be stored."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise Failure(f"the edit is refused: it is not JSON ({e})") from e
    problem = record_problem(record)
    if problem is not None:
        raise Failure(f"the edit is refused: {problem}")
    try:
        dumps(record, key=key)
        if check is not None:
            check.read(key, record, where)
    except EncodeError as e:
        raise Failure(f"the edit is refused: {e}") from e
    except (DecodeError, MigrationError, CorruptRecordError) as e:
        raise Failure(f"the edit is refused: it {_decode_problem(e, check)}") from e
    return record


def _decode_problem(error: SessionError, check: Format[Any] | None) -> str:
    """Why a record does not decode, without the key and the storage (the line names them) or what a bot would do."""
    if isinstance(error, MigrationError):
        step = error.step
        if step is None:
            return f"is from a newer version: schema {error.stored_version}, and this code knows schema {error.code_version}"
        return f"fails migration {step} (schema {step - 1} -> {step}): {error.original_error!r}"
    if isinstance(error, DecodeError) and error.original_error is not None and check is not None:
        return f"does not fit {check.type.__name__}: {error.original_error}"
    return str(error)


def _run_editor(path: str) -> None:
    # VISUAL before EDITOR, as git, crontab and sudoedit choose.
    command = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    argv = shlex.split(command) + [path]
    try:
        status = subprocess.run(argv).returncode
    except OSError as e:
        raise Failure(f"cannot run the editor {command!r} ($VISUAL, $EDITOR): {e}") from e
    if status != 0:
        raise Failure(f"the editor {command!r} exited with status {status}: nothing was written")


def _import_line(line: bytes, lineno: int, name: str) -> tuple[str, Any]:
    where = f"{name}, line {lineno}"
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        try:  # a key with lone surrogates, which orjson refuses (see _json_line)
            entry = json.loads(line, parse_constant=_refuse_constant)
        except ValueError:
            raise Failure(f"{where}: not JSON: {e}") from None
    if type(entry) is not dict or not isinstance(entry.get("key"), str) or not entry["key"] or "record" not in entry:
        raise Failure(f'{where}: not an exported record ({{"key": "...", "record": {{...}}}})')
    problem = record_problem(entry["record"])
    if problem is not None:
        raise Failure(f"{where} (key {entry['key']!r}): {problem}")
    return entry["key"], entry["record"]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_line(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # a key with lone surrogates: orjson refuses them, json escapes them
        return json.dumps(value, ensure_ascii=True, allow_nan=False).encode() + b"\n"


def _same(a: Any, b: Any) -> bool:
    """Whether two records are the same JSON (``1`` and ``1.0`` differ; the order of members does not matter)."""
    return bool(orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS))


def _size(record: Any) -> int:
    return len(orjson.dumps(record))


def _saved_at(record: Any) -> float | None:
    saved_at = record.get("saved_at") if type(record) is dict else None
    return float(saved_at) if isinstance(saved_at, (int, float)) and not isinstance(saved_at, bool) else None


# -- output -----------------------------------------------------------------------------------


def _progress(items: Iterable[T], what: str, *, leave: bool = True, quiet: bool = False) -> Iterable[T]:
    """``items``, with a bar on stderr when it is a terminal (and not ``quiet``); untouched otherwise."""
    if quiet or not sys.stderr.isatty():
        return items
    return tqdm(items, desc=what, unit=" keys", leave=leave, dynamic_ncols=True)  # type: ignore[no-any-return]


def _ask(question: str, *, tty_only: bool = True) -> bool:
    """Whether the operator answers yes on stdin; ``False`` at its end (and, if ``tty_only``, when it is no terminal)."""
    if tty_only and not sys.stdin.isatty():
        return False
    sys.stderr.write(f"telesession: {question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        sys.stderr.write(answer.strip() + "\n")  # the terminal did not echo it
    return answer.strip().lower() in ("y", "yes")


def _shown(key: str) -> str:
    """``key`` as it is when printable; else as a JSON string, so that one key stays one line."""
    if key.isprintable() and not key.startswith('"') and key == key.strip():
        return key
    return json.dumps(key)


def _argument(key: str) -> str:
    """``key`` as a shell word for a command line that ends with it (after ``--`` if it starts with ``-``)."""
    return ("-- " if key.startswith("-") else "") + shlex.quote(key)


def _when(value: float | str | None) -> str:
    """A save time (seconds since the epoch, or a quarantine stamp) as ISO 8601 UTC."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.strptime(value, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    try:
        return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{value} (not a time)"


def _duration(seconds: float) -> str:
    """``seconds`` in the largest unit it fills: ``45 s``, ``3.5 h``, ``12 d``."""
    value, unit = seconds, "s"
    for name, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            value, unit = seconds / size, name
            break
    return f"{value:.1f} {unit}".replace(".0 ", " ") if value < 10 else f"{value:.0f} {unit}"


def _summary(head: str, counts: dict[str, int]) -> str:
    parts = [f"{n} {outcome}" for outcome, n in counts.items() if n]
    return head + (f": {', '.join(parts)}" if parts else "")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _file_size(source: IO[bytes]) -> int | None:
    """The size of a regular file (for the import's bar), ``None`` for a pipe or a terminal."""
    try:
        info = os.fstat(source.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) and info.st_size else None
