"""pyarrow and DuckDB read what `ssm-audit export` writes, as Athena would:
Hive partitions, UTC millisecond timestamps, the contract's columns."""

import subprocess

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from conftest import AUDIT_BIN, aws_env, generate


def export(sim, out):
    result = subprocess.run(
        [AUDIT_BIN, "export", "--output", out, "--endpoint-url", sim.endpoint, "--page-size", "100"],
        capture_output=True,
        text=True,
        env=aws_env(),
    )
    assert result.returncode == 0, result.stderr
    return out


def test_pyarrow_reads_the_hive_dataset_with_the_contract_types(tmp_path, start_sim):
    path, data = generate(tmp_path, 500, 41)
    out = export(start_sim("--data", path), tmp_path / "out")
    dataset = ds.dataset(out / "sessions", format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == len(data)
    schema = table.schema
    assert schema.field("start_date").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("end_date").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("max_session_duration_minutes").type == pa.int32()
    assert schema.field("session_id").type == pa.string()
    file_schema = ds.dataset(out / "sessions", format="parquet").schema
    assert not file_schema.field("session_id").nullable
    assert not file_schema.field("start_date").nullable
    assert file_schema.field("reason").nullable

    rows = {r["session_id"]: r for r in table.to_pylist()}
    for s in data:
        row = rows[s["SessionId"]]
        assert row["reason"] == s.get("Reason")
        assert round(row["start_date"].timestamp() * 1000) == round(s["StartDate"] * 1000)
        assert str(row["dt"]) == row["start_date"].strftime("%Y-%m-%d")


def test_duckdb_queries_the_dataset_with_hive_partitioning(tmp_path, start_sim):
    path, data = generate(tmp_path, 400, 42, "--bursts", "1", "--burst-size", "60")
    out = export(start_sim("--data", path), tmp_path / "out")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    source = f"read_parquet('{out}/sessions/*/*.parquet', hive_partitioning = true)"
    total, distinct = con.execute(f"SELECT count(*), count(DISTINCT session_id) FROM {source}").fetchone()
    assert total == distinct == len(data)
    mismatched = con.execute(
        f"SELECT count(*) FROM {source} WHERE CAST(dt AS VARCHAR) <> strftime(start_date, '%Y-%m-%d')"
    ).fetchone()[0]
    assert mismatched == 0
    failed = con.execute(f"SELECT count(*) FROM {source} WHERE status = 'Failed'").fetchone()[0]
    assert failed == sum(1 for s in data if s.get("Status") == "Failed")
    burst = con.execute(
        f"SELECT max(n) FROM (SELECT start_date, count(*) AS n FROM {source} GROUP BY start_date)"
    ).fetchone()[0]
    assert burst == 60
    types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    assert types["start_date"] == "TIMESTAMP WITH TIME ZONE"
