"""boto3's paginator and raw calls against ssm-sim."""

import datetime
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import aws_env, generate


@pytest.fixture
def client_for(monkeypatch):
    for key, value in aws_env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)

    def make(sim, service="ssm", attempts=1):
        return boto3.client(
            service,
            endpoint_url=sim.endpoint,
            region_name="eu-west-1",
            config=Config(retries={"max_attempts": attempts, "mode": "standard"}),
        )

    return make


def millis(value):
    if isinstance(value, datetime.datetime):
        return round(value.timestamp() * 1000)
    return round(value * 1000)


def test_the_paginator_returns_exactly_the_data_set(tmp_path, start_sim, client_for):
    path, data = generate(tmp_path, 650, 31, "--bursts", "2", "--burst-size", "90")
    ssm = client_for(start_sim("--data", path))
    got = []
    for state in ("Active", "History"):
        for page in ssm.get_paginator("describe_sessions").paginate(State=state, PaginationConfig={"PageSize": 40}):
            got.extend(page["Sessions"])
    assert len(got) == len(data)
    expected = {s["SessionId"]: s for s in data}
    for s in got:
        want = expected[s["SessionId"]]
        assert millis(s["StartDate"]) == round(want["StartDate"] * 1000)
        if "EndDate" in want:
            assert millis(s["EndDate"]) == round(want["EndDate"] * 1000)
        for field in ("Target", "Status", "Owner", "Reason", "DocumentName", "AccessType", "MaxSessionDuration"):
            assert s.get(field) == want.get(field), field


def test_time_filters_and_short_pages(tmp_path, start_sim, client_for):
    path, data = generate(tmp_path, 300, 32)
    ssm = client_for(start_sim("--data", path, "--limit-before-filter"))
    starts = sorted(s["StartDate"] for s in data)
    middle = datetime.datetime.fromtimestamp(starts[150], datetime.timezone.utc).replace(microsecond=0)
    after = middle.strftime("%Y-%m-%dT%H:%M:%SZ")
    pages = list(
        ssm.get_paginator("describe_sessions").paginate(
            State="History",
            Filters=[{"key": "InvokedAfter", "value": after}],
            PaginationConfig={"PageSize": 25},
        )
    )
    got = [s for p in pages for s in p["Sessions"]]
    expected = [s for s in data if s["StartDate"] >= middle.timestamp() and s.get("Status") not in ("Connected", "Connecting", "Disconnected")]
    assert len(got) == len(expected)
    assert any(len(p["Sessions"]) < 25 and "NextToken" in p for p in pages), "short pages with a token"


def test_tokens_are_bound_to_their_query_and_expire(tmp_path, start_sim, client_for):
    path, _ = generate(tmp_path, 100, 33)
    ssm = client_for(start_sim("--data", path, "--token-lifetime", "300ms"))
    first = ssm.describe_sessions(State="History", MaxResults=10)
    token = first["NextToken"]
    assert ssm.describe_sessions(State="History", MaxResults=10, NextToken=token)["Sessions"]
    for bad in (
        dict(State="Active", MaxResults=10, NextToken=token),
        dict(State="History", MaxResults=10, NextToken="not-a-token"),
    ):
        with pytest.raises(ClientError) as err:
            ssm.describe_sessions(**bad)
        assert err.value.response["Error"]["Code"] == "InvalidNextToken"
    time.sleep(0.4)  # outlive the token's 300 ms lifetime
    with pytest.raises(ClientError) as err:
        ssm.describe_sessions(State="History", MaxResults=10, NextToken=token)
    assert err.value.response["Error"]["Code"] == "InvalidNextToken"


def test_validation_errors(tmp_path, start_sim, client_for):
    ssm = client_for(start_sim("--sessions", "5"))
    cases = [
        (dict(State="History", MaxResults=201), "ValidationException"),
        (dict(State="History", Filters=[{"key": "InvokedAfter", "value": "yesterday"}]), "ValidationException"),
        (dict(State="History", Filters=[{"key": "Owner", "value": "x"}] * 7), "ValidationException"),
        (dict(State="History", Filters=[{"key": "Colour", "value": "x"}]), "InvalidFilterKey"),
    ]
    for params, code in cases:
        with pytest.raises(ClientError) as err:
            ssm.describe_sessions(**params)
        assert err.value.response["Error"]["Code"] == code, params
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_dropped_connections_surface_as_connection_errors(tmp_path, start_sim, client_for):
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

    sim = start_sim("--sessions", "5", "--drop-share", "1")
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        client_for(sim).describe_sessions(State="History")
    assert sim.stats()["dropped"] >= 1


def test_sts_identity(tmp_path, start_sim, client_for):
    sts = client_for(start_sim("--sessions", "0"), "sts")
    assert sts.get_caller_identity()["Account"] == "123456789012"
