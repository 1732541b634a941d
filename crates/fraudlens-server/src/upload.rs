//! CSV upload (`multipart/form-data`, field `file`): streamed. The body is
//! fed chunk by chunk to the same CSV reader the CLI uses (on a blocking
//! thread), and good rows are scored and stored in batches while the upload
//! is still arriving, so memory stays flat whatever the file size. Refused rows
//! are reported with their line numbers and kept as dead letters.
//!
//! Because rows are stored while the file arrives, an upload that stops
//! part-way (over `max_upload_bytes`, a stalled or broken body, the store
//! failing) has stored the rows before the stop: the answer is then an
//! [`UploadInterrupted`] that says how many and up to which line, never a bare
//! error that would hide them. Re-sending the file is safe: stored rows come
//! back as idempotent replays. A `Content-Length` over the limit is refused
//! before anything is read or stored.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fraudlens_core::{Decision, Transaction};
use fraudlens_ingest::{EventReader, InputFormat};
use fraudlens_pipeline::ScoreError;
use fraudlens_store::DeadLetter;
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody, Json};
use crate::transport::BodyTimeout;
use crate::{AppState, now};

const BATCH: usize = 1_000;
/// Bytes read and dropped past the upload limit, so that the answer reaches a
/// client still sending instead of a connection reset (closing a socket with
/// unread data resets it).
pub const DRAIN_BYTES: usize = 8 << 20;
/// Longest time spent draining past the upload limit.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const MAX_REPORTED: usize = 1_000;

/// A refused row.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowError {
    /// 1-based line where the record starts.
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// What an upload did.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct UploadResult {
    /// Rows scored and stored (new or already stored with the same content).
    pub accepted: u64,
    /// Rows refused.
    pub rejected: u64,
    /// Decisions among the accepted rows.
    pub approve: u64,
    /// Sent to review.
    pub review: u64,
    /// Declined.
    pub decline: u64,
    /// The first refused rows (at most 1,000), with line numbers and reasons.
    pub errors: Vec<RowError>,
}

impl UploadResult {
    fn reject(&mut self, line: u64, reason: String) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(RowError { line, reason });
        }
    }
}

/// Why an upload stopped before the end of its file: the rows before the
/// stop are stored, and the answer says how many and up to which line.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadInterrupted {
    /// `payload_too_large` (413), `request_timeout` (408), `invalid_request` (400: the body broke off) or `unavailable` (503).
    pub code: &'static str,
    /// What happened.
    pub message: String,
    /// Rows durably stored before the stop (new or already stored with the same content).
    pub stored: u64,
    /// Rows refused before the stop.
    pub rejected: u64,
    /// The last line processed: every row up to it is stored or refused, none after it was. 0 when none was.
    pub last_line: u64,
    #[serde(skip)]
    status: StatusCode,
    #[serde(skip)]
    retry_after: Option<u64>,
}

/// The error side of an upload: refused before anything was stored
/// ([`ApiError`]), or stopped part-way ([`UploadInterrupted`]).
#[derive(Debug)]
pub enum UploadError {
    /// Nothing was stored.
    Refused(ApiError),
    /// Some rows may be stored; the body says how many.
    Interrupted(UploadInterrupted),
}

impl From<ApiError> for UploadError {
    fn from(error: ApiError) -> Self {
        Self::Refused(error)
    }
}

