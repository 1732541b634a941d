//! `/api/v1/predictions`: feature rows, for a model trained in tabular mode
//! or imported from XGBoost or LightGBM (its features are the request's
//! fields). One row, a batch, or a CSV file whose predictions come back as
//! CSV while the file is still arriving. Decisions are stored, queued for
//! review and labelled like those of transactions; a row's id is its
//! `transaction_id` (or the training data's id-like column, or `id`), or one
//! is generated.
//!
//! The CSV answer is streamed, so its status is sent before the file is
//! read: a row that fails has its `error` cell filled; a file that stops
//! part-way (over `max_upload_bytes`, a stalled or broken body, the store
//! failing) gets a last row saying why, and then the answer is cut off
//! without its proper end, so that no client can take it for complete. The
//! rows before the stop are stored: resending the file is safe (they come
//! back as replays). Up to [`PENDING_OUTPUT`] bytes of answer wait for a
//! client that reads only after sending the whole file; past that the
//! server reads no more of the file until the client reads.

use std::sync::Arc;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::multipart::Multipart;
use axum::extract::{FromRequest as _, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fraudlens_ingest::CsvRecords;
use fraudlens_pipeline::{FeatureRow, RowInputs, ScoreError, Scored, ServingModel, random_row_id};
use fraudlens_store::DeadLetter;
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot};

use crate::admission::Admitted;
use crate::api::{BatchResponse, batch_response, check_batch, decision_response};
use crate::error::{ApiError, ErrorBody, Json};
use crate::transport::BodyTimeout;
use crate::upload::{BodyStopped, ChannelReader, Chunk, drain, multipart_error, refuse_declared_length};
use crate::{AppState, now};

/// Rows scored and written together.
const BATCH: usize = 1_000;
/// Bytes of CSV answer kept for a client that is not reading yet.
pub const PENDING_OUTPUT: usize = 16 << 20;
/// Longest wait for a client to read some of the answer before the upload stops.
const OUTPUT_STALL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most columns of an uploaded file (a model reads far fewer).
const MAX_COLUMNS: usize = 10_000;
/// How long the rows of a stopped upload have to reach the client before the
/// answer is cut off.
const CUT_OFF_DELAY: std::time::Duration = std::time::Duration::from_millis(500);
/// The header of the CSV answer.
const OUTPUT_HEADER: [&str; 9] = [
    "line",
    "transaction_id",
    "decision",
    "fraud_probability",
    "score",
    "review_status",
    "replayed",
    "reasons",
    "error",
];

/// A feature row: each of the model's features by name (numbers, strings of
/// numbers, category strings; `null` or absent for missing), and an optional
/// id (`transaction_id`; re-sending an id returns the stored decision). A
/// field the model does not know is refused (422, naming it); the training
/// data's label and the columns it set aside are ignored.
#[derive(utoipa::ToSchema)]
#[schema(as = FeatureRowInput, example = json!({"transaction_id": "r-1", "V1": -1.36, "V2": 0.07, "Amount": 149.62}))]
#[allow(dead_code)]
pub struct FeatureRowInput(serde_json::Map<String, serde_json::Value>);

/// The row model, or 422 naming the endpoint that fits the serving model.
pub(crate) fn row_model(state: &AppState) -> Result<Arc<ServingModel>, ApiError> {
    let model = state.pipeline.model();
    if model.rows().is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "model_reads_transactions",
            format!(
                "the serving model {} reads transactions: send them to /api/v1/transactions",
                model.version()
            ),
        ));
    }
    Ok(model)
}

