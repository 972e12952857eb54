"""Least privilege, checked against what the code really calls.

`make test` runs the integration tests with SSM_AUDIT_RECORD_OPERATIONS set:
every simulator (SSM, STS, Organizations, Account) and every moto_server
(S3, KMS) they start records each request it serves. Each request's user
agent names the subcommand (`app/ssm-audit-export`), and the simulator tells
the job's own credentials from a member role's. Here:

- every operation an export made with its own credentials is allowed by the
  task role's policy (deploy/nightly.yaml, ExportPolicy), every one made
  through a member role by deploy/member-role.yaml, and every one verify,
  coverage or report made by the auditors' policy;
- each of those policies grants nothing the runs did not use;
- parliament finds nothing in any policy of the templates.
"""

import base64
import json
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import parliament
import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RECORDED = Path(os.environ.get("SSM_AUDIT_RECORD_OPERATIONS", ROOT / "target" / "aws-operations"))

# Operations no IAM policy can grant or deny.
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}

# Sample values for the templates' parameters and attributes, so the
# policies parliament reads are concrete.
SAMPLES = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "111122223333",
    "AWS::StackName": "ssm-audit",
    "AWS::URLSuffix": "amazonaws.com",
    "OutputBucket": "audit-bucket",
    "OutputPrefix": "ssm-audit",
    "MemberRoleName": "SsmAuditReader",
    "SigningKeyArn": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "OutputKmsKeyArn": "arn:aws:kms:eu-west-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321",
    "ChainHeadBucket": "audit-heads",
    "ImageRepositoryName": "ssm-audit",
    "AuditRoleArn": "arn:aws:iam::111122223333:role/ssm-audit-TaskRole",
    "ExternalId": "example-external-id",
}


def sample_attribute(name):
    resource, _, attribute = name.partition(".")
    if resource == "LogGroup":
        return "arn:aws:logs:eu-west-1:111122223333:log-group:/ssm-audit/ssm-audit"
    if resource == "DeadLetterQueue":
        return "arn:aws:sqs:eu-west-1:111122223333:ssm-audit-dlq"
    if resource == "Cluster":
        return "arn:aws:ecs:eu-west-1:111122223333:cluster/ssm-audit"
    if resource == "TaskFailedRule":
        return "arn:aws:events:eu-west-1:111122223333:rule/ssm-audit-task-failed"
    if resource == "AlarmTopic":
        return "arn:aws:sns:eu-west-1:111122223333:ssm-audit-alarms"
    return f"arn:aws:iam::111122223333:role/ssm-audit-{resource}"


def render(node):
    """The template fragment with every condition true (every feature on)
    and every reference replaced by a sample value."""
    if isinstance(node, list):
        out = [render(item) for item in node]
        return [item for item in out if item is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, value), = node.items()
        if key == "Fn::If":
            return render(value[1])
        if key == "Ref":
            if value == "AWS::NoValue":
                return NO_VALUE
            return SAMPLES.get(value) or sample_attribute(value)
        if key == "Fn::Sub":
            text = value if isinstance(value, str) else value[0]
            return re.sub(
                r"\$\{([^}!]+)\}",
                lambda m: SAMPLES.get(m.group(1)) or sample_attribute(m.group(1)),
                text,
            )
        if key == "Fn::GetAtt":
            target = value if isinstance(value, str) else ".".join(value)
            return sample_attribute(target)
    out = {k: render(v) for k, v in node.items()}
    return {k: v for k, v in out.items() if v is not NO_VALUE}


NO_VALUE = object()


def template(name):
    loaded, matches = decode(str(DEPLOY / name))
    assert not matches, matches
    return loaded


def policies(name):
    """Every policy document of a template: (where, rendered document)."""
    found = []
    for logical_id, resource in template(name)["Resources"].items():
        props = resource.get("Properties", {})
        if "PolicyDocument" in props:
            found.append((logical_id, render(props["PolicyDocument"])))
        for policy in props.get("Policies", []):
            found.append((f"{logical_id}/{policy['PolicyName']}", render(policy["PolicyDocument"])))
    return found


def policy(name, where):
    return dict(policies(name))[where]


