"""The baseline a careful user would write: boto3's DescribeSessions
paginator over both lists, deduplicated by SessionId (the newest observation
wins), written as one Parquet file with pyarrow. Used by
scripts/bench-adaptive.sh to compare ssm-audit with it on the same data.

    python scripts/boto3_export.py --endpoint-url URL --out sessions.parquet
"""

import argparse
import datetime

import boto3
import botocore.config
import pyarrow as pa
import pyarrow.parquet as pq


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint-url")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    client = boto3.client(
        "ssm",
        endpoint_url=args.endpoint_url,
        # What AWS recommends for throttled Describe calls.
        config=botocore.config.Config(retries={"mode": "adaptive", "max_attempts": 10}),
    )
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=30)
    sessions = {}
    for state in ("Active", "History"):
        query = {"State": state, "PaginationConfig": {"PageSize": 200}}
        if state == "History":
            query["Filters"] = [
                {"key": "InvokedAfter", "value": since.strftime("%Y-%m-%dT%H:%M:%SZ")}
            ]
        for page in client.get_paginator("describe_sessions").paginate(**query):
            for s in page["Sessions"]:
                # A History observation (ended) beats an Active one.
                sessions[s["SessionId"]] = s
    rows = list(sessions.values())
    table = pa.table({
        "session_id": [s["SessionId"] for s in rows],
        "status": [s.get("Status") for s in rows],
        "target": [s.get("Target") for s in rows],
        "owner": [s.get("Owner") for s in rows],
        "reason": [s.get("Reason") for s in rows],
        "start_date": pa.array([s["StartDate"] for s in rows], pa.timestamp("ms", tz="UTC")),
        "end_date": pa.array([s.get("EndDate") for s in rows], pa.timestamp("ms", tz="UTC")),
    })
    pq.write_table(table, args.out, compression="zstd")
    print(f"{len(rows)} sessions")


if __name__ == "__main__":
    main()