/// Scores one feature row and stores the decision before answering.
#[utoipa::path(post, path = "/api/v1/predictions", tag = "scoring",
    request_body = FeatureRowInput,
    responses(
        (status = 200, description = "The decision (stored before this response; `Idempotent-Replayed: true` on a replay)", body = fraudlens_pipeline::DecisionView),
        (status = 409, description = "The id was scored before with another row", body = ErrorBody),
        (status = 422, description = "An unknown or mistyped feature, or the serving model reads transactions", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn predict_one(
    State(state): State<Arc<AppState>>,
    Extension(admitted): Extension<Admitted>,
    Json(record): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    row_model(&state)?;
    if !record.is_object() {
        return Err(ApiError::invalid("expected one JSON object of feature values"));
    }
    let _in_flight = state.in_flight.settle(&admitted, 1).await?;
    let scored = state.pipeline.score(&record).await?;
    Ok(decision_response(&scored))
}

/// Scores a batch of feature rows (one commit for all); each succeeds or fails on its own.
#[utoipa::path(post, path = "/api/v1/predictions/batch", tag = "scoring",
    request_body = Vec<FeatureRowInput>,
    responses(
        (status = 200, description = "Per-row results (stored before this response)", body = BatchResponse),
        (status = 422, description = "Not a list of rows, or the serving model reads transactions", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn predict_many(
    State(state): State<Arc<AppState>>,
    Extension(admitted): Extension<Admitted>,
    Json(records): Json<Vec<serde_json::Value>>,
) -> Result<Json<BatchResponse>, ApiError> {
    row_model(&state)?;
    check_batch(&state, &records)?;
    let _in_flight = state.in_flight.settle(&admitted, records.len()).await?;
    Ok(Json(batch_response(state.pipeline.score_many(&records).await)))
}

/// Where the file comes from: a multipart form's `file` field, or the body itself.
enum Source {
    Form(Multipart),
    Body(Body),
}

/// Scores a CSV file of feature rows (the body as `text/csv`, or the
/// multipart field `file`) and answers with one CSV row per input row, in
/// order, while the file streams in.
#[utoipa::path(post, path = "/api/v1/predictions/upload", tag = "scoring",
    request_body(content = String, content_type = "text/csv", description = "A CSV file with a header row of feature names (also accepted: multipart/form-data, field `file`)"),
    responses(
        (status = 200, description = "`line,transaction_id,decision,fraud_probability,score,review_status,replayed,reasons,error`, one row per input row; a file that stops part-way ends with a row saying why and an unterminated body", content_type = "text/csv", body = String),
        (status = 413, description = "`Content-Length` over `max_upload_bytes`: nothing read", body = ErrorBody),
        (status = 422, description = "The header names a column the model does not know, or the serving model reads transactions", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn upload_rows(
    State(state): State<Arc<AppState>>,
    body_timeout: Option<Extension<BodyTimeout>>,
    request: Request,
) -> Result<Response, ApiError> {
    let model = row_model(&state)?;
    let limit = state.config.max_upload_bytes;
    let headers = request.headers();
    refuse_declared_length(headers, limit)?;
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    let source = if multipart {
        let form = Multipart::from_request(request, &()).await.map_err(|rejection| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                rejection.body_text(),
            )
        })?;
        Source::Form(form)
    } else {
        Source::Body(request.into_body())
    };
    // an upload scores one batch at a time, each admitted to the work in flight
    // on its own (a stalled body holds nothing); an overloaded server says so now
    drop(state.in_flight.admit(BATCH).await?);
    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(8);
    let (batch_tx, batch_rx) = mpsc::channel::<Vec<(u64, Result<FeatureRow, String>)>>(4);
    let (bound_tx, bound_rx) = oneshot::channel::<Result<(), String>>();
    let generated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let parser_generated = generated.clone();
    let feed_error: Arc<std::sync::Mutex<Option<ApiError>>> = Arc::default();
    let parser_model = model.clone();
    let parser =
        tokio::task::spawn_blocking(move || parse(&parser_model, chunk_rx, batch_tx, bound_tx, &parser_generated));
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
    let budget = Arc::new(tokio::sync::Semaphore::new(PENDING_OUTPUT));
    let output = Output {
        sender: out_tx,
        budget: budget.clone(),
    };
    let timeout = body_timeout.map(|Extension(timeout)| timeout);
    let task_state = state.clone();
    let shared_feed_error = feed_error.clone();
    tokio::spawn(async move {
        let feed = async {
            let fed = feed(source, chunk_tx, limit, timeout, &shared_feed_error).await;
            fed.map_err(|_| shared_feed_error.lock().ok().and_then(|mut error| error.take()))
        };
        let score = score(&task_state, &model, batch_rx, &output);
        let (fed, scored) = tokio::join!(feed, score);
        let parsed = parser.await.unwrap_or_else(|_| Parsed {
            last_line: 0,
            stopped: Some("the CSV reader stopped".to_owned()),
        });
        let resend = if generated.load(std::sync::atomic::Ordering::Acquire) {
            "send only the rest again: rows without an id got new ones, so a row sent twice is stored twice"
        } else {
            "send the rest again (or the whole file: stored rows come back unchanged)"
        };
        let stop = match (fed, scored, parsed.stopped) {
            (_, Err(stop), _) => Some(format!("{stop}; {resend}")),
            (Err(error), Ok(last_line), _) => Some(format!(
                "{}; the rows up to line {} were processed and the rest was not; {resend}",
                error.map_or_else(
                    || "the upload stopped".to_owned(),
                    |error| format!("{} ({})", error.body.message, error.body.code)
                ),
                last_line.max(parsed.last_line)
            )),
            (Ok(()), Ok(_), Some(reason)) => Some(format!(
                "{reason}; the rows before it were processed and the rest was not; {resend}"
            )),
            (Ok(()), Ok(_), None) => None,
        };
        if let Some(stop) = stop {
            tracing::info!(stop, "prediction upload stopped part-way");
            // past the budget: a client that stopped reading gets it if it reads again
            let _ = output.sender.send(Ok(Bytes::from(csv_line(&[
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                &format!("stopped: {stop}"),
            ]))));
            let _ = output
                .sender
                .send(Err(std::io::Error::other("the upload stopped part-way")));
        }
    });
    // a header cut short by the body's own failure (too large, stalled, no file field): that failure
    let feed_failure = || feed_error.lock().ok().and_then(|mut error| error.take());
    match bound_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => return Err(feed_failure().unwrap_or_else(|| ApiError::invalid(reason))),
        Err(_) => {
            return Err(feed_failure().unwrap_or_else(|| ApiError::invalid("the upload ended before its header row")));
        }
    }
    let stream = futures_util::stream::unfold((out_rx, budget), |(mut out_rx, budget)| async move {
        let item = out_rx.recv().await?;
        match &item {
            Ok(bytes) => budget.add_permits(bytes.len().min(PENDING_OUTPUT)),
            // hyper drops what it has buffered when a body fails: the rows before
            // (and the row saying why it stopped) get time to be written first
            Err(_) => tokio::time::sleep(CUT_OFF_DELAY).await,
        }
        Some((item, (out_rx, budget)))
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    Ok(response)
}

/// The CSV answer's sending side: at most [`PENDING_OUTPUT`] bytes unread.
struct Output {
    sender: mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
    budget: Arc<tokio::sync::Semaphore>,
}

impl Output {
    /// Queues `bytes` once the client has read enough of what came before;
    /// `false` when the client is gone or has read nothing for [`OUTPUT_STALL`].
    async fn send(&self, bytes: Vec<u8>) -> bool {
        if bytes.is_empty() {
            return true;
        }
        let n = u32::try_from(bytes.len().min(PENDING_OUTPUT)).unwrap_or(u32::MAX);
        tokio::select! {
            acquired = tokio::time::timeout(OUTPUT_STALL, self.budget.acquire_many(n)) => match acquired {
                Ok(Ok(permit)) => {
                    permit.forget();
                    self.sender.send(Ok(Bytes::from(bytes))).is_ok()
                }
                _ => false,
            },
            () = self.sender.closed() => false,
        }
    }

    async fn row(&self, cells: &[&str]) -> bool {
        self.send(csv_line(cells)).await
    }
}

fn csv_line(cells: &[&str]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(128));
    let _ = writer.write_record(cells);
    writer.into_inner().unwrap_or_default()
}

/// What the CSV reader saw: the last line it read and, when it stopped early, why.
struct Parsed {
    last_line: u64,
    stopped: Option<String>,
}

/// The blocking side: reads the header (answered on `bound`), then the rows,
/// in batches with their line numbers.
fn parse(
    model: &ServingModel,
    chunks: mpsc::Receiver<Chunk>,
    batches: mpsc::Sender<Vec<(u64, Result<FeatureRow, String>)>>,
    bound: oneshot::Sender<Result<(), String>>,
    generated: &std::sync::atomic::AtomicBool,
) -> Parsed {
    let Some(inputs) = model.rows() else {
        let _ = bound.send(Err("the serving model reads transactions".to_owned()));
        return Parsed {
            last_line: 0,
            stopped: None,
        };
    };
    let mut records = CsvRecords::new(Box::new(ChannelReader::new(chunks)));
    let columns = records
        .header()
        .map_err(|error| format!("the header row: {error}"))
        .and_then(|raw| header_names(&raw))
        .and_then(|header| {
            if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
                return Err("the file is empty: expected a header row of feature names".to_owned());
            }
            let mut seen = std::collections::HashSet::with_capacity(header.len());
            if let Some(twice) = header
                .iter()
                .find(|name| !name.is_empty() && !seen.insert(name.as_str()))
            {
                return Err(format!("the header names column {twice:?} twice"));
            }
            // a column without a name (a DataFrame's index) is not read
            inputs.bind(&header).map(|columns| (columns, header.len()))
        });
    let (columns, n_columns) = match columns {
        Ok(bound_columns) => {
            let _ = bound.send(Ok(()));
            bound_columns
        }
        Err(reason) => {
            let _ = bound.send(Err(reason));
            return Parsed {
                last_line: 0,
                stopped: None,
            };
        }
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_line = 0;
    let mut stopped = None;
    loop {
        match records.next_record() {
            Ok(None) => break,
            Ok(Some((line, record))) => {
                last_line = line;
                batch.push((line, read_row(inputs, &columns, record, n_columns, generated)));
                if batch.len() == BATCH && batches.blocking_send(std::mem::take(&mut batch)).is_err() {
                    break;
                }
            }
            Err(error) => {
                stopped = Some(match error.kind() {
                    csv::ErrorKind::Io(io) => io.to_string(),
                    _ => format!("line {}: {error}", last_line + 1),
                });
                break;
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches.blocking_send(batch);
    }
    Parsed { last_line, stopped }
}

fn header_names(raw: &csv::ByteRecord) -> Result<Vec<String>, String> {
    if raw.len() > MAX_COLUMNS {
        return Err(format!(
            "the header has {} columns; at most {MAX_COLUMNS} are read",
            raw.len()
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(idx, cell)| {
            let cell = if idx == 0 {
                cell.strip_prefix(b"\xef\xbb\xbf").unwrap_or(cell)
            } else {
                cell
            };
            std::str::from_utf8(cell)
                .map(|name| name.trim().to_owned())
                .map_err(|_| format!("the header row: column {} is not UTF-8", idx + 1))
        })
        .collect()
}

fn read_row(
    inputs: &RowInputs,
    columns: &fraudlens_pipeline::RowColumns,
    record: &csv::ByteRecord,
    n_columns: usize,
    generated: &std::sync::atomic::AtomicBool,
) -> Result<FeatureRow, String> {
    if record.len() != n_columns {
        return Err(format!("{} fields where the header has {n_columns}", record.len()));
    }
    let mut cells = Vec::with_capacity(record.len());
    for (idx, cell) in record.iter().enumerate() {
        cells.push(std::str::from_utf8(cell).map_err(|_| format!("column {} is not UTF-8", idx + 1))?);
    }
    inputs.parse_record(
        columns,
        |column| cells.get(column).copied(),
        || {
            generated.store(true, std::sync::atomic::Ordering::Release);
            random_row_id()
        },
    )
}

/// Feeds the file's bytes to the reader, up to `limit`.
async fn feed(
    source: Source,
    chunks: mpsc::Sender<Chunk>,
    limit: usize,
    timeout: Option<BodyTimeout>,
    failed: &std::sync::Mutex<Option<ApiError>>,
) -> Result<(), ()> {
    // the error is recorded before the reader hears of it: a header it cuts
    // short is then answered with this error
    let fail = async |error: ApiError| {
        if let Ok(mut slot) = failed.lock() {
            *slot = Some(error);
        }
        let _ = chunks.send(Err(BodyStopped)).await;
        Err(())
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the upload is larger than {limit} bytes"),
        )
    };
    let mut total = 0usize;
    match source {
        Source::Form(mut form) => {
            let mut field = loop {
                match form.next_field().await {
                    Ok(Some(field)) if field.name() == Some("file") => break field,
                    Ok(Some(_)) => continue,
                    Ok(None) => return fail(ApiError::invalid("no multipart field named \"file\"")).await,
                    Err(error) => return fail(multipart_error(error, timeout.as_ref())).await,
                }
            };
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        total += chunk.len();
                        if total > limit {
                            let failed = fail(too_large()).await;
                            drain(&mut field).await;
                            return failed;
                        }
                        if chunks.send(Ok(chunk)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(error) => return fail(multipart_error(error, timeout.as_ref())).await,
                }
            }
        }
        Source::Body(body) => {
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(chunk) => {
                        total += chunk.len();
                        if total > limit {
                            return fail(too_large()).await;
                        }
                        if chunks.send(Ok(chunk)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(error) => {
                        if timeout.as_ref().is_some_and(BodyTimeout::expired) {
                            return fail(crate::transport::body_timeout_error()).await;
                        }
                        return fail(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_request",
                            format!("the body broke off: {error}"),
                        ))
                        .await;
                    }
                }
            }
            Ok(())
        }
    }
}

/// Scores the parsed batches and writes their answer rows; refused rows are
/// kept as dead letters. The last line processed, or why it stopped.
async fn score(
    state: &AppState,
    model: &Arc<ServingModel>,
    mut batches: mpsc::Receiver<Vec<(u64, Result<FeatureRow, String>)>>,
    output: &Output,
) -> Result<u64, String> {
    let stalled = || "the client stopped reading the answer".to_owned();
    if !output.row(&OUTPUT_HEADER).await {
        return Err(stalled());
    }
    let mut last_line = 0;
    while let Some(batch) = batches.recv().await {
        let (lines, rows): (Vec<u64>, Vec<Result<FeatureRow, String>>) = batch.into_iter().unzip();
        let Ok(in_flight) = state.in_flight.admit(rows.len()).await else {
            return Err(format!(
                "the server is overloaded (503): the rows up to line {last_line} were processed and the rest was not"
            ));
        };
        let results = state
            .pipeline
            .score_rows(
                model,
                rows.into_iter().map(|row| row.map_err(ScoreError::Invalid)).collect(),
            )
            .await;
        drop(in_flight);
        let mut out = Vec::with_capacity(results.len() * 96);
        let mut letters = Vec::new();
        for (line, result) in lines.iter().zip(&results) {
            match result {
                Ok(scored) => out.extend(answer_row(*line, scored)),
                Err(ScoreError::Unavailable(message) | ScoreError::Overloaded(message)) => {
                    output.send(out).await;
                    tracing::warn!(line, message, "prediction upload stopped: decision not stored");
                    return Err(format!(
                        "line {line}: a decision could not be stored; the rows before it were"
                    ));
                }
                Err(error) => {
                    let message = error.to_string();
                    out.extend(csv_line(&[&line.to_string(), "", "", "", "", "", "", "", &message]));
                    letters.push(DeadLetter {
                        at: now(),
                        source: "upload".to_owned(),
                        location: format!("line {line}"),
                        error: message,
                        payload: String::new(),
                    });
                }
            }
            last_line = *line;
        }
        if letters.is_empty() {
            if !output.send(out).await {
                return Err(stalled());
            }
            continue;
        }
        if let Err(error) = state.pipeline.store().put_dead_letters(&letters).await {
            tracing::error!(%error, n_letters = letters.len(), "upload's refused rows not kept as dead letters");
            output.send(out).await;
            return Err(format!(
                "the refused rows up to line {last_line} could not be kept as dead letters; the good rows were stored"
            ));
        }
        if !output.send(out).await {
            return Err(stalled());
        }
    }
    Ok(last_line)
}

fn answer_row(line: u64, scored: &Scored) -> Vec<u8> {
    let record = &scored.record;
    let reasons: Vec<String> = scored
        .reasons()
        .iter()
        .map(|reason| format!("{}:{:+.4}", reason.feature, reason.contribution))
        .collect();
    csv_line(&[
        &line.to_string(),
        &record.transaction_id,
        record.decision.as_str(),
        &record.probability.map(|p| p.to_string()).unwrap_or_default(),
        &record.score.to_string(),
        record.review_status.map_or("", |status| status.as_str()),
        if scored.replayed { "true" } else { "false" },
        &reasons.join(";"),
        "",
    ])
}
