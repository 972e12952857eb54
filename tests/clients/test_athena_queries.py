"""Every auditors' query in schemas/queries, run in DuckDB (adapted only
where the dialects differ, as schemas/README.md writes down) against an
export of a known data set, with answers computed here independently."""

import datetime
import json
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import pytest

from conftest import AUDIT_BIN, ROOT, SIM_BIN, aws_env, clock_now, rfc3339

QUERIES = ROOT / "schemas" / "queries"
UTC = datetime.timezone.utc
# The documented dialect bridge (schemas/README.md).
DUCKDB_REPLACEMENTS = [("day_of_week(", "isodow(")]


def load_query(name):
    sql = (QUERIES / name).read_text()
    for athena, duck in DUCKDB_REPLACEMENTS:
        sql = sql.replace(athena, duck)
    return sql


def known_sessions():
    """Sessions with known answers: owners, targets, failures, long, night,
    weekend and Just-in-Time sessions, spread over two weeks."""
    today = clock_now().replace(hour=0, minute=0, second=0, microsecond=0)
    base = today - datetime.timedelta(days=20)
    owners = [f"arn:aws:iam::123456789012:user/{n}" for n in ("alice", "bob", "carol")]
    sessions = []
    n = 0
    for day in range(14):
        for hour in (3, 9, 12, 17, 19, 23):
            owner = owners[(day + hour) % 3]
            start = base + datetime.timedelta(days=day, hours=hour, minutes=7)
            minutes = [5, 30, 90, 200, 600][(day * hour + n) % 5]
            status = "Failed" if n % 11 == 0 else "Terminated"
            sessions.append({
                "SessionId": f"s-{n:04d}",
                "Target": f"i-{(n * 7) % 9:017x}",
                "Status": status,
                "StartDate": start.timestamp(),
                "EndDate": (start + datetime.timedelta(minutes=minutes)).timestamp(),
                "Owner": owner,
                "DocumentName": "SSM-SessionManagerRunShell",
                "Reason": "=cmd|' /C calc'!A0" if n % 13 == 0 else f"ticket {n}",
                "AccessType": "JustInTime" if n % 4 == 0 else "Standard",
            })
            n += 1
    # One owner fanning out over many targets on one day.
    burst_day = base + datetime.timedelta(days=5, hours=10)
    for i in range(8):
        start = burst_day + datetime.timedelta(minutes=i)
        sessions.append({
            "SessionId": f"fan-{i}", "Target": f"mi-{i:017x}", "Status": "Terminated",
            "StartDate": start.timestamp(), "EndDate": (start + datetime.timedelta(minutes=2)).timestamp(),
            "Owner": "arn:aws:sts::123456789012:assumed-role/Admin/mallory", "AccessType": "Standard",
        })
    return base, sessions


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("athena")
    base, sessions = known_sessions()
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(s) + "\n" for s in sessions))
    addr = tmp / "endpoint"
    sim = subprocess.Popen([SIM_BIN, "serve", "--data", data, "--addr-file", addr,
                            "--clock-start", rfc3339(clock_now())],
                           stdout=subprocess.DEVNULL)
    try:
        import time
        deadline = time.monotonic() + 30
        while not addr.exists():
            assert sim.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        out = tmp / "out"
        result = subprocess.run(
            [AUDIT_BIN, "export", "--output", out, "--endpoint-url", addr.read_text().strip()],
            capture_output=True, text=True, env=aws_env(),
        )
        assert result.returncode == 0, result.stderr
    finally:
        sim.kill()
        sim.wait()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"CREATE VIEW ssm_sessions AS SELECT * FROM read_parquet('{out}/sessions/*/*.parquet', "
        "hive_partitioning = true, hive_types = {'dt': 'VARCHAR'})"
    )
    return con, base, sessions


def start(s):
    return datetime.datetime.fromtimestamp(s["StartDate"], UTC)


def day(s):
    return start(s).strftime("%Y-%m-%d")


def window(base, first, last):
    return ((base + datetime.timedelta(days=first)).strftime("%Y-%m-%d"),
            (base + datetime.timedelta(days=last)).strftime("%Y-%m-%d"))


def in_days(s, lo, hi):
    return lo <= day(s) <= hi


