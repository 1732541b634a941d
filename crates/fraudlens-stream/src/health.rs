//! What the detector's readiness probe reports: whether the brokers are
//! reachable, whether this member holds any partition of the transactions
//! topic, and whether a batch is stuck past its retry bound.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The detector's view of its own health, updated by the Kafka callbacks and
/// the batches; read by `/health/ready`.
#[derive(Debug, Default)]
pub struct Health {
    /// librdkafka reported every broker down, and no statistics since showed one up.
    brokers_down: AtomicBool,
    /// Partitions of the transactions topic assigned to this member.
    assigned: AtomicUsize,
    /// Batches that have failed more than their quiet retries and are still retrying.
    stalled: AtomicUsize,
    /// An assignment was received at least once (before it, "no partitions" is just startup).
    joined: AtomicBool,
}

impl Health {
    /// `Ok` when ready; else every reason it is not.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if self.brokers_down.load(Ordering::Acquire) {
            reasons.push("every Kafka broker is down".to_owned());
        }
        if self.assigned.load(Ordering::Acquire) == 0 {
            reasons.push(if self.joined.load(Ordering::Acquire) {
                "no partition of the transactions topic is assigned to this member (a standby member, or the topic is gone)".to_owned()
            } else {
                "not yet assigned any partition".to_owned()
            });
        }
        let stalled = self.stalled.load(Ordering::Acquire);
        if stalled > 0 {
            reasons.push(format!(
                "{stalled} batch(es) cannot complete and are being retried (see the log and batch_retries_total)"
            ));
        }
        if reasons.is_empty() { Ok(()) } else { Err(reasons) }
    }

    pub(crate) fn set_brokers_down(&self, down: bool) {
        if self.brokers_down.swap(down, Ordering::AcqRel) != down {
            metrics::gauge!("kafka_brokers_down").set(f64::from(u8::from(down)));
            if down {
                tracing::error!("every Kafka broker is down: not ready");
            } else {
                tracing::info!("a Kafka broker is up again");
            }
        }
    }

    pub(crate) fn set_assigned(&self, partitions: usize) {
        self.joined.store(true, Ordering::Release);
        self.assigned.store(partitions, Ordering::Release);
        metrics::gauge!("kafka_assigned_partitions").set(partitions as f64);
    }

    pub(crate) fn stall(&self) {
        let stalled = self.stalled.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!("detector_stalled_batches").set(stalled as f64);
    }

    pub(crate) fn unstall(&self) {
        let stalled = self.stalled.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        metrics::gauge!("detector_stalled_batches").set(stalled as f64);
    }
}
