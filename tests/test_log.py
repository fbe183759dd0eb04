"""The job log (``final`` only): format, recovery, torn tails, damage, locks, compaction."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jobqueue.final.config import FSYNC_POLICIES
from jobqueue.final.log.format import Op, Record, encode
from jobqueue.final.log.replay import read_log, replay
from jobqueue.vocabulary import Job, PersistenceError, Priority, Status
from tests.logutil import lines, mode, open_error, opened, recovered, summary, write_sample

pytestmark = pytest.mark.timeout(60)


def test_a_new_log_and_its_lock_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    old = os.umask(0)  # even with a permissive umask
    try:
        with opened(path):
            pass
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(Path(f"{path}.lock")) == 0o600
    assert lines(path)[0].startswith(b'{"seq":0,"op":"header","format":"jobqueue.final.log"')


@pytest.mark.parametrize("policy", FSYNC_POLICIES)
def test_an_enqueued_record_reaches_the_os_before_enqueued_returns(
    tmp_path: Path, policy: str
) -> None:
    path = tmp_path / "jobs.log"
    with opened(path, fsync=policy) as (log, _):
        log.enqueued(Job(id="acked"))
        # Another reader sees it at once: it is not in a buffer of this process.
        assert b'"id":"acked"' in path.read_bytes()


def test_started_writes_nothing(tmp_path: Path) -> None:
    """Replay re-runs an unfinished job whether or not it started: no record is owed."""
    path = tmp_path / "jobs.log"
    with opened(path) as (log, _):
        log.enqueued(Job(id="a"))
        log.started("a", 1)
        log.sync()
        assert [row.split(b'"op":')[1][:10] for row in lines(path)[1:]] == [b'"enqueued"']
    assert summary(recovered(path)) == [("a", Status.QUEUED, 0)]


def test_every_kind_of_record_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    got = write_sample(path)
    assert got == [
        ("a", Status.RETRYING, 1),
        ("b", Status.QUEUED, 0),
        ("e \u00e9\udc80\n", Status.QUEUED, 0),
        ("c", Status.COMPLETED, 0),
        ("d", Status.FAILED, 1),
    ]
    jobs = {s.job.id: s for s in recovered(path)}
    assert jobs["a"].job.payload == bytes(range(256))
    assert jobs["a"].job.priority is Priority.HIGH
    assert jobs["a"].error == "RuntimeError('boom')"
    assert jobs["a"].retry_at is not None
    assert jobs["a"].retry_at > time.time()
    assert jobs["b"].job.payload == b"\n\r\x00{}\"'"
    assert jobs["d"].error == "ValueError('bad')"
    assert path.read_bytes().isascii()  # human-readable: payloads are base64


def test_the_history_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    with opened(path, history=3) as (log, _):
        for i in range(10):
            log.enqueued(Job(id=f"j{i}"))
            log.completed(f"j{i}")
    assert [s.job.id for s in recovered(path, history=3)] == ["j7", "j8", "j9"]


def test_a_truncated_last_record_loads_at_every_byte_offset(tmp_path: Path) -> None:
    sample = tmp_path / "sample.log"
    write_sample(sample)
    data = sample.read_bytes()
    last = data.rindex(b"\n", 0, len(data) - 1) + 1
    before = summary(replay(data[:last], "x", 10_000).state.stored())
    path = tmp_path / "jobs.log"
    for cut in range(last, len(data)):
        path.write_bytes(data[:cut])
        with opened(path, fsync="never") as (log, jobs):
            assert summary(jobs) == before, f"cut at byte {cut}"
            assert log.size == last  # truncated to the last good record...
            log.enqueued(Job(id="next"))  # ...before anything new is appended
        again = read_log(path)
        assert again.torn == b"", f"cut at byte {cut}"
        assert "next" in again.state.live
    torn = sorted(tmp_path.glob("jobs.log.torn-*"))
    assert len(torn) == len(data) - last - 1  # cut == last leaves nothing torn
    assert all(mode(p) == 0o600 for p in torn)


def test_every_prefix_of_a_log_replays_its_complete_records(tmp_path: Path) -> None:
    write_sample(tmp_path / "jobs.log")
    data = (tmp_path / "jobs.log").read_bytes()
    ends = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]
    for cut in range(len(data) + 1):
        good = max((end for end in ends if end <= cut), default=0)
        got = replay(data[:cut], "x", 10_000)
        assert got.good_bytes == good
        assert summary(got.state.stored()) == summary(
            replay(data[:good], "x", 10_000).state.stored()
        )


@pytest.mark.parametrize(
    "damage",
    ["flip a digit", "change a field", "drop a line", "repeat a line", "garbage"],
)
def test_damage_before_the_last_line_names_the_line_and_leaves_the_file(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "jobs.log"
    write_sample(path)
    rows = lines(path)
    third = rows[2]
    if damage == "flip a digit":  # still valid JSON: only the checksum sees it
        rows[2] = third.replace(b'"seq":2', b'"seq":3', 1)
    elif damage == "change a field":
        rows[2] = third.replace(b'"MEDIUM"', b'"LOW"', 1)
    elif damage == "drop a line":
        del rows[2]
    elif damage == "repeat a line":
        rows.insert(2, rows[1])
    else:
        rows[2] = b"\x00\x00 not json at all\n"
    assert rows[2] != third or damage == "repeat a line"
    path.write_bytes(b"".join(rows))
    before = path.read_bytes()
    assert re.match(rf"{path}: line 3 \(byte \d+\) is damaged", open_error(path))
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("jobs.log.torn-*"))
    # ...and the failed open released the lock: the file can be fixed and reopened.
    path.write_bytes(b"".join(lines(path)[:2]))
    assert [s.job.id for s in recovered(path)] == ["a"]


def test_a_file_that_is_not_a_log_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"my notes")  # no newline: would look torn if it were a log
    assert "not a jobqueue log" in open_error(path)
    assert path.read_bytes() == b"my notes"


def test_a_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    line = encode(Record(Op.HEADER), 0).replace(b'"version":1', b'"version":2')
    body = line[: line.rindex(b',"crc"')]
    path.write_bytes(body + b',"crc":"%08x"}\n' % zlib.crc32(body))
    assert "format version 2" in open_error(path)


# -- hypothesis: random damage never escapes as anything but PersistenceError ------------

_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "cut", "insert", "delete"]),
        st.floats(0, 1),  # where, as a fraction of the length
        st.binary(min_size=1, max_size=8),  # what to insert, or how much to delete
    ),
    min_size=1,
    max_size=3,
)


def lines_of(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _damage(data: bytes, edits: list[tuple[str, float, bytes]]) -> bytes:
    damaged = bytearray(data)
    for kind, where, junk in edits:
        at = int(where * len(damaged))
        if kind == "flip" and at < len(damaged):
            damaged[at] ^= 1 << (junk[0] % 8)
        elif kind == "cut":
            del damaged[at:]
        elif kind == "insert":
            damaged[at:at] = junk
        else:
            del damaged[at : at + len(junk)]
    return bytes(damaged)


@pytest.fixture(scope="module")
def sample_log(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("sample") / "jobs.log"
    write_sample(path)
    return path.read_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=_EDITS)
def test_random_damage_loads_a_good_prefix_or_raises_persistence_error(
    sample_log: bytes, edits: list[tuple[str, float, bytes]]
) -> None:
    damaged = _damage(sample_log, edits)
    try:
        got = replay(damaged, "fuzz.log", 10_000)
    except PersistenceError:
        return
    # It loaded: then it loaded exactly the original's first records, no more.
    good = damaged[: got.good_bytes]
    assert sample_log.startswith(good), "loaded a record the original does not have"
    want = replay(good, "x", 10_000)
    assert summary(got.state.stored()) == summary(want.state.stored())


@settings(max_examples=40, deadline=None)
@given(edits=_EDITS)
def test_random_damage_on_disk_opens_or_raises_persistence_error(
    sample_log: bytes, edits: list[tuple[str, float, bytes]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jobs.log"
        path.write_bytes(_damage(sample_log, edits))
        try:
            jobs = recovered(path, fsync="never")
        except PersistenceError:
            return
        assert summary(jobs) == summary(recovered(path, fsync="never"))  # repaired for good
        assert read_log(path).torn == b""


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_FIELDS = st.sampled_from(
    [
        "seq",
        "op",
        "id",
        "priority",
        "attempts",
        "created",
        "handler",
        "payload",
        "attempt",
        "retry_at",
        "error",
        "format",
        "version",
    ]
)


_VALID: dict[str, dict[str, object]] = {
    "enqueued": {
        "id": "a",
        "priority": "HIGH",
        "attempts": 0,
        "created": 1.5,
        "handler": None,
        "payload": "aGk=",
    },
    "retrying": {"id": "a", "attempts": 1, "retry_at": 2.5, "error": "e"},
    "completed": {"id": "a"},
    "failed": {"id": "a", "attempts": 1, "error": "e"},
    "header": {"format": "jobqueue.final.log", "version": 1},
}


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from([*_VALID, "unknown"]),
    changes=st.dictionaries(_FIELDS, _JSON, max_size=2),
    dropped=st.sets(_FIELDS, max_size=1),
)
@example(op="enqueued", changes={"payload": 5}, dropped=set())
@example(op="retrying", changes={"retry_at": True}, dropped=set())
@example(op="header", changes={"version": "1"}, dropped=set())
@example(op="retrying", changes={"attempts": 1_000_002}, dropped=set())  # past Job's bound
def test_a_checksummed_line_with_wrong_fields_is_damage_not_a_crash(
    sample_log: bytes, op: str, changes: dict[str, object], dropped: set[str]
) -> None:
    """A line can pass its checksum and still be nonsense (a bug wrote it)."""
    fields = {**_VALID.get(op, {}), **changes}
    for name in dropped:
        fields.pop(name, None)
    rows = lines_of(sample_log)
    for at in (1, len(rows)):  # in the middle, and as the last line
        text = json.dumps({"seq": at, "op": op, **fields}, separators=(",", ":"))
        body = text[:-1].encode()
        line = body + b',"crc":"%08x"}\n' % zlib.crc32(body)
        data = b"".join([*rows[:at], line, *rows[at + 1 :]])
        with contextlib.suppress(PersistenceError):
            replay(data, "fuzz.log", 10_000)
