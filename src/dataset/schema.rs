//! The one definition of the data set's columns (the contract Athena reads),
//! and the conversion between [`SessionRecord`]s and Parquet bytes.
//!
//! Timestamps are `Timestamp(Millisecond, "UTC")`, which Parquet stores as
//! INT64 `TIMESTAMP(MILLIS, isAdjustedToUTC=true)`; never INT96. Files are
//! ZSTD-compressed with statistics, dictionary-encoded but for the columns
//! whose values are all distinct, and carry the contract version in their
//! key-value metadata.

use std::sync::{Arc, OnceLock};

use arrow_array::{
    Array, ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::dataset::record::SessionRecord;

/// Version of the column contract; bump it with every change to the columns
/// and to `schemas/sessions.schema.json`.
pub const SCHEMA_VERSION: &str = "1";

/// Key under which files record [`SCHEMA_VERSION`].
pub const SCHEMA_VERSION_KEY: &str = "ssm_audit.schema_version";

/// Rows per Parquet row group: small enough that a reader's memory stays low,
/// large enough that statistics prune well.
pub const ROW_GROUP_SIZE: usize = 65_536;

/// Why Parquet bytes could not be written or read back as sessions.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("Parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("the file's columns are not the ssm-audit contract (version {SCHEMA_VERSION}): {0}")]
    Mismatch(String),
    #[error("the file was written with data-set version {found}, newer than this ssm-audit's ({SCHEMA_VERSION}); upgrade ssm-audit to read it")]
    NewerVersion { found: String },
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The Arrow schema of the data set, in contract order.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
            Arc::new(Schema::new(vec![
                text("session_id", false),
                text("account_id", false),
                text("region", false),
                text("status", true),
                text("target", true),
                text("owner", true),
                text("document_name", true),
                text("reason", true),
                text("details", true),
                text("access_type", true),
                text("s3_output_url", true),
                text("cloudwatch_output_url", true),
                Field::new("max_session_duration_minutes", DataType::Int32, true),
                Field::new("start_date", timestamp(), false),
                Field::new("end_date", timestamp(), true),
                Field::new("first_seen_at", timestamp(), false),
                Field::new("last_seen_at", timestamp(), false),
            ]))
        })
        .clone()
}

/// Builds one record batch from rows, in the order given.
pub fn to_batch(rows: &[SessionRecord]) -> Result<RecordBatch, SchemaError> {
    fn strings<'a>(
        rows: &'a [SessionRecord],
        f: impl Fn(&'a SessionRecord) -> Option<&'a str>,
    ) -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    }
    fn times(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
        Arc::new(
            values
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        )
    }
    let columns: Vec<ArrayRef> = vec![
        strings(rows, |r| Some(&r.session_id)),
        strings(rows, |r| Some(&r.account_id)),
        strings(rows, |r| Some(&r.region)),
        strings(rows, |r| r.status.as_deref()),
        strings(rows, |r| r.target.as_deref()),
        strings(rows, |r| r.owner.as_deref()),
        strings(rows, |r| r.document_name.as_deref()),
        strings(rows, |r| r.reason.as_deref()),
        strings(rows, |r| r.details.as_deref()),
        strings(rows, |r| r.access_type.as_deref()),
        strings(rows, |r| r.s3_output_url.as_deref()),
        strings(rows, |r| r.cloudwatch_output_url.as_deref()),
        Arc::new(
            rows.iter()
                .map(|r| r.max_session_duration_minutes)
                .collect::<Int32Array>(),
        ),
        times(rows.iter().map(|r| Some(r.start_date))),
        times(rows.iter().map(|r| r.end_date)),
        times(rows.iter().map(|r| Some(r.first_seen_at))),
        times(rows.iter().map(|r| Some(r.last_seen_at))),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// How a file is compressed: published partitions are kept for years and
/// read by Athena, so they get ZSTD; staged parts live for one run and are
/// read once, so compressing each 200-row page would cost more CPU (a ZSTD
/// context per column per page) than the bytes it saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    Published,
    Staged,
}

/// Columns whose values are (nearly) all distinct: a dictionary of them is
/// as large as the values themselves plus an index per row, and building it
/// hashes and compares every value on the encoder's thread, the one that
/// publishing a busy day waits for. They are written plain. Every other
/// column repeats a handful of values (owners, targets, statuses, the run's
/// seen-at stamps) and keeps its dictionary.
pub const DISTINCT_COLUMNS: [&str; 3] = ["session_id", "start_date", "end_date"];