def granted(document):
    """The actions a policy's Allow statements grant."""
    actions = set()
    for statement in document["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def allows(document, action):
    return any(re.fullmatch(g.replace("*", ".*"), action, re.IGNORECASE) for g in granted(document))


# ---------------------------------------------------------------- recordings


def moto_requests(path):
    """moto's recording: JSON objects one after another. moto's threads can
    write them without a newline between, so they are read by position."""
    text = path.read_text()
    decoder = json.JSONDecoder()
    at = 0
    while (start := text.find('{"headers"', at)) >= 0:
        try:
            entry, at = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            at = start + 1
            continue
        yield entry


def app_of(headers):
    agent = " ".join(v for k, v in headers.items() if k.lower() in ("x-amz-user-agent", "user-agent"))
    found = re.search(r"\bapp/(\S+)", agent)
    return found.group(1) if found else None


def s3_action(method, url, headers):
    """The IAM action an S3 REST request needs (path-style addressing)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    on_object = "/" in parts.path.strip("/")
    operation = query.get("x-id")
    if operation:
        named = {
            "GetObject": "s3:GetObject",
            "PutObject": "s3:PutObject",
            "DeleteObject": "s3:DeleteObject",
            "UploadPart": "s3:PutObject",
            "CopyObject": "s3:PutObject",
        }
        return named.get(operation, f"s3:{operation}")
    if not on_object:
        if method in ("GET", "HEAD") and not (set(query) - {"list-type", "prefix", "continuation-token", "delimiter", "max-keys", "start-after", "encoding-type", "fetch-owner"}):
            return "s3:ListBucket"
        if "versions" in query:
            return "s3:ListBucketVersions"
        if method == "POST" and "delete" in query:
            return "s3:DeleteObject"
        return f"s3:?{method} bucket {sorted(query)}"
    if method == "HEAD" or (method == "GET" and not query):
        return "s3:GetObjectVersion" if "versionId" in query else "s3:GetObject"
    if method == "POST" and ("uploads" in query or "uploadId" in query):
        return "s3:PutObject"
    if method == "DELETE" and "uploadId" in query:
        return "s3:AbortMultipartUpload"
    return f"s3:?{method} object {sorted(query)}"


def recorded():
    """{(app, principal): {action}} over every recording of the test run."""
    assert RECORDED.is_dir() and any(RECORDED.iterdir()), (
        f"no recorded AWS operations in {RECORDED}: run `make test-rust` (it sets "
        "SSM_AUDIT_RECORD_OPERATIONS) before this check"
    )
    calls = {}

    def add(app, principal, action):
        calls.setdefault((app, principal), set()).add(action)

    for log in RECORDED.glob("sim-*.log"):
        for line in log.read_text().splitlines():
            action, app, principal = line.split("\t")
            add(app, principal, action)
    for log in RECORDED.glob("moto-*.jsonl"):
        encrypted_by_kms = False
        readers = set()
        for entry in moto_requests(log):
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            app = app_of(entry["headers"])
            if app is None:
                continue  # the tests' own set-up and read-back
            target = headers.get("x-amz-target", "")
            if target.startswith("TrentService."):
                add(app, "caller", "kms:" + target.split(".", 1)[1])
                continue
            action = s3_action(entry["method"], entry["url"], headers)
            add(app, "caller", action)
            # With SSE-KMS, S3 calls KMS with the caller's permissions.
            if headers.get("x-amz-server-side-encryption") == "aws:kms":
                encrypted_by_kms = True
                add(app, "caller", "kms:GenerateDataKey")
            if action == "s3:GetObject":
                readers.add(app)
        if encrypted_by_kms:
            for app in readers:
                add(app, "caller", "kms:Decrypt")
    return calls


@pytest.fixture(scope="module")
def calls():
    return recorded()


def used_by(calls, apps, principal):
    used = set()
    for (app, who), actions in calls.items():
        if app in apps and who == principal:
            used |= actions
    return used - NEEDS_NO_PERMISSION


# -------------------------------------------------------------------- checks

ROLES = [
    ("export, its own credentials", "nightly.yaml", "ExportPolicy", {"ssm-audit-export"}, "caller"),
    ("export, through a member role", "member-role.yaml", "MemberRole/read-sessions", {"ssm-audit-export"}, "assumed"),
    (
        "verify, coverage and report",
        "nightly.yaml",
        "AuditorPolicy",
        {"ssm-audit-verify", "ssm-audit-coverage", "ssm-audit-report"},
        "caller",
    ),
]


@pytest.mark.parametrize("what,name,where,apps,principal", ROLES, ids=[r[0] for r in ROLES])
def test_every_call_is_allowed_and_nothing_else_is(calls, what, name, where, apps, principal):
    document = policy(name, where)
    used = used_by(calls, apps, principal)
    assert used, f"the tests recorded no call for {what}"
    denied = sorted(a for a in used if not allows(document, a))
    assert not denied, f"{name} {where} denies what {what} calls: {denied}"
    unused = sorted(granted(document) - used)
    assert not unused, f"{name} {where} grants what {what} never called: {unused}"


def test_the_recordings_name_only_known_operations(calls):
    unknown = sorted({a for actions in calls.values() for a in actions if "?" in a})
    assert not unknown, f"requests the check cannot map to an IAM action: {unknown}"


def test_the_job_touches_the_data_set_prefix_only():
    document = policy("nightly.yaml", "ExportPolicy")
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if not any(a.startswith("s3:") for a in actions):
            continue
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            if resource.endswith("/*"):
                assert resource.endswith("/ssm-audit/*"), (statement["Sid"], resource)
            else:
                # The bucket itself: listing, held to the prefix by s3:prefix.
                assert statement["Condition"]["StringLike"]["s3:prefix"] == ["ssm-audit/*"], statement


@pytest.mark.parametrize("name", ["nightly.yaml", "member-role.yaml"])
def test_parliament_finds_nothing(name):
    findings = []
    for where, document in policies(name):
        for finding in parliament.analyze_policy_string(json.dumps(document)).findings:
            findings.append(f"{where}: {finding.issue} {finding.detail} {finding.location}")
    assert not findings, "\n".join(findings)
