"""Fixtures for the checks with real third-party clients (AWS CLI, boto3,
pyarrow, DuckDB): each test gets its own simulator on a free port and its own
temp directory. Readiness is polled through the simulator's address file."""

import datetime
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"
SIM_BIN = TARGET / "ssm-sim"
AUDIT_BIN = TARGET / "ssm-audit"
ACCOUNT = "123456789012"

# Every simulator and every export runs on a clock that starts here and then
# advances in real time, so no check depends on the hour it runs at (the same
# instant as tests/it/common.rs).
CLOCK_START = datetime.datetime(2026, 11, 2, 11, 0, tzinfo=datetime.timezone.utc)
_STARTED = time.monotonic()


def clock_now():
    """The tests' clock now."""
    return CLOCK_START + datetime.timedelta(seconds=time.monotonic() - _STARTED)


def rfc3339(t):
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def aws_env(**extra):
    """A clean AWS environment: test credentials, no profile, no IMDS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SSM_AUDIT_"))}
    env.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_REGION="eu-west-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/nonexistent/config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/credentials",
        AWS_PAGER="",
        SSM_AUDIT_CLOCK_START=rfc3339(clock_now()),
    )
    env.update(extra)
    return env


class Sim:
    def __init__(self, proc, endpoint):
        self.proc = proc
        self.endpoint = endpoint

    def stats(self):
        import urllib.request

        with urllib.request.urlopen(self.endpoint + "/_stats") as resp:
            return json.load(resp)


def generate(tmp_path, count, seed=1, *extra):
    out = tmp_path / f"data-{seed}-{count}.jsonl"
    subprocess.run(
        [SIM_BIN, "generate", "--sessions", str(count), "--seed", str(seed),
         "--now", rfc3339(CLOCK_START), "--out", out, *extra],
        check=True,
    )
    return out, [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture
def start_sim(tmp_path):
    procs = []

    def start(*args):
        addr_file = tmp_path / f"endpoint-{len(procs)}"
        proc = subprocess.Popen(
            [SIM_BIN, "serve", "--addr-file", addr_file,
             "--clock-start", rfc3339(clock_now()), *map(str, args)],
            stdout=subprocess.DEVNULL,
        )
        procs.append(proc)
        deadline = time.monotonic() + 30
        while not addr_file.exists():
            assert proc.poll() is None, "ssm-sim exited before listening"
            assert time.monotonic() < deadline, "ssm-sim did not start listening"
            time.sleep(0.01)
        return Sim(proc, addr_file.read_text().strip())

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