fn writer_properties(packing: Packing) -> WriterProperties {
    let compression = match packing {
        Packing::Published => Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()),
        Packing::Staged => Compression::UNCOMPRESSED,
    };
    DISTINCT_COLUMNS
        .iter()
        .fold(WriterProperties::builder(), |builder, column| {
            builder.set_column_dictionary_enabled(ColumnPath::from(*column), false)
        })
        .set_compression(compression)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_SIZE))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            SCHEMA_VERSION_KEY.to_string(),
            SCHEMA_VERSION.to_string(),
        )]))
        .build()
}

/// Rows buffered before they are encoded as one Arrow batch.
const WRITE_BATCH: usize = 8192;

/// Rows a [`ParquetSink`] is handed at once, at most (see [`gather`]).
pub const SINK_BATCH: usize = 4096;

/// Batches that may wait for a [`ParquetSink`]'s encoding thread. With none
/// (a rendezvous), a perf timeline of a busy day had the merging and the
/// encoding thread each busy about half the time, taking turns (see
/// BENCHMARKS.md, "The busy day's encoder").
const ENCODER_QUEUE: usize = 2;

/// Encodes batches into one Parquet file as they come, so a writer holds a
/// few batches and the encoded file, never all rows at once.
///
/// A file of more than one full batch is encoded on a thread of its own,
/// handed each batch through a channel of [`ENCODER_QUEUE`] (so no more
/// than four exist), while the caller merges the next: the busy day of a
/// night is what its publishing waits for, and merging and encoding it cost
/// about the same (at 100,000 sessions, 80% of them on one day, the merge
/// took 0.87 s on one core before). A small file never starts a thread.
/// What counts is the rows the file has been handed, not one batch's: the
/// merge of staged parts flushes a batch whenever it has drawn on 16 parts
/// (3,200 rows at most), so no batch of a first night is full, and a rule
/// on the batch's size had left the busy day encoding inline.
pub struct ParquetSink {
    rows: usize,
    encoder: Encoder,
}

enum Encoder {
    /// No full batch yet: the writer is here.
    Inline(Box<ArrowWriter<Vec<u8>>>),
    /// Batches go to the encoding thread; at most one waits for it.
    Thread {
        batches: std::sync::mpsc::SyncSender<RecordBatch>,
        thread: std::thread::JoinHandle<Result<Vec<u8>, SchemaError>>,
    },
    /// Taken while changing state or after a failure.
    Gone,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("rows", &self.rows)
            .finish()
    }
}

impl ParquetSink {
    pub fn new(packing: Packing) -> Result<ParquetSink, SchemaError> {
        Ok(ParquetSink {
            rows: 0,
            encoder: Encoder::Inline(Box::new(ArrowWriter::try_new(
                Vec::new(),
                schema(),
                Some(writer_properties(packing)),
            )?)),
        })
    }

    /// Appends a batch in the contract's schema (see [`gather`]).
    pub fn push(&mut self, batch: RecordBatch) -> Result<(), SchemaError> {
        self.rows += batch.num_rows();
        match &mut self.encoder {
            Encoder::Inline(writer) if self.rows <= SINK_BATCH => Ok(writer.write(&batch)?),
            _ => self.hand_over(batch),
        }
    }

    /// Whether the file is encoded on a thread of its own.
    #[cfg(test)]
    fn on_its_thread(&self) -> bool {
        matches!(self.encoder, Encoder::Thread { .. })
    }

