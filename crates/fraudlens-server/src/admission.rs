//! Admission of scoring work: the budget of transactions in flight, which
//! bounds the memory and the queueing of scoring, so that an overload is shed
//! (503 + `Retry-After`) instead of answered late by everyone.
//!
//! A JSON scoring request is admitted **before its body is parsed**
//! ([`admit_before_parsing`]): the body is read as bytes, its transactions
//! are estimated from its size (bytes per transaction learnt from the bodies
//! parsed so far), and the request waits for that much room. A refused
//! request therefore costs a read and a 503, never a JSON parse: under a
//! flood of batches, parsing bodies only to refuse them would take the CPU
//! the admitted ones need. Once parsed, the handler settles the estimate
//! with the real count ([`InFlight::settle`]): more room if it was low,
//! the surplus given back at once if it was high (a body padded with
//! whitespace must not hold the budget while its one transaction is scored).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest as _, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::AppState;
use crate::error::ApiError;

/// Longest time a scoring request waits for room in the in-flight budget before 503.
pub const ADMISSION_WAIT: Duration = Duration::from_millis(500);

/// Bytes per transaction assumed before any body has been parsed (a
/// transaction of the simulator's schema is about 200 bytes of JSON).
const INITIAL_BYTES_PER_TRANSACTION: usize = 256;

/// What one body may teach the estimate, in bytes per transaction: a padded
/// or minimal body moves it only within this range.
const LEARNED_BYTES_PER_TRANSACTION: std::ops::RangeInclusive<usize> = 32..=4_096;

/// The budget of transactions in flight and the queue of requests waiting for it.
#[derive(Debug)]
pub struct InFlight {
    budget: usize,
    /// One permit per transaction being scored.
    permits: Arc<Semaphore>,
    /// Transactions of the requests waiting for permits.
    queued: AtomicUsize,
    /// Moving average of the JSON bytes per transaction of parsed bodies.
    bytes_per_transaction: AtomicUsize,
}

impl InFlight {
    /// A budget of `budget` transactions (at least one).
    pub fn new(budget: usize) -> Self {
        let budget = budget.max(1);
        Self {
            budget,
            permits: Arc::new(Semaphore::new(budget)),
            queued: AtomicUsize::new(0),
            bytes_per_transaction: AtomicUsize::new(INITIAL_BYTES_PER_TRANSACTION),
        }
    }

    /// Transactions that may be in flight at once.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Room for `n_transactions` more in flight, held until the permit drops.
    /// When the budget is spent, the request waits up to [`ADMISSION_WAIT`]
    /// in a queue that holds at most the budget again, so the pipeline stays
    /// fed between requests while memory stays bounded; otherwise 503
    /// (`overloaded`, `Retry-After`). A request larger than the whole budget
    /// waits for the whole budget instead of never fitting.
    pub async fn admit(&self, n_transactions: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let n_permits = n_transactions.clamp(1, self.budget);
        let n_permits_u32 = u32::try_from(n_permits).unwrap_or(u32::MAX);
        if let Ok(permit) = self.permits.clone().try_acquire_many_owned(n_permits_u32) {
            return Ok(permit);
        }
        let queue = QueueEntry::join(&self.queued, n_permits);
        if queue.n_queued > self.budget {
            return Err(shed());
        }
        match tokio::time::timeout(ADMISSION_WAIT, self.permits.clone().acquire_many_owned(n_permits_u32)).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(shed()),
        }
    }

    /// Settles an admission with the parsed count: the room of the estimate,
    /// less its surplus (given back at once) or plus what it missed (taken if
    /// free; else the room is given back and the whole count admitted as
    /// [`Self::admit`] does), held until the returned permit drops.
    pub async fn settle(&self, admitted: &Admitted, n_transactions: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        self.learn(admitted.body_bytes, n_transactions);
        let wanted = n_transactions.clamp(1, self.budget);
        let held = admitted
            .permit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(mut permit) = held else {
            return self.admit(wanted).await;
        };
        let reserved = permit.num_permits();
        if reserved > wanted {
            drop(permit.split(reserved - wanted));
        } else if reserved < wanted {
            let missing = u32::try_from(wanted - reserved).unwrap_or(u32::MAX);
            match self.permits.clone().try_acquire_many_owned(missing) {
                Ok(more) => permit.merge(more),
                // never wait while holding room: requests holding part of the
                // budget and waiting for the rest would block each other
                Err(_) => {
                    drop(permit);
                    return self.admit(wanted).await;
                }
            }
        }
        Ok(permit)
    }

    /// The transactions a JSON body of `body_bytes` is expected to hold (at least one).
    fn estimate(&self, body_bytes: usize) -> usize {
        let per_transaction = self.bytes_per_transaction.load(Ordering::Relaxed).max(1);
        (body_bytes / per_transaction).clamp(1, self.budget)
    }

    /// Learns from a parsed body: `body_bytes` held `n_transactions`.
    fn learn(&self, body_bytes: usize, n_transactions: usize) {
        if n_transactions == 0 {
            return;
        }
        let sample = (body_bytes / n_transactions).clamp(
            *LEARNED_BYTES_PER_TRANSACTION.start(),
            *LEARNED_BYTES_PER_TRANSACTION.end(),
        );
        // a moving average over about eight bodies; a lost race loses one sample
        let old = self.bytes_per_transaction.load(Ordering::Relaxed);
        self.bytes_per_transaction
            .store(((old * 7 + sample + 4) / 8).max(1), Ordering::Relaxed);
    }
}

