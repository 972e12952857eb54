"""Fixtures for the checks with real third-party clients (AWS CLI, boto3,
pyarrow, DuckDB): each test gets its own simulator on a free port and its own
temp directory. Readiness is polled through the simulator's address file."""

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
        [SIM_BIN, "generate", "--sessions", str(count), "--seed", str(seed), "--out", out, *extra],
        check=True,
    )
    return out, [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture
def start_sim(tmp_path):
    procs = []

    def start(*args):
        addr_file = tmp_path / f"endpoint-{len(procs)}"
        proc = subprocess.Popen(
            [SIM_BIN, "serve", "--addr-file", addr_file, *map(str, args)],
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