    /// Gives a batch to the encoding thread, starting it on the first.
    fn hand_over(&mut self, batch: RecordBatch) -> Result<(), SchemaError> {
        if let Encoder::Inline(_) = self.encoder {
            let Encoder::Inline(writer) = std::mem::replace(&mut self.encoder, Encoder::Gone)
            else {
                unreachable!("matched above")
            };
            let (batches, received) = std::sync::mpsc::sync_channel::<RecordBatch>(ENCODER_QUEUE);
            let thread = std::thread::Builder::new()
                .name("parquet-encoder".into())
                .spawn(move || {
                    let mut writer = *writer;
                    for batch in received {
                        writer.write(&batch)?;
                    }
                    Ok(writer.into_inner()?)
                })
                .map_err(|error| {
                    SchemaError::Parquet(parquet::errors::ParquetError::External(Box::new(error)))
                })?;
            self.encoder = Encoder::Thread { batches, thread };
        }
        let Encoder::Thread { batches, .. } = &self.encoder else {
            return Err(encoder_gone());
        };
        if batches.send(batch).is_err() {
            // The encoder stopped on an error: joining it reports it.
            return match std::mem::replace(&mut self.encoder, Encoder::Gone) {
                Encoder::Thread { batches, thread } => {
                    drop(batches);
                    join_encoder(thread).map(|_| ())
                }
                _ => Err(encoder_gone()),
            };
        }
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The finished file's bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, SchemaError> {
        match std::mem::replace(&mut self.encoder, Encoder::Gone) {
            Encoder::Inline(writer) => Ok(writer.into_inner()?),
            Encoder::Thread { batches, thread } => {
                drop(batches);
                join_encoder(thread)
            }
            Encoder::Gone => Err(encoder_gone()),
        }
    }
}

fn encoder_gone() -> SchemaError {
    SchemaError::Parquet(parquet::errors::ParquetError::General(
        "the encoder stopped on an earlier batch".into(),
    ))
}

fn join_encoder(
    thread: std::thread::JoinHandle<Result<Vec<u8>, SchemaError>>,
) -> Result<Vec<u8>, SchemaError> {
    match thread.join() {
        Ok(encoded) => encoded,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Encodes rows as one Parquet file, in the order given.
pub fn write_parquet(rows: &[SessionRecord], packing: Packing) -> Result<Vec<u8>, SchemaError> {
    let mut writer = ArrowWriter::try_new(Vec::new(), schema(), Some(writer_properties(packing)))?;
    for chunk in rows.chunks(WRITE_BATCH) {
        writer.write(&to_batch(chunk)?)?;
    }
    Ok(writer.into_inner()?)
}

/// Reads a Parquet file written by [`ParquetSink`] a batch at a time. A file
/// whose columns differ from the contract is refused rather than guessed at.
pub struct ParquetSource {
    batches: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    pending: std::collections::VecDeque<SessionRecord>,
    /// For each contract column, the file's column, or None (all null).
    columns: Vec<Option<usize>>,
}

impl std::fmt::Debug for ParquetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSource")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl ParquetSource {
    /// Opens a partition or part. Files of this contract version and older
    /// ones are read: a column the file lacks is null (if the contract lets
    /// it be), and timestamps in another unit (a file another tool rewrote
    /// with microseconds) are converted. A file of a newer major version,
    /// or with columns this version does not know, is refused, since
    /// rewriting it would drop what this version cannot represent.
    pub fn new(bytes: Bytes) -> Result<ParquetSource, SchemaError> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
        let version = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|pairs| pairs.iter().find(|kv| kv.key == SCHEMA_VERSION_KEY))
            .and_then(|kv| kv.value.clone());
        if let Some(found) = version {
            let major = |v: &str| {
                v.split('.')
                    .next()
                    .and_then(|m| m.trim().parse::<u64>().ok())
            };
            match (major(&found), major(SCHEMA_VERSION)) {
                (Some(theirs), Some(ours)) if theirs <= ours => {}
                _ => return Err(SchemaError::NewerVersion { found }),
            }
        }
        let found = builder.schema().clone();
        let expected = schema();
        let unknown: Vec<String> = found
            .fields()
            .iter()
            .filter(|f| expected.field_with_name(f.name()).is_err())
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        if !unknown.is_empty() {
            return Err(SchemaError::Mismatch(format!(
                "columns this version does not know: {}",
                unknown.join(", ")
            )));
        }
        let mut columns = Vec::with_capacity(expected.fields().len());
        for field in expected.fields() {
            let source = match found.index_of(field.name()) {
                Ok(index) => {
                    let data_type = found.field(index).data_type();
                    let fits = match (field.data_type(), data_type) {
                        (DataType::Timestamp(..), DataType::Timestamp(_, zone)) => {
                            zone.as_deref().is_none_or(|z| z == "UTC" || z == "+00:00")
                        }
                        (wanted, have) => wanted == have,
                    };
                    if !fits {
                        return Err(SchemaError::Mismatch(format!(
                            "column {} is {data_type}, not {}",
                            field.name(),
                            field.data_type()
                        )));
                    }
                    Some(index)
                }
                Err(_) if field.is_nullable() => None,
                Err(_) => {
                    return Err(SchemaError::Mismatch(format!(
                        "the file has no {} column",
                        field.name()
                    )))
                }
            };
            columns.push(source);
        }
        Ok(ParquetSource {
            batches: builder.with_batch_size(WRITE_BATCH).build()?,
            pending: std::collections::VecDeque::new(),
            columns,
        })
    }

    /// The next batch in the contract's schema (at most 8,192 rows), or
    /// None at the end of the file. Not to be mixed with [`Self::next_row`].
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, SchemaError> {
        match self.batches.next() {
            Some(batch) => Ok(Some(to_contract(&batch?, &self.columns)?)),
            None => Ok(None),
        }
    }

    /// The next row, or None at the end of the file.
    pub fn next_row(&mut self) -> Result<Option<SessionRecord>, SchemaError> {
        while self.pending.is_empty() {
            match self.batches.next() {
                Some(batch) => {
                    let batch = to_contract(&batch?, &self.columns)?;
                    self.pending.extend(from_batch(&batch)?)
                }
                None => return Ok(None),
            }
        }
        Ok(self.pending.pop_front())
    }
}

