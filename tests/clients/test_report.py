"""The HTML report in a real browser (headless Chromium from Debian), and a
report uploaded to S3 (moto) and fetched through its presigned link by a
client with no AWS credentials at all."""

import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from html.parser import HTMLParser

import pytest

from conftest import AUDIT_BIN, ROOT, aws_env, clock_now

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
UTC = datetime.timezone.utc


def hostile_sessions():
    # On the pinned clock (11:00 UTC) twelve sessions nine hours apart span
    # five UTC days, whatever the hour the test runs at.
    now = clock_now().replace(minute=0, second=0, microsecond=0)
    base = now - datetime.timedelta(days=5)
    sessions = []
    for i in range(12):
        start = base + datetime.timedelta(hours=9 * i)
        sessions.append({
            "SessionId": f"s-{i:02d}",
            "Target": f"i-{i % 3:017x}",
            "Status": "Failed" if i % 5 == 0 else "Terminated",
            "StartDate": start.timestamp(),
            "EndDate": (start + datetime.timedelta(minutes=10 * (i + 1))).timestamp(),
            "Owner": "arn:aws:iam::123456789012:user/alice" if i % 2 else "arn:aws:iam::123456789012:user/bob",
            "Reason": f"routine work {i}",
            "AccessType": "JustInTime" if i % 4 == 0 else "Standard",
        })
    sessions[1]["Reason"] = "<script>document.title='pwned'</script>"
    sessions[2]["Owner"] = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
    sessions[3]["Reason"] = "Überprüfung \"quoted\", & <b>bold</b>"
    return sessions


def exported(tmp_path, start_sim, sessions):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(s) + "\n" for s in sessions))
    sim = start_sim("--data", data)
    out = tmp_path / "out"
    result = subprocess.run([AUDIT_BIN, "export", "--output", out, "--endpoint-url", sim.endpoint],
                            capture_output=True, text=True, env=aws_env())
    assert result.returncode == 0, result.stderr
    return out


def chromium(*args):
    assert CHROMIUM, "chromium is not installed: .ci/run installs Debian's chromium package"
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, *args], capture_output=True, text=True, timeout=120)


class Elements(HTMLParser):
    """Collects element names, attributes and the text of elements with ids."""

    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.by_id, self._open = [], [], {}, []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)
        self._open.append(dict(attrs).get("id"))

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for element_id in self._open:
            if element_id:
                self.by_id[element_id] = self.by_id.get(element_id, "") + data


def test_the_html_report_renders_offline_with_the_expected_figures_and_runs_no_data(tmp_path, start_sim):
    sessions = hostile_sessions()
    out = exported(tmp_path, start_sim, sessions)
    report = tmp_path / "report.html"
    result = subprocess.run([AUDIT_BIN, "report", "--input", out, "--format", "html", "--out", report],
                            capture_output=True, text=True, env=aws_env())
    assert result.returncode == 0, result.stderr
    source = report.read_text()
    assert "<script" not in source.lower().replace("&lt;script", "")
    assert not re.search(r"(src|href)=\"(https?:)?//", source), "no network fetches"

    profile = tmp_path / "profile"
    dom = chromium(f"--user-data-dir={profile}", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr
    page = Elements()
    page.feed(dom.stdout)
    assert "script" not in page.tags
    assert ("data-pwned", "1") not in page.attrs, "an onerror handler from the data ran"
    title = re.search(r"<title>(.*?)</title>", dom.stdout, re.S).group(1)
    assert "pwned" not in title, "a script from the data ran"
    assert page.by_id["total-sessions"] == str(len(sessions))
    assert page.by_id["total-failed"] == str(sum(1 for s in sessions if s["Status"] == "Failed"))
    assert page.by_id["total-jit"] == str(sum(1 for s in sessions if s["AccessType"] == "JustInTime"))
    assert page.by_id["total-owners"] == "3"
    all_rows = page.by_id["all-sessions"]
    assert "<script>document.title='pwned'</script>" in all_rows, "hostile text shows as text"
    assert "Überprüfung \"quoted\", & <b>bold</b>" in all_rows
    assert dom.stdout.count('class="bar"') == len(re.findall(r'data-day="', dom.stdout)) == 5

    shot = tmp_path / "report.png"
    taken = chromium(f"--user-data-dir={profile}", "--window-size=1280,1800", f"--screenshot={shot}", report.as_uri())
    assert taken.returncode == 0, taken.stderr
    assert shot.stat().st_size > 20_000, "a rendered page, not a blank one"
    keep = os.environ.get("SSM_AUDIT_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto(tmp_path):
    port = free_port()
    proc = subprocess.Popen([ROOT / ".venv/bin/moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.05)
    yield endpoint
    proc.kill()
    proc.wait()


def test_a_report_uploaded_to_s3_downloads_through_its_presigned_link(tmp_path, start_sim, moto):
    import boto3

    out = exported(tmp_path, start_sim, hostile_sessions())
    env = aws_env(AWS_ENDPOINT_URL_S3=moto)
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket="audit-reports")
    result = subprocess.run(
        [AUDIT_BIN, "report", "--input", out, "--format", "csv", "--out", "s3://audit-reports/q3/sessions.csv",
         "--presign", "2d", "--s3-force-path-style"],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith(moto) and "X-Amz-Expires=172800" in url and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url) as response:  # no credentials: the link is the key
        body = response.read().decode("utf-8-sig")
    assert body.startswith("session_id,account_id,region")
    assert body.count("\r\n") == len(hostile_sessions()) + 1


def test_a_link_signed_with_credentials_that_expire_first_says_how_long_it_works(tmp_path, start_sim, moto):
    import boto3

    out = exported(tmp_path, start_sim, hostile_sessions())
    boto3.client("s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket="short-lived")
    # Credentials as SSO or a role give them: they expire in an hour.
    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    process = tmp_path / "credentials.sh"
    process.write_text("#!/bin/sh\necho '" + json.dumps({
        "Version": 1, "AccessKeyId": "test", "SecretAccessKey": "test", "SessionToken": "token",
        "Expiration": expires}) + "'\n")
    process.chmod(0o755)
    config = tmp_path / "config"
    config.write_text(f"[default]\ncredential_process = {process}\nregion = us-east-1\n")
    env = aws_env(AWS_ENDPOINT_URL_S3=moto, AWS_CONFIG_FILE=str(config))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    result = subprocess.run(
        [AUDIT_BIN, "report", "--input", out, "--format", "csv", "--out", "s3://short-lived/q3.csv",
         "--presign", "2d", "--s3-force-path-style"],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "the link works for 59m" in result.stderr or "the link works for 1h" in result.stderr, result.stderr
    assert "not the 2days asked" in result.stderr, result.stderr
