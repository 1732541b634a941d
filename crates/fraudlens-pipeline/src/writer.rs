//! The group-commit writer: one task owns every write of decisions. It takes
//! the first waiting job, then everything else already queued (up to
//! `max_rows` decisions), writes them in one database transaction and answers
//! each job. While a commit waits for the disk, the next batch accumulates, so
//! the batch size follows the load.

use std::sync::Arc;
use std::time::Instant;

use fraudlens_store::{NewDecision, PutOutcome, Store};
use tokio::sync::{mpsc, oneshot};

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

pub(crate) async fn run(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<Message>, max_rows: usize) {
    let mut pending: Option<Message> = None;
    loop {
        let first = match pending.take() {
            Some(message) => message,
            None => match receiver.recv().await {
                Some(message) => message,
                None => return,
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
                Ok(flush) => {
                    // write what came before the flush first
                    pending = Some(flush);
                    break;
                }
                Err(_) => break,
            }
        }
        commit(store.as_ref(), jobs).await;
    }
}

async fn commit(store: &dyn Store, jobs: Vec<Job>) {
    let mut batch = Vec::with_capacity(jobs.iter().map(|job| job.records.len()).sum());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        replies.push((job.records.len(), job.reply));
        batch.extend(job.records);
    }
    let started = Instant::now();
    let result = store.put_decisions(&batch).await;
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