/// Decodes a whole Parquet file as batches in the contract's schema.
pub fn read_batches(bytes: Bytes) -> Result<Vec<RecordBatch>, SchemaError> {
    let mut source = ParquetSource::new(bytes)?;
    let mut batches = Vec::new();
    while let Some(batch) = source.next_batch()? {
        batches.push(batch);
    }
    Ok(batches)
}

/// The columns of a batch in the contract's schema that merging reads: a
/// row's place, whether it has ended, and when it was seen, without making
/// it a [`SessionRecord`].
#[derive(Debug, Clone, Copy)]
pub struct MergeColumns<'a> {
    session_id: &'a StringArray,
    status: &'a StringArray,
    start_date: &'a TimestampMillisecondArray,
    end_date: &'a TimestampMillisecondArray,
    first_seen_at: &'a TimestampMillisecondArray,
    last_seen_at: &'a TimestampMillisecondArray,
}

/// Where the merge reads and [`gather`] writes, in contract order.
const SESSION_ID: usize = 0;
const STATUS: usize = 3;
const START_DATE: usize = 13;
const END_DATE: usize = 14;
const FIRST_SEEN_AT: usize = 15;
const LAST_SEEN_AT: usize = 16;

impl<'a> MergeColumns<'a> {
    pub fn of(batch: &'a RecordBatch) -> Result<MergeColumns<'a>, SchemaError> {
        fn typed<T: 'static>(batch: &RecordBatch, index: usize) -> Result<&T, SchemaError> {
            batch
                .columns()
                .get(index)
                .and_then(|column| column.as_any().downcast_ref::<T>())
                .ok_or_else(|| {
                    SchemaError::Mismatch(format!("column {index} is not of the contract's type"))
                })
        }
        Ok(MergeColumns {
            session_id: typed(batch, SESSION_ID)?,
            status: typed(batch, STATUS)?,
            start_date: typed(batch, START_DATE)?,
            end_date: typed(batch, END_DATE)?,
            first_seen_at: typed(batch, FIRST_SEEN_AT)?,
            last_seen_at: typed(batch, LAST_SEEN_AT)?,
        })
    }

    pub fn rows(&self) -> usize {
        self.session_id.len()
    }

    /// The row's place in its partition (see `layout::row_order`).
    pub fn row_order(&self, row: usize) -> (i64, &'a str) {
        crate::dataset::layout::row_order(self.start_date.value(row), self.session_id.value(row))
    }

    pub fn session_id(&self, row: usize) -> &'a str {
        self.session_id.value(row)
    }

    pub fn is_ended(&self, row: usize) -> bool {
        let end = (!self.end_date.is_null(row)).then(|| self.end_date.value(row));
        let status = (!self.status.is_null(row)).then(|| self.status.value(row));
        crate::dataset::record::is_ended(end, status)
    }

    pub fn first_seen_at(&self, row: usize) -> i64 {
        self.first_seen_at.value(row)
    }

    pub fn last_seen_at(&self, row: usize) -> i64 {
        self.last_seen_at.value(row)
    }
}

