//! The group-commit writer: one task owns every write of decisions. It takes
//! the first waiting job, then everything else already queued (up to
//! `max_rows` decisions), writes them in one database transaction and answers
//! each job. While a commit waits for the disk, the next batch accumulates, so
//! the batch size follows the load.
//!
//! The shadow model's scores are written by this task too, in small pieces
//! inside the decision commits ([`Store::put_decisions_with_shadow`]: at most
//! twice the batch's rows, or [`SHADOW_PIECE`]), and on their own only when
//! no decision has come for [`SHADOW_IDLE`]. Measured with
//! `bench/shadow_p99.sh`: a second SQLite writer made decision commits sleep
//! in the busy handler (half-rate p99 from 9 to 58 ms), and 500-row shadow
//! transactions between commits held the decisions behind them (7.5 to
//! 20 ms).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraudlens_store::{NewDecision, PutOutcome, ShadowScore, Store};
use tokio::sync::{mpsc, oneshot};

/// Shadow rows a decision commit takes at least (when that many wait).
pub(crate) const SHADOW_PIECE: usize = 64;

/// Shadow rows waiting for a commit (beyond: dropped, counted).
pub(crate) const SHADOW_BACKLOG: usize = 100_000;

/// Without decisions for this long, waiting shadow rows are written on their own.
pub(crate) const SHADOW_IDLE: Duration = Duration::from_millis(500);

/// Shadow rows per transaction of their own.
const SHADOW_ALONE: usize = 500;

/// The records back, with the outcome of each (or why the commit failed).
pub(crate) type Reply = (Vec<NewDecision>, Result<Vec<PutOutcome>, String>);

/// Decisions to write and where to send them back with the outcome.
pub(crate) struct Job {
    pub records: Vec<NewDecision>,
    pub reply: oneshot::Sender<Reply>,
}