impl IntoResponse for UploadError {
    fn into_response(self) -> Response {
        match self {
            Self::Refused(error) => error.into_response(),
            Self::Interrupted(interrupted) => {
                let status = interrupted.status;
                let retry_after = interrupted.retry_after;
                let mut response = (status, axum::Json(interrupted)).into_response();
                if let Some(seconds) = retry_after {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
        }
    }
}

/// What the body feed hands the CSV reader: a chunk, or the news that the
/// body broke off (so the record it cut is an error, never a short row).
pub(crate) type Chunk = Result<Bytes, BodyStopped>;

#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyStopped;

/// Reads the chunks a channel delivers, as a blocking `Read`.
pub(crate) struct ChannelReader {
    chunks: mpsc::Receiver<Chunk>,
    current: Bytes,
}

impl ChannelReader {
    pub(crate) fn new(chunks: mpsc::Receiver<Chunk>) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(BodyStopped)) => {
                    return Err(std::io::Error::other("the upload stopped before its end"));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// What the CSV reader saw: its refused rows, the last line it read and,
/// when it stopped early, why.
struct Parsed {
    bad_rows: Vec<(u64, String)>,
    last_line: u64,
    stopped: Option<String>,
}

/// Uploads a CSV file of transactions (multipart field `file`): each good row
/// is scored and stored; refused rows come back with line numbers. A body
/// whose `Content-Length` is over the limit is refused before anything is
/// read; one that goes over while it streams stops there, and the answer
/// (413) says how many rows were stored and up to which line.
#[utoipa::path(post, path = "/api/v1/transactions/upload", tag = "scoring",
    request_body(content_type = "multipart/form-data", description = "field `file`: a CSV file with a header row"),
    responses((status = 200, body = UploadResult),
        (status = 408, description = "The body stalled: rows before it were stored", body = UploadInterrupted),
        (status = 413, description = "Over `max_upload_bytes`: refused before reading (`Content-Length`), or stopped at the limit with the rows before it stored", body = UploadInterrupted),
        (status = 415, body = ErrorBody),
        (status = 422, description = "The header does not fit the schema", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body_timeout: Option<Extension<BodyTimeout>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<UploadResult>, UploadError> {
    let model = state.pipeline.model();
    if model.rows().is_some() {
        return Err(crate::api::model_reads_rows(&model).into());
    }
    let limit = state.config.max_upload_bytes;
    refuse_declared_length(&headers, limit)?;
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            rejection.body_text(),
        )
    })?;
    // an upload scores one batch at a time: that is its share of the work in flight
    let _in_flight = state.in_flight.admit(BATCH).await?;
    let mut field = loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => break field,
            Ok(Some(_)) => continue,
            Ok(None) => return Err(ApiError::invalid("no multipart field named \"file\"").into()),
            Err(error) => {
                return Err(multipart_error(error, body_timeout.as_ref().map(|Extension(timeout)| timeout)).into());
            }
        }
    };
    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(8);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Vec<(u64, Transaction)>>(4);
    let reader_model = model.clone();
    // the blocking side: CSV parsing with line numbers
    let parser = tokio::task::spawn_blocking(move || {
        let schema = &reader_model.events().map_err(|error| error.to_string())?.schema;
        let input = Box::new(ChannelReader::new(chunk_rx));
        let mut reader =
            EventReader::from_reader(input, Path::new("upload"), InputFormat::Csv, schema, false, usize::MAX)
                .map_err(|error| error.to_string())?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut stopped = None;
        let mut last_line = 0;
        loop {
            match reader.next_transaction() {
                Ok(Some(tx)) => {
                    last_line = reader.line();
                    batch.push((last_line, tx));
                    if batch.len() == BATCH && batch_tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                // the rows read before the stop are whole: they are scored
                Err(error) => {
                    stopped = Some(error.to_string());
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let _ = batch_tx.blocking_send(batch);
        }
        let bad_rows: Vec<(u64, String)> = reader
            .bad_rows()
            .examples()
            .iter()
            .map(|issue| (issue.line, issue.reason.clone()))
            .collect();
        let last_line = bad_rows.iter().map(|(line, _)| *line).fold(last_line, u64::max);
        Ok::<_, String>(Parsed {
            bad_rows,
            last_line,
            stopped,
        })
    });

    // feed the body while scoring what has been parsed
    let feed = async move {
        let mut total = 0usize;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    total += chunk.len();
                    if total > limit {
                        let _ = chunk_tx.send(Err(BodyStopped)).await;
                        drain(&mut field).await;
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "payload_too_large",
                            format!("the upload is larger than {limit} bytes"),
                        ));
                    }
                    if chunk_tx.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    let _ = chunk_tx.send(Err(BodyStopped)).await;
                    return Err(multipart_error(
                        error,
                        body_timeout.as_ref().map(|Extension(timeout)| timeout),
                    ));
                }
            }
        }
    };
    let score = async {
        let mut result = UploadResult::default();
        let mut last_line = 0;
        while let Some(batch) = batch_rx.recv().await {
            let (lines, txs): (Vec<u64>, Vec<Transaction>) = batch.into_iter().unzip();
            let outcomes = state
                .pipeline
                .score_parsed(&model, txs.into_iter().map(Ok).collect())
                .await;
            for (line, outcome) in lines.into_iter().zip(outcomes) {
                match outcome {
                    Ok(scored) => {
                        result.accepted += 1;
                        match scored.record.decision {
                            Decision::Decline => result.decline += 1,
                            Decision::Review => result.review += 1,
                            Decision::Approve => result.approve += 1,
                        }
                    }
                    Err(
                        ScoreError::Unavailable(message)
                        | ScoreError::Overloaded(message)
                        | ScoreError::NotOwned(message),
                    ) => {
                        tracing::warn!(line, message, "upload stopped: decision not stored");
                        return Err((result, last_line, line));
                    }
                    Err(error) => result.reject(line, error.to_string()),
                }
                last_line = line;
            }
        }
        Ok(result)
    };
    // `feed` owns the chunk sender: when it ends, the reader sees the end of the file
    let (fed, scored) = tokio::join!(feed, score);
    let parsed = parser
        .await
        .map_err(|_| ApiError::unavailable("the CSV reader stopped"))?
        .map_err(ApiError::invalid)?;
    let mut result = match scored {
        Ok(result) => result,
        Err((result, last_line, line)) => {
            return Err(UploadError::Interrupted(UploadInterrupted {
                code: "unavailable",
                message: format!(
                    "stopped at line {line}: a decision could not be stored; the rows before it were; \
                     retry the file (stored rows come back unchanged)"
                ),
                stored: result.accepted,
                rejected: result.rejected,
                last_line,
                status: StatusCode::SERVICE_UNAVAILABLE,
                retry_after: Some(1),
            }));
        }
    };
    // refused rows are kept as dead letters, also when the upload stopped part-way
    let at = now();
    let letters: Vec<DeadLetter> = parsed
        .bad_rows
        .iter()
        .map(|(line, reason)| DeadLetter {
            at,
            source: "upload".to_owned(),
            location: format!("line {line}"),
            error: reason.clone(),
            payload: String::new(),
        })
        .collect();
    if let Err(error) = state.pipeline.store().put_dead_letters(&letters).await {
        tracing::error!(%error, n_letters = letters.len(), "upload's refused rows not kept as dead letters");
        return Err(UploadError::Interrupted(UploadInterrupted {
            code: "unavailable",
            message: "the refused rows could not be kept as dead letters; the good rows were stored".to_owned(),
            stored: result.accepted,
            rejected: result.rejected + letters.len() as u64,
            last_line: parsed.last_line,
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some(1),
        }));
    }
    for (line, reason) in parsed.bad_rows {
        result.reject(line, reason);
    }
    result.errors.sort_by_key(|error| error.line);
    match (fed, parsed.stopped) {
        (Ok(()), None) => Ok(Json(result)),
        (Ok(()), Some(reason)) => Err(ApiError::invalid(reason).into()),
        (Err(error), _) => {
            tracing::info!(
                code = error.body.code,
                stored = result.accepted,
                last_line = parsed.last_line,
                "upload stopped part-way"
            );
            Err(UploadError::Interrupted(UploadInterrupted {
                code: error.body.code,
                message: format!(
                    "{}; the rows up to line {} were processed and the rest was not; \
                     send the rest again (or the whole file: stored rows come back unchanged)",
                    error.body.message, parsed.last_line
                ),
                stored: result.accepted,
                rejected: result.rejected,
                last_line: parsed.last_line,
                status: error.status,
                retry_after: None,
            }))
        }
    }
}

/// 413 for an upload whose `Content-Length` is over `limit`, before anything is read.
pub(crate) fn refuse_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if content_length.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the upload is larger than {limit} bytes; nothing was stored"),
        ));
    }
    Ok(())
}

/// Reads and drops what follows the limit, up to [`DRAIN_BYTES`] for at most
/// [`DRAIN_TIME`]: a client still sending when the answer goes out would get a
/// connection reset instead of the answer (closing a socket with unread data
/// resets it), and would not learn which rows were stored.
pub(crate) async fn drain(field: &mut axum::extract::multipart::Field<'_>) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut n_drained = 0usize;
    while n_drained < DRAIN_BYTES {
        match tokio::time::timeout_at(deadline, field.chunk()).await {
            Ok(Ok(Some(chunk))) => n_drained += chunk.len(),
            _ => return,
        }
    }
}

pub(crate) fn multipart_error(
    error: axum::extract::multipart::MultipartError,
    body_timeout: Option<&BodyTimeout>,
) -> ApiError {
    if body_timeout.is_some_and(BodyTimeout::expired) {
        return crate::transport::body_timeout_error();
    }
    let status = error.status();
    ApiError::new(
        status,
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_request"
        },
        error.body_text(),
    )
}
