-- The Athena table over an ssm-audit data set, schema version 1
-- (schemas/sessions.schema.json). Partition projection on dt: no Glue
-- crawler and no MSCK REPAIR TABLE are ever needed, new days are queryable
-- as soon as they are written.
--
-- Placeholder: __OUTPUT_ROOT__ is the export's --output without s3://, for
-- example my-audit-bucket/ssm. Replace it before running:
--   sed 's|__OUTPUT_ROOT__|my-audit-bucket/ssm|g' schemas/athena/create_table.sql
-- Timestamps are UTC. Filter on dt to read only the days you need.
CREATE EXTERNAL TABLE IF NOT EXISTS ssm_sessions (
  session_id string,
  account_id string,
  region string,
  status string,
  target string,
  owner string,
  document_name string,
  reason string,
  details string,
  access_type string,
  s3_output_url string,
  cloudwatch_output_url string,
  max_session_duration_minutes int,
  start_date timestamp,
  end_date timestamp,
  first_seen_at timestamp,
  last_seen_at timestamp
)
PARTITIONED BY (dt string)
STORED AS PARQUET
LOCATION 's3://__OUTPUT_ROOT__/sessions/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2015-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://__OUTPUT_ROOT__/sessions/dt=${dt}/'
);