/// The answer to a shed scoring request, counted.
fn shed() -> ApiError {
    metrics::counter!("http_requests_shed_total").increment(1);
    ApiError::overloaded("too many transactions in flight; retry shortly")
}

/// A request's place in the admission queue: its transactions count as
/// queued until it is admitted or gives up.
struct QueueEntry<'a> {
    queue: &'a AtomicUsize,
    n_permits: usize,
    /// Transactions queued, this request's included.
    n_queued: usize,
}

impl<'a> QueueEntry<'a> {
    fn join(queue: &'a AtomicUsize, n_permits: usize) -> Self {
        let n_queued = queue.fetch_add(n_permits, Ordering::AcqRel) + n_permits;
        Self {
            queue,
            n_permits,
            n_queued,
        }
    }
}

impl Drop for QueueEntry<'_> {
    fn drop(&mut self) {
        self.queue.fetch_sub(self.n_permits, Ordering::AcqRel);
    }
}

/// Request extension set by [`admit_before_parsing`]: the room admitted for
/// the body, held until the handler settles it ([`InFlight::settle`]) or
/// the request ends.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// Transactions admitted (the estimate).
    pub transactions: usize,
    /// Size of the body the estimate came from.
    pub body_bytes: usize,
    /// The room itself; taken by the settlement.
    permit: Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>,
}

/// Middleware of the JSON scoring routes (behind authentication): reads the
/// body, waits for room for its estimated transactions (503 when there is
/// none in time), and hands the handler the body and that room ([`Admitted`]).
pub async fn admit_before_parsing(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    // read as `Bytes` extracts it: the body limit and its 413 stay the same
    let bytes = match Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await {
        Ok(bytes) => bytes,
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    let (body_bytes, transactions) = (bytes.len(), state.in_flight.estimate(bytes.len()));
    let permit = match state.in_flight.admit(transactions).await {
        Ok(permit) => permit,
        Err(error) => return error.into_response(),
    };
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(Admitted {
        transactions,
        body_bytes,
        permit: Arc::new(std::sync::Mutex::new(Some(permit))),
    });
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_follows_the_bodies_parsed() {
        let in_flight = InFlight::new(10_000);
        assert_eq!(in_flight.estimate(0), 1);
        assert_eq!(in_flight.estimate(256 * 100), 100);
        for _ in 0..40 {
            in_flight.learn(100_000, 1_000);
        }
        let per_transaction = in_flight.bytes_per_transaction.load(Ordering::Relaxed);
        assert!((96..=104).contains(&per_transaction), "{per_transaction}");
        assert_eq!(in_flight.estimate(10_000_000), 10_000, "clamped to the budget");
        // an empty batch teaches nothing
        in_flight.learn(5, 0);
        assert_eq!(in_flight.bytes_per_transaction.load(Ordering::Relaxed), per_transaction);
    }

    #[test]
    fn a_padded_or_minimal_body_moves_the_estimate_only_within_bounds() {
        let in_flight = InFlight::new(10_000);
        for _ in 0..100 {
            in_flight.learn(10_000_000, 1);
        }
        let high = in_flight.bytes_per_transaction.load(Ordering::Relaxed);
        assert!((4_000..=4_096).contains(&high), "{high}");
        for _ in 0..100 {
            in_flight.learn(2, 1);
        }
        let low = in_flight.bytes_per_transaction.load(Ordering::Relaxed);
        assert!((32..=40).contains(&low), "{low}");
    }

    /// An admission as the middleware leaves it: `estimate` transactions held.
    async fn admitted(in_flight: &InFlight, estimate: usize) -> Admitted {
        Admitted {
            transactions: estimate,
            body_bytes: estimate * 200,
            permit: Arc::new(std::sync::Mutex::new(Some(in_flight.admit(estimate).await.unwrap()))),
        }
    }

    #[tokio::test]
    async fn settling_gives_back_a_surplus_at_once_and_waits_for_a_shortfall() {
        let in_flight = InFlight::new(100);
        // a padded body: estimated at the whole budget, one transaction inside
        let padded = admitted(&in_flight, 100).await;
        assert_eq!(in_flight.available(), 0);
        let held = in_flight.settle(&padded, 1).await.unwrap();
        assert_eq!(held.num_permits(), 1);
        assert_eq!(in_flight.available(), 99, "the surplus is free while it is scored");
        // an estimate that was low: the rest is added to the same permit
        let low = admitted(&in_flight, 10).await;
        let more = in_flight.settle(&low, 50).await.unwrap();
        assert_eq!(more.num_permits(), 50);
        assert_eq!(in_flight.available(), 49);
        drop((held, more));
        assert_eq!(in_flight.available(), 100);
        // an admission nobody settles gives its room back with the request
        drop(admitted(&in_flight, 30).await);
        assert_eq!(in_flight.available(), 100);
    }

    #[tokio::test]
    async fn a_full_budget_and_a_full_queue_shed_at_once() {
        let in_flight = InFlight::new(10);
        let held = in_flight.admit(10).await.unwrap();
        assert_eq!(in_flight.available(), 0);
        // the queue holds at most the budget again: one request of 10 waits ...
        let waiting = in_flight.admit(10);
        // ... a second finds the queue full: refused without waiting
        let (waited, refused) = tokio::join!(waiting, async {
            tokio::task::yield_now().await;
            in_flight.admit(1).await
        });
        assert!(refused.is_err());
        assert!(waited.is_err(), "nothing was released within the wait");
        drop(held);
        assert!(in_flight.admit(10).await.is_ok());
    }
}
