"""The hostile corpus (tests/hostile/corpus.json) through the whole product:
the simulator serves sessions whose creator-controlled fields hold every
string of it; export must keep them exactly (pyarrow reads them back), the
CSV report must neutralise every formula (Python's csv module reads it), the
JSON report must keep them exactly, the HTML report must show them as text
and run none of them (Chromium), and verify must keep one finding per line
whatever a file name holds."""

import csv
import datetime
import io
import json
import subprocess

import pyarrow.parquet as pq

from conftest import AUDIT_BIN, ROOT, aws_env, clock_now
from test_report import Elements, chromium, exported

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def corpus():
    groups = json.loads((ROOT / "tests" / "hostile" / "corpus.json").read_text())
    strings = []
    for name, values in groups.items():
        if name.startswith("_"):
            continue
        for value in values:
            strings.append("A" * 8192 if value == "A_8192" else value)
    return strings


def hostile_sessions():
    base = clock_now().replace(minute=0, second=0, microsecond=0) - datetime.timedelta(days=3)
    sessions = []
    for i, text in enumerate(corpus()):
        start = base + datetime.timedelta(minutes=7 * i)
        sessions.append({
            # Identifiers with .. and / name no file: keep them exactly too.
            "SessionId": f"{text[:40]}-{i:03d}" if i % 3 == 0 else f"user-{i:03d}",
            "Target": text if i % 2 else f"i-{i:017x}",
            "Status": "Terminated",
            "StartDate": start.timestamp(),
            "EndDate": (start + datetime.timedelta(minutes=5)).timestamp(),
            "Owner": text if i % 4 == 1 else "arn:aws:iam::123456789012:user/alice",
            "Reason": text,
            "DocumentName": text if i % 5 == 2 else "SSM-SessionManagerRunShell",
        })
    return sessions


def must_be_neutralised(cell):
    stripped = cell.lstrip("".join(chr(c) for c in range(0, 33)) + "\x7f\x85\xa0")
    return (cell and (ord(cell[0]) < 32 or 0x7f <= ord(cell[0]) <= 0x9f)) or stripped.startswith(FORMULA_TRIGGERS)


def report(out, tmp_path, fmt):
    path = tmp_path / f"report.{fmt}"
    result = subprocess.run([AUDIT_BIN, "report", "--input", out, "--format", fmt, "--out", path],
                            capture_output=True, text=True, env=aws_env())
    assert result.returncode == 0, result.stderr
    return path


def test_the_hostile_corpus_survives_export_and_every_report_format(tmp_path, start_sim):
    sessions = hostile_sessions()
    out = exported(tmp_path, start_sim, sessions)
    by_id = {s["SessionId"]: s for s in sessions}

    # Export keeps every byte, NUL and escapes included.
    rows = []
    for path in sorted((out / "sessions").rglob("*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    assert len(rows) == len(sessions)
    for row in rows:
        sent = by_id[row["session_id"]]
        assert (row["reason"], row["target"], row["owner"], row["document_name"]) == (
            sent["Reason"], sent["Target"], sent["Owner"], sent["DocumentName"])

    # CSV: what a spreadsheet would run gets an apostrophe; the rest is exact.
    # Bytes, not read_text: universal newlines would turn a CR into an LF.
    text = report(out, tmp_path, "csv").read_bytes().decode("utf-8-sig")
    table = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(table) == len(sessions)
    checked = 0
    for line in table:
        session_id = line["session_id"]
        original = by_id.get(session_id) or by_id[session_id.removeprefix("'")]
        for column, field in [("reason", "Reason"), ("target", "Target"), ("owner", "Owner"),
                              ("document_name", "DocumentName")]:
            value = original[field]
            expected = "'" + value if must_be_neutralised(value) else value
            assert line[column] == expected, (column, value)
            checked += must_be_neutralised(value)
    assert checked > 20, "the corpus holds formulas in every variant"

    # JSON: exact.
    document = json.loads(report(out, tmp_path, "json").read_text())
    reasons = sorted(s["reason"] for s in document["sessions"])
    assert reasons == sorted(s["Reason"] for s in sessions)

    # HTML: every string shows as text, none runs.
    page_path = report(out, tmp_path, "html")
    dom = chromium(f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page_path.as_uri())
    assert dom.returncode == 0, dom.stderr
    page = Elements()
    page.feed(dom.stdout)
    assert "script" not in page.tags
    assert page.tags.count("style") == 1, "only the report's own style sheet"
    assert not [name for name, _ in page.attrs if name.startswith("on")], "no event handler from the data"
    assert ("data-pwned", "1") not in page.attrs
    assert "<h1>forged</h1>" not in dom.stdout
    assert "</td></tr></table><h1>forged</h1>" in page.by_id["all-sessions"]
    assert page.by_id["total-sessions"] == str(len(sessions))


def test_verify_keeps_one_finding_per_line_whatever_a_file_name_holds(tmp_path, start_sim):
    out = exported(tmp_path, start_sim, hostile_sessions()[:5])
    clean = subprocess.run([AUDIT_BIN, "verify", "--output", out], capture_output=True, text=True, env=aws_env())
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # A file planted with a name that would forge a line and colour the terminal.
    day = next((out / "sessions").iterdir())
    planted = day / "x\nOK        everything is fine \x1b[32m.parquet"
    planted.write_bytes(b"not parquet")
    dirty = subprocess.run([AUDIT_BIN, "verify", "--output", out], capture_output=True, text=True, env=aws_env())
    assert dirty.returncode == 6, dirty.stdout + dirty.stderr
    lines = dirty.stdout.splitlines()
    assert len(lines) == 3, lines  # the finding, the chain, the summary
    assert lines[1].startswith("chain     ")
    assert lines[0].startswith("UNLISTED  ") and "\\n" in lines[0] and "\\u{1b}" in lines[0]
    assert "\x1b" not in dirty.stdout
    # A report of that data set names the file it left out, and still counts the rest.
    result = subprocess.run([AUDIT_BIN, "report", "--input", out, "--format", "json", "--out", tmp_path / "r.json"],
                            capture_output=True, text=True, env=aws_env())
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "r.json").read_text())
    assert [f["key"] for f in document["skipped_files"]] == [str(planted.relative_to(out))]
    assert document["totals"]["sessions"] == 5
    assert "\x1b" not in result.stderr