pub(crate) enum Message {
    Write(Job),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// From the shadow model's thread, on a channel of its own (never taking a
/// decision's place in the queue).
pub(crate) enum ShadowMessage {
    Scores(Vec<ShadowScore>),
    /// Answered once every score sent before it is written (or failed to be).
    Flush(oneshot::Sender<()>),
}

pub(crate) async fn run(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<Message>,
    mut shadow: mpsc::Receiver<ShadowMessage>,
    max_rows: usize,
) {
    let mut backlog = Backlog::default();
    let mut pending: Option<Message> = None;
    let mut shadow_open = true;
    loop {
        let first = match pending.take() {
            Some(message) => message,
            None => tokio::select! {
                biased;
                message = receiver.recv() => match message {
                    Some(message) => message,
                    None => {
                        backlog.write_all(store.as_ref()).await;
                        return;
                    }
                },
                message = shadow.recv(), if shadow_open => {
                    match message {
                        Some(ShadowMessage::Scores(scores)) => backlog.push(scores),
                        Some(ShadowMessage::Flush(reply)) => {
                            backlog.write_all(store.as_ref()).await;
                            let _ = reply.send(());
                        }
                        None => shadow_open = false,
                    }
                    continue;
                }
                () = tokio::time::sleep(SHADOW_IDLE), if !backlog.is_empty() => {
                    backlog.write_alone(store.as_ref()).await;
                    continue;
                }
            },
        };
        let mut jobs = match first {
            Message::Flush(reply) => {
                let _ = reply.send(());
                continue;
            }
            Message::Write(job) => vec![job],
        };
        let mut rows = jobs[0].records.len();
        while rows < max_rows {
            match receiver.try_recv() {
                Ok(Message::Write(job)) => {
                    rows += job.records.len();
                    jobs.push(job);
                }
                Ok(other) => {
                    // write what came before a flush first
                    pending = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        // the shadow's scores waiting now ride along (up to a flush of the shadow's)
        let mut shadow_flush = None;
        while shadow_open {
            match shadow.try_recv() {
                Ok(ShadowMessage::Scores(scores)) => backlog.push(scores),
                Ok(ShadowMessage::Flush(reply)) => {
                    shadow_flush = Some(reply);
                    break;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => shadow_open = false,
            }
        }
        commit(store.as_ref(), jobs, &mut backlog).await;
        if let Some(reply) = shadow_flush {
            backlog.write_all(store.as_ref()).await;
            let _ = reply.send(());
        }
    }
}

/// Shadow scores waiting to be written.
#[derive(Default)]
struct Backlog {
    rows: VecDeque<ShadowScore>,
    /// The last write failed (logged once per streak).
    failing: bool,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn push(&mut self, scores: Vec<ShadowScore>) {
        let room = SHADOW_BACKLOG.saturating_sub(self.rows.len());
        if scores.len() > room {
            metrics::counter!("fraudlens_shadow_dropped_total").increment((scores.len() - room) as u64);
        }
        self.rows.extend(scores.into_iter().take(room));
    }

    /// The next piece to write beside a batch of `decisions` rows.
    fn piece(&mut self, decisions: usize) -> Vec<ShadowScore> {
        let n = self.rows.len().min((2 * decisions).max(SHADOW_PIECE));
        self.rows.drain(..n).collect()
    }

    fn written(&mut self, rows: usize, result: Result<(), String>) {
        match result {
            Ok(()) => {
                if self.failing {
                    tracing::info!("shadow scores are stored again");
                }
                self.failing = false;
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(%error, rows, "storing shadow scores failed: they are dropped");
                }
                self.failing = true;
                metrics::counter!("fraudlens_shadow_write_failures_total").increment(rows as u64);
            }
        }
    }

    /// One transaction of waiting scores alone.
    async fn write_alone(&mut self, store: &dyn Store) {
        let n = self.rows.len().min(SHADOW_ALONE);
        let piece: Vec<ShadowScore> = self.rows.drain(..n).collect();
        let result = store.put_shadow_scores(&piece).await.map_err(|error| error.to_string());
        self.written(piece.len(), result);
    }

    async fn write_all(&mut self, store: &dyn Store) {
        while !self.is_empty() {
            self.write_alone(store).await;
        }
    }
}

async fn commit(store: &dyn Store, jobs: Vec<Job>, backlog: &mut Backlog) {
    let mut batch = Vec::with_capacity(jobs.iter().map(|job| job.records.len()).sum());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        replies.push((job.records.len(), job.reply));
        batch.extend(job.records);
    }
    let shadow = backlog.piece(batch.len());
    let started = Instant::now();
    let result = if shadow.is_empty() {
        store.put_decisions(&batch).await
    } else {
        match store.put_decisions_with_shadow(&batch, &shadow).await {
            Ok((outcomes, stored)) => {
                backlog.written(shadow.len(), stored.map_err(|error| error.to_string()));
                Ok(outcomes)
            }
            Err(error) => {
                backlog.written(shadow.len(), Err(error.to_string()));
                Err(error)
            }
        }
    };
    let backend = store.backend();
    metrics::histogram!("store_commit_duration_seconds", "backend" => backend).record(started.elapsed().as_secs_f64());
    metrics::histogram!("store_commit_batch_size", "backend" => backend).record(batch.len() as f64);
    let mut records = batch.into_iter();
    match result {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (n, reply) in replies {
                let _ = reply.send((
                    records.by_ref().take(n).collect(),
                    Ok(outcomes.by_ref().take(n).collect()),
                ));
            }
        }
        Err(error) => {
            metrics::counter!("store_commit_errors_total", "backend" => backend).increment(1);
            tracing::error!(%error, rows = records.len(), "commit failed; the requests get 503");
            let message = error.to_string();
            for (n, reply) in replies {
                let _ = reply.send((records.by_ref().take(n).collect(), Err(message.clone())));
            }
        }
    }
}