def test_every_query_file_is_tested():
    tested = {"owner_sessions_in_period.sql", "target_sessions.sql", "long_sessions.sql", "failed_sessions.sql",
              "after_hours_sessions.sql", "just_in_time_sessions.sql", "sessions_per_owner_per_month.sql",
              "owners_on_many_targets.sql"}
    assert {p.name for p in QUERIES.glob("*.sql")} == tested


def test_sessions_of_an_owner_in_a_period(dataset):
    con, base, sessions = dataset
    lo, hi = window(base, 2, 8)
    owner = "arn:aws:iam::123456789012:user/bob"
    rows = con.execute(load_query("owner_sessions_in_period.sql"), [owner, lo, hi]).fetchall()
    expected = sorted(s["SessionId"] for s in sessions if s["Owner"] == owner and in_days(s, lo, hi))
    assert [r[0] for r in rows] == expected and expected


def test_sessions_on_a_target(dataset):
    con, base, sessions = dataset
    lo, hi = window(base, 0, 13)
    target = f"i-{3:017x}"
    rows = con.execute(load_query("target_sessions.sql"), [target, lo, hi]).fetchall()
    expected = [s["SessionId"] for s in sorted(sessions, key=lambda s: (s["StartDate"], s["SessionId"]))
                if s["Target"] == target]
    assert [r[0] for r in rows] == expected and expected


def test_sessions_longer_than_n_hours(dataset):
    con, base, sessions = dataset
    lo, hi = window(base, 0, 13)
    rows = con.execute(load_query("long_sessions.sql"), [3, lo, hi]).fetchall()
    expected = {s["SessionId"] for s in sessions if s["EndDate"] - s["StartDate"] > 3 * 3600}
    assert {r[0] for r in rows} == expected and expected
    assert [r[5] for r in rows] == sorted((r[5] for r in rows), reverse=True)


def test_failed_sessions(dataset):
    con, base, sessions = dataset
    lo, hi = window(base, 0, 13)
    rows = con.execute(load_query("failed_sessions.sql"), [lo, hi]).fetchall()
    assert {r[0] for r in rows} == {s["SessionId"] for s in sessions if s["Status"] == "Failed"}


def test_sessions_outside_business_hours(dataset):
    con, base, sessions = dataset
    lo, hi = window(base, 0, 13)
    rows = con.execute(load_query("after_hours_sessions.sql"), [lo, hi]).fetchall()
    expected = {s["SessionId"] for s in sessions
                if start(s).hour < 8 or start(s).hour >= 18 or start(s).isoweekday() in (6, 7)}
    assert {r[0] for r in rows} == expected
    assert any(start(s).isoweekday() in (6, 7) and 8 <= start(s).hour < 18 for s in sessions
               if s["SessionId"] in expected), "weekend daytime sessions are covered"


def test_just_in_time_sessions(dataset):
    con, base, sessions = dataset
    lo, hi = window(base, 0, 13)
    rows = con.execute(load_query("just_in_time_sessions.sql"), [lo, hi]).fetchall()
    assert {r[0] for r in rows} == {s["SessionId"] for s in sessions if s.get("AccessType") == "JustInTime"}


def test_sessions_per_owner_per_month(dataset):
    con, base, sessions = dataset
    lo, hi = window(base, 0, 13)
    rows = con.execute(load_query("sessions_per_owner_per_month.sql"), [lo, hi]).fetchall()
    expected = Counter((day(s)[:7], s["Owner"]) for s in sessions)
    assert {(r[0], r[1]): r[2] for r in rows} == dict(expected)


def test_owners_on_more_than_n_targets_in_a_day(dataset):
    con, base, sessions = dataset
    lo, hi = window(base, 0, 13)
    rows = con.execute(load_query("owners_on_many_targets.sql"), [lo, hi, 5]).fetchall()
    per_day = defaultdict(set)
    for s in sessions:
        per_day[(day(s), s["Owner"])].add(s["Target"])
    expected = {k: len(v) for k, v in per_day.items() if len(v) > 5}
    assert {(r[0], r[1]): r[2] for r in rows} == expected
    assert any("mallory" in owner for (_, owner) in expected)