/// One batch in the contract's schema whose row `i` is row `picks[i].1` of
/// `sources[picks[i].0]`, seen first and last at `seen[i]`.
pub fn gather(
    sources: &[RecordBatch],
    picks: &[(usize, usize)],
    seen: &[(i64, i64)],
) -> Result<RecordBatch, SchemaError> {
    let times = |values: Vec<i64>| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema().fields().len());
    for index in 0..schema().fields().len() {
        columns.push(match index {
            FIRST_SEEN_AT => times(seen.iter().map(|(first, _)| *first).collect()),
            LAST_SEEN_AT => times(seen.iter().map(|(_, last)| *last).collect()),
            _ => {
                let arrays: Vec<&dyn Array> = sources
                    .iter()
                    .map(|batch| batch.column(index).as_ref())
                    .collect();
                arrow_select::interleave::interleave(&arrays, picks)?
            }
        });
    }
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// Decodes a whole Parquet file written by [`write_parquet`].
pub fn read_parquet(bytes: Bytes) -> Result<Vec<SessionRecord>, SchemaError> {
    let mut source = ParquetSource::new(bytes)?;
    let mut rows = Vec::new();
    while let Some(row) = source.next_row()? {
        rows.push(row);
    }
    Ok(rows)
}

/// Calls `each` with the session id and start date (epoch ms) of every row
/// of a partition, decoding those two columns only.
pub fn for_each_identity(bytes: Bytes, mut each: impl FnMut(&str, i64)) -> Result<(), SchemaError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let columns = builder.parquet_schema();
    let id_column = schema().index_of("session_id")?;
    let start_column = schema().index_of("start_date")?;
    let mask = parquet::arrow::ProjectionMask::roots(columns, [id_column, start_column]);
    for batch in builder
        .with_projection(mask)
        .with_batch_size(WRITE_BATCH)
        .build()?
    {
        let batch = batch?;
        let ids = batch
            .column_by_name("session_id")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| SchemaError::Mismatch("session_id is not a string column".into()))?;
        let starts = batch
            .column_by_name("start_date")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
            .ok_or_else(|| {
                SchemaError::Mismatch("start_date is not a millisecond timestamp".into())
            })?;
        for row in 0..batch.num_rows() {
            each(ids.value(row), starts.value(row));
        }
    }
    Ok(())
}

/// A batch as the contract has it: columns in contract order, missing ones
/// null, timestamps in milliseconds with the UTC zone.
fn to_contract(batch: &RecordBatch, columns: &[Option<usize>]) -> Result<RecordBatch, SchemaError> {
    let expected = schema();
    let rows = batch.num_rows();
    let mut out: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (field, source) in expected.fields().iter().zip(columns) {
        let Some(index) = source else {
            out.push(arrow_array::new_null_array(field.data_type(), rows));
            continue;
        };
        let column = batch.column(*index);
        out.push(match column.data_type() {
            DataType::Timestamp(unit, _) => Arc::new(to_millis(column.as_ref(), unit)?),
            _ => column.clone(),
        });
    }
    Ok(RecordBatch::try_new(expected, out)?)
}

/// A timestamp column of any unit, as UTC milliseconds.
fn to_millis(
    column: &dyn Array,
    unit: &TimeUnit,
) -> Result<TimestampMillisecondArray, SchemaError> {
    use arrow_array::{TimestampMicrosecondArray, TimestampNanosecondArray, TimestampSecondArray};
    let wrong =
        || SchemaError::Mismatch(format!("a timestamp column of unit {unit:?} is unreadable"));
    let any = column.as_any();
    let millis: TimestampMillisecondArray = match unit {
        TimeUnit::Millisecond => any
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(wrong)?
            .iter()
            .collect(),
        TimeUnit::Second => any
            .downcast_ref::<TimestampSecondArray>()
            .ok_or_else(wrong)?
            .iter()
            .map(|v| v.map(|s| s.saturating_mul(1000)))
            .collect(),
        TimeUnit::Microsecond => any
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(wrong)?
            .iter()
            .map(|v| v.map(|us| us.div_euclid(1000)))
            .collect(),
        TimeUnit::Nanosecond => any
            .downcast_ref::<TimestampNanosecondArray>()
            .ok_or_else(wrong)?
            .iter()
            .map(|v| v.map(|ns| ns.div_euclid(1_000_000)))
            .collect(),
    };
    Ok(millis.with_timezone("UTC"))
}

