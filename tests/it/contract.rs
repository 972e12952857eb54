//! The column contract is stated three times: in the code (`schema.rs`), in
//! `schemas/sessions.schema.json`, and in the Athena DDL. They must agree.

use arrow_schema::{DataType, TimeUnit};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .expect(path)
}

/// How each Arrow type is written in the contract file and in Athena DDL.
fn names_for(data_type: &DataType) -> (&'static str, &'static str) {
    match data_type {
        DataType::Utf8 => ("string", "string"),
        DataType::Int32 => ("int32", "int"),
        DataType::Timestamp(TimeUnit::Millisecond, Some(tz)) if tz.as_ref() == "UTC" => {
            ("timestamp(ms, UTC)", "timestamp")
        }
        other => panic!("the contract has no name for {other}"),
    }
}

/// The `name type` pairs between the parentheses of CREATE EXTERNAL TABLE.
fn ddl_columns(ddl: &str) -> Vec<(String, String)> {
    let body = ddl
        .split_once("CREATE EXTERNAL TABLE")
        .expect("a CREATE EXTERNAL TABLE")
        .1;
    let open = body.find('(').expect("(");
    let close = body.find(")\nPARTITIONED BY").expect(") PARTITIONED BY");
    body[open + 1..close]
        .split(',')
        .map(|column| {
            let mut words = column.split_whitespace();
            (
                words.next().expect("name").to_string(),
                words.next().expect("type").to_string(),
            )
        })
        .collect()
}

#[test]
fn code_contract_file_and_ddl_agree() {
    let schema = ssm_audit::dataset::schema::schema();
    let contract: serde_json::Value =
        serde_json::from_str(&repo_file("schemas/sessions.schema.json")).expect("JSON");
    assert_eq!(
        contract["schema_version"],
        ssm_audit::dataset::schema::SCHEMA_VERSION
    );
    let columns = contract["columns"].as_array().expect("columns");
    let ddl = ddl_columns(&repo_file("schemas/athena/create_table.sql"));
    assert_eq!(
        columns.len(),
        schema.fields().len(),
        "contract file vs code"
    );
    assert_eq!(ddl.len(), schema.fields().len(), "DDL vs code");
    for ((field, column), (ddl_name, ddl_type)) in schema.fields().iter().zip(columns).zip(&ddl) {
        let (contract_type, athena_type) = names_for(field.data_type());
        assert_eq!(column["name"], field.name().as_str());
        assert_eq!(column["type"], contract_type, "{}", field.name());
        assert_eq!(column["nullable"], field.is_nullable(), "{}", field.name());
        assert!(
            column["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{}",
            field.name()
        );
        assert!(
            column["source"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            field.name()
        );
        assert_eq!(ddl_name, field.name());
        assert_eq!(ddl_type, athena_type, "{}", field.name());
    }
}

#[test]
fn the_ddl_projects_dt_and_needs_no_crawler() {
    let ddl = repo_file("schemas/athena/create_table.sql");
    for needle in [
        "PARTITIONED BY (dt string)",
        "STORED AS PARQUET",
        "'projection.enabled' = 'true'",
        "'projection.dt.type' = 'date'",
        "'projection.dt.format' = 'yyyy-MM-dd'",
        ",NOW'",
        "'storage.location.template' = 's3://__OUTPUT_ROOT__/sessions/dt=${dt}/'",
        "LOCATION 's3://__OUTPUT_ROOT__/sessions/'",
    ] {
        assert!(ddl.contains(needle), "the DDL lacks {needle}");
    }
    // The layout the DDL expects is the one the exporter writes.
    let partition = ssm_audit::dataset::layout::PartitionKey {
        date: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).expect("a date"),
        account_id: "1".into(),
        region: "r".into(),
    };
    assert_eq!(partition.key(), "sessions/dt=2026-11-01/1_r.parquet");
}
