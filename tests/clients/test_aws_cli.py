"""The AWS CLI, which paginates by itself, against ssm-sim."""

import json
import subprocess

from conftest import ACCOUNT, ROOT, aws_env, generate

AWS = str(ROOT / ".venv" / "bin" / "aws")


def aws(sim, *args, **env):
    return subprocess.run(
        [AWS, *args, "--endpoint-url", sim.endpoint, "--output", "json"],
        capture_output=True,
        text=True,
        env=aws_env(**env),
    )


def sessions(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["Sessions"]


def by_state(data, state):
    active = {"Connected", "Connecting", "Disconnected"}
    return [s for s in data if (s.get("Status") in active) == (state == "Active")]


def test_the_cli_lists_exactly_the_data_set_in_both_states(tmp_path, start_sim):
    path, data = generate(tmp_path, 700, 21)
    sim = start_sim("--data", path)
    for state in ("History", "Active"):
        got = sessions(aws(sim, "ssm", "describe-sessions", "--state", state))
        expected = by_state(data, state)
        assert len(got) == len(expected)
        assert {json.dumps(s, sort_keys=True) for s in got} == {json.dumps(s, sort_keys=True) for s in expected}
        starts = [s["StartDate"] for s in got]
        assert starts == sorted(starts, reverse=True), "newest first"


def test_page_size_and_filters_behave(tmp_path, start_sim):
    path, data = generate(tmp_path, 300, 22)
    sim = start_sim("--data", path)
    before = sim.stats()["describe_calls"]
    got = sessions(aws(sim, "ssm", "describe-sessions", "--state", "History", "--page-size", "7"))
    history = by_state(data, "History")
    assert len(got) == len(history)
    assert sim.stats()["describe_calls"] - before >= len(history) // 7

    owner = history[0]["Owner"]
    got = sessions(aws(sim, "ssm", "describe-sessions", "--state", "History", "--filters", f"key=Owner,value={owner}"))
    assert got and all(s["Owner"] == owner for s in got)
    assert len(got) == sum(1 for s in history if s["Owner"] == owner)

    got = sessions(aws(sim, "ssm", "describe-sessions", "--state", "History", "--max-items", "5"))
    assert len(got) == 5


def test_errors_reach_the_cli_with_their_codes(tmp_path, start_sim):
    path, _ = generate(tmp_path, 20, 23)
    sim = start_sim("--data", path)
    bad_state = aws(sim, "ssm", "describe-sessions", "--state", "Dormant")
    assert bad_state.returncode != 0 and "(ValidationException)" in bad_state.stderr
    bad_key = aws(sim, "ssm", "describe-sessions", "--state", "Active", "--filters", "key=Colour,value=red")
    assert bad_key.returncode != 0 and "(InvalidFilterKey)" in bad_key.stderr

    throttled = start_sim("--data", path, "--rate-limit", "0.001", "--burst", "1")
    assert aws(throttled, "ssm", "describe-sessions", "--state", "History").returncode == 0
    second = aws(throttled, "ssm", "describe-sessions", "--state", "History", AWS_MAX_ATTEMPTS="1")
    assert second.returncode != 0 and "(ThrottlingException)" in second.stderr and "Rate exceeded" in second.stderr

    failing = start_sim("--data", path, "--error-share", "1")
    result = aws(failing, "ssm", "describe-sessions", "--state", "History", AWS_MAX_ATTEMPTS="2")
    assert result.returncode != 0 and "(InternalServerError)" in result.stderr
    assert failing.stats()["faults"] == 2


def test_the_cli_gets_the_configured_account(tmp_path, start_sim):
    sim = start_sim("--sessions", "0", "--account-id", "210987654321")
    result = aws(sim, "sts", "get-caller-identity")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Account"] == "210987654321"
    assert ACCOUNT != "210987654321"
