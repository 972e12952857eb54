"""The deployment files say what the binary does: the crontab's command runs
(as a dry run, against the simulator), and the task definition runs the
image the way `make container` proved it runs (user 65532, read-only root,
the export command, JSON logs)."""

import json
import shlex
import subprocess

from cfnlint.decode import decode

from conftest import ACCOUNT, AUDIT_BIN, ROOT, aws_env


def crontab_entry():
    lines = [
        line
        for line in (ROOT / "deploy" / "crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(lines) == 1, lines
    fields = lines[0].split(None, 6)
    # minute hour day month weekday, the user (/etc/cron.d), the command.
    return fields[:5], fields[5], fields[6]


def test_the_crontab_line_is_a_nightly_entry_for_an_unprivileged_user():
    when, user, command = crontab_entry()
    assert when[2:] == ["*", "*", "*"], "every day"
    assert 0 <= int(when[0]) < 60 and 0 <= int(when[1]) < 24
    assert user != "root"
    assert "/usr/local/bin/ssm-audit" in command


def test_the_crontab_command_runs(tmp_path, start_sim):
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({
        "role_name": "unused",
        "accounts": [{"account_id": ACCOUNT, "enabled_regions": ["eu-west-1", "us-east-1"]}],
    }))
    sim = start_sim("--accounts-file", accounts, "--sessions", "5")
    _, _, command = crontab_entry()
    words = shlex.split(command.split(">>")[0])
    # The host's pieces become the test's: no flock, this build, a local output.
    words = words[words.index("/usr/local/bin/ssm-audit"):]
    words[0] = str(AUDIT_BIN)
    words[words.index("--output") + 1] = str(tmp_path / "out")
    result = subprocess.run(
        [*words, "--endpoint-url", sim.endpoint, "--dry-run"],
        env=aws_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"pair {ACCOUNT}/eu-west-1" in result.stdout and f"pair {ACCOUNT}/us-east-1" in result.stdout
    assert sim.stats()["describe_calls"] == 0


def test_the_task_runs_the_image_as_make_container_proved_it_runs():
    template, matches = decode(str(ROOT / "deploy" / "nightly.yaml"))
    assert not matches
    container = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert container["User"] == "65532:65532"
    assert container["ReadonlyRootFilesystem"] is True
    assert container["Command"] == ["export"]
    env = {e["Name"]: e["Value"] for e in container["Environment"] if isinstance(e, dict) and "Name" in e}
    assert env["SSM_AUDIT_LOG_FORMAT"] == "json"
    # Every variable the task sets is one the binary reads.
    help_text = subprocess.run([AUDIT_BIN, "export", "--help"], capture_output=True, text=True, check=True).stdout
    named = set()
    for item in container["Environment"]:
        if isinstance(item, dict) and "Fn::If" in item:
            named.add(item["Fn::If"][1]["Name"])
        elif isinstance(item, dict):
            named.add(item["Name"])
    for name in named:
        assert f"env: {name}=" in help_text, f"{name} is not a variable of ssm-audit export"
