//! CSV upload (`multipart/form-data`, field `file`): streamed. The body is
//! fed chunk by chunk to the same CSV reader the CLI uses (on a blocking
//! thread), and good rows are scored and stored in batches while the upload
//! is still arriving, so memory stays flat whatever the file size. Refused rows
//! are reported with their line numbers and kept as dead letters.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::StatusCode;
use fraudlens_core::Transaction;
use fraudlens_ingest::{EventReader, InputFormat};
use fraudlens_pipeline::ScoreError;
use fraudlens_store::DeadLetter;
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody, Json};
use crate::{AppState, now_ms};

const BATCH: usize = 1_000;
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

/// Reads the chunks a channel delivers, as a blocking `Read`.
struct ChannelReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Uploads a CSV file of transactions (multipart field `file`): each good row
/// is scored and stored; refused rows come back with line numbers.
#[utoipa::path(post, path = "/api/v1/transactions/upload", tag = "scoring",
    request_body(content_type = "multipart/form-data", description = "field `file`: a CSV file with a header row"),
    responses((status = 200, body = UploadResult), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "The header does not fit the schema", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<UploadResult>, ApiError> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            rejection.body_text(),
        )
    })?;
    let limit = state.config.max_upload_bytes;
    // an upload scores one batch at a time: that is its share of the work in flight
    let _in_flight = state.admit(BATCH)?;
    let mut field = loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => break field,
            Ok(Some(_)) => continue,
            Ok(None) => return Err(ApiError::invalid("no multipart field named \"file\"")),
            Err(error) => return Err(multipart_error(error)),
        }
    };
    let model = state.pipeline.model();
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(8);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Vec<(u64, Transaction)>>(4);
    let reader_model = model.clone();
    // the blocking side: CSV parsing with line numbers
    let parser = tokio::task::spawn_blocking(move || {
        let schema = &reader_model.inputs.schema;
        let input = Box::new(ChannelReader {
            chunks: chunk_rx,
            current: Bytes::new(),
        });
        let mut reader =
            EventReader::from_reader(input, Path::new("upload"), InputFormat::Csv, schema, false, usize::MAX)
                .map_err(|error| error.to_string())?;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            match reader.next_transaction() {
                Ok(Some(tx)) => {
                    batch.push((reader.line(), tx));
                    if batch.len() == BATCH && batch_tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => return Err(error.to_string()),
            }
        }
        if !batch.is_empty() {
            let _ = batch_tx.blocking_send(batch);
        }
        Ok(reader
            .bad_rows()
            .examples()
            .iter()
            .map(|issue| (issue.line, issue.reason.clone()))
            .collect::<Vec<_>>())
    });

    // feed the body while scoring what has been parsed
    let feed = async move {
        let mut total = 0usize;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    total += chunk.len();
                    if total > limit {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "payload_too_large",
                            format!(
                                "the upload is larger than {limit} bytes; the rows before the limit were processed"
                            ),
                        ));
                    }
                    if chunk_tx.send(chunk).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(error) => return Err(multipart_error(error)),
            }
        }
    };
    let score = async {
        let mut result = UploadResult::default();
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
                        match scored.record.decision.as_str() {
                            "decline" => result.decline += 1,
                            "review" => result.review += 1,
                            _ => result.approve += 1,
                        }
                    }
                    Err(
                        ScoreError::Unavailable(message)
                        | ScoreError::Overloaded(message)
                        | ScoreError::NotOwned(message),
                    ) => {
                        return Err(ApiError::unavailable(format!(
                            "stopped at line {line}: {message}; {} rows before it were stored",
                            result.accepted
                        )));
                    }
                    Err(error) => result.reject(line, error.to_string()),
                }
            }
        }
        Ok(result)
    };
    // `feed` owns the chunk sender: when it ends, the reader sees the end of the file
    let (fed, scored) = tokio::join!(feed, score);
    let bad_rows = parser
        .await
        .map_err(|_| ApiError::unavailable("the CSV reader stopped"))?
        .map_err(ApiError::invalid)?;
    fed?;
    let mut result = scored?;
    let at = now_ms();
    let letters: Vec<DeadLetter> = bad_rows
        .iter()
        .map(|(line, reason)| DeadLetter {
            at,
            source: "upload".to_owned(),
            location: format!("line {line}"),
            error: reason.clone(),
            payload: String::new(),
        })
        .collect();
    state.pipeline.store().put_dead_letters(&letters).await?;
    for (line, reason) in bad_rows {
        result.reject(line, reason);
    }
    result.errors.sort_by_key(|error| error.line);
    Ok(Json(result))
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
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