fn from_batch(batch: &RecordBatch) -> Result<Vec<SessionRecord>, SchemaError> {
    let column = |i: usize| batch.column(i).as_ref();
    let strings = |i: usize| {
        column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| SchemaError::Mismatch(format!("column {i} is not a string column")))
    };
    let times = |i: usize| {
        column(i)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| SchemaError::Mismatch(format!("column {i} is not a timestamp column")))
    };
    let text: Vec<&StringArray> = (0..12).map(strings).collect::<Result<_, _>>()?;
    let minutes = column(12)
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| SchemaError::Mismatch("column 12 is not an int32 column".into()))?;
    let (start, end, first, last) = (times(13)?, times(14)?, times(15)?, times(16)?);
    let opt = |a: &StringArray, row: usize| (!a.is_null(row)).then(|| a.value(row).to_owned());
    let opt_time =
        |a: &TimestampMillisecondArray, row: usize| (!a.is_null(row)).then(|| a.value(row));
    Ok((0..batch.num_rows())
        .map(|row| SessionRecord {
            session_id: text[0].value(row).to_owned(),
            account_id: text[1].value(row).to_owned(),
            region: text[2].value(row).to_owned(),
            status: opt(text[3], row),
            target: opt(text[4], row),
            owner: opt(text[5], row),
            document_name: opt(text[6], row),
            reason: opt(text[7], row),
            details: opt(text[8], row),
            access_type: opt(text[9], row),
            s3_output_url: opt(text[10], row),
            cloudwatch_output_url: opt(text[11], row),
            max_session_duration_minutes: (!minutes.is_null(row)).then(|| minutes.value(row)),
            start_date: start.value(row),
            end_date: opt_time(end, row),
            first_seen_at: first.value(row),
            last_seen_at: last.value(row),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::record::tests::record;

    /// A file another writer made: `fields` with these arrays, and this
    /// version in its metadata (None: no version).
    fn foreign_file(columns: Vec<(&str, ArrayRef)>, version: Option<&str>) -> Bytes {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("batch");
        let properties = WriterProperties::builder()
            .set_key_value_metadata(
                version.map(|v| vec![KeyValue::new(SCHEMA_VERSION_KEY.into(), v.to_string())]),
            )
            .build();
        let mut writer =
            ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties)).expect("writer");
        writer.write(&batch).expect("write");
        Bytes::from(writer.into_inner().expect("finish"))
    }

    fn base_columns() -> Vec<(&'static str, ArrayRef)> {
        use arrow_array::TimestampMicrosecondArray;
        let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
        let micros = |v: i64| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(vec![v]).with_timezone("UTC"))
        };
        vec![
            ("session_id", text("alice-1")),
            ("account_id", text("123456789012")),
            ("region", text("eu-west-1")),
            ("status", text("Terminated")),
            ("start_date", micros(1_700_000_000_123_456)),
            ("first_seen_at", micros(1_700_000_100_000_000)),
            ("last_seen_at", micros(1_700_000_200_000_000)),
        ]
    }

    #[test]
    fn older_files_and_microsecond_timestamps_are_read_and_missing_columns_are_null() {
        let rows = read_parquet(foreign_file(base_columns(), Some("1"))).expect("readable");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].session_id, "alice-1");
        assert_eq!(rows[0].start_date, 1_700_000_000_123);
        assert_eq!(rows[0].first_seen_at, 1_700_000_100_000);
        assert_eq!((rows[0].owner.as_deref(), rows[0].end_date), (None, None));
        // No version at all (another tool's file): read by its columns.
        assert_eq!(
            read_parquet(foreign_file(base_columns(), None))
                .expect("readable")
                .len(),
            1
        );
    }

    #[test]
    fn newer_versions_unknown_columns_and_missing_required_ones_are_refused_by_name() {
        let newer = read_parquet(foreign_file(base_columns(), Some("2"))).expect_err("newer");
        assert!(newer.to_string().contains("version 2"), "{newer}");
        let mut extra = base_columns();
        extra.push((
            "client_ip",
            Arc::new(StringArray::from(vec!["10.0.0.1"])) as ArrayRef,
        ));
        let unknown = read_parquet(foreign_file(extra, Some("1"))).expect_err("unknown column");
        assert!(unknown.to_string().contains("client_ip"), "{unknown}");
        let missing: Vec<_> = base_columns()
            .into_iter()
            .filter(|(n, _)| *n != "region")
            .collect();
        let required = read_parquet(foreign_file(missing, Some("1"))).expect_err("no region");
        assert!(required.to_string().contains("region"), "{required}");
    }

    #[test]
    fn parquet_round_trips_every_field() {
        let mut rows = vec![
            record("a", 1_000, "Terminated", 7),
            record("b", 2_000, "Connected", 8),
        ];
        rows[1].reason = None;
        rows[1].max_session_duration_minutes = None;
        for packing in [Packing::Published, Packing::Staged] {
            let bytes = write_parquet(&rows, packing).expect("writes");
            assert_eq!(read_parquet(Bytes::from(bytes)).expect("reads"), rows);
        }
    }

    #[test]
    fn a_sink_gives_every_row_in_order_whether_it_encodes_inline_or_on_its_thread() {
        // 10 rows, or a batch's worth in pieces, never leave the caller's
        // thread; a part-full batch, then three full ones and a part of
        // one, go through the encoder's, and so do many part-full batches
        // (a merge of staged parts of 200 rows flushes at 16 of them).
        let parts = vec![16 * 200; 8];
        for (sizes, threaded) in [
            (vec![10], false),
            (vec![SINK_BATCH - 100, 100], false),
            (vec![17, SINK_BATCH, SINK_BATCH, SINK_BATCH, 5], true),
            (parts, true),
        ] {
            let count: usize = sizes.iter().sum();
            let rows: Vec<SessionRecord> = (0..count)
                .map(|i| record(&format!("s-{i:06}"), 1_000 + i as i64, "Terminated", 7))
                .collect();
            let mut sink = ParquetSink::new(Packing::Published).expect("sink");
            let mut from = 0;
            for size in sizes {
                sink.push(to_batch(&rows[from..from + size]).expect("batch"))
                    .expect("pushed");
                from += size;
            }
            assert_eq!(sink.rows(), count);
            assert_eq!(sink.on_its_thread(), threaded, "{count} rows");
            let bytes = sink.finish().expect("finished");
            assert_eq!(read_parquet(Bytes::from(bytes)).expect("reads"), rows);
        }
    }

    #[test]
    fn timestamps_are_int64_millis_utc_and_compression_is_zstd() {
        let bytes = write_parquet(&[record("a", 1_000, "Terminated", 7)], Packing::Published)
            .expect("writes");
        let reader =
            parquet::file::reader::SerializedFileReader::new(Bytes::from(bytes)).expect("opens");
        use parquet::file::reader::FileReader;
        let meta = reader.metadata();
        let descr = meta.file_metadata().schema_descr();
        let start = descr.column(13);
        assert_eq!(start.physical_type(), parquet::basic::Type::INT64);
        assert!(format!("{:?}", start.logical_type_ref()).contains("is_adjusted_to_u_t_c: true"));
        // The level is not stored in the file, only the codec.
        assert!(matches!(
            meta.row_group(0).column(0).compression(),
            Compression::ZSTD(_)
        ));
        assert!(meta.row_group(0).column(13).statistics().is_some());
    }

    #[test]
    fn distinct_columns_are_written_plain_and_the_others_keep_their_dictionary() {
        let rows: Vec<SessionRecord> = (0..500)
            .map(|i| record(&format!("s-{i:06}"), 1_000 + i, "Terminated", 7))
            .collect();
        for packing in [Packing::Published, Packing::Staged] {
            let bytes = Bytes::from(write_parquet(&rows, packing).expect("writes"));
            let reader =
                parquet::file::reader::SerializedFileReader::new(bytes.clone()).expect("opens");
            use parquet::file::reader::FileReader;
            let group = reader.metadata().row_group(0);
            for column in group.columns() {
                let name = column.column_path().string();
                let dictionary = column.dictionary_page_offset().is_some();
                assert_eq!(
                    dictionary,
                    !DISTINCT_COLUMNS.contains(&name.as_str()),
                    "{name} ({packing:?}): {:?}",
                    column.encodings().collect::<Vec<_>>()
                );
            }
            assert_eq!(read_parquet(bytes).expect("reads"), rows);
        }
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        let batch = RecordBatch::try_new(other.clone(), vec![Arc::new(Int32Array::from(vec![1]))])
            .expect("batch");
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, other, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        assert!(matches!(
            read_parquet(Bytes::from(out)),
            Err(SchemaError::Mismatch(_))
        ));
    }
}
