//! The transaction producer: JSON records to a topic, keyed by the primary
//! entity (so one customer's transactions stay in order on one partition),
//! with an idempotent producer (no duplicates from its own retries).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::StreamError;

/// `kafka://HOST:PORT[,HOST:PORT…]/TOPIC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTarget {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic.
    pub topic: String,
}

impl KafkaTarget {
    /// Parses `kafka://HOST:PORT/TOPIC`.
    pub fn parse(text: &str) -> Result<Self, StreamError> {
        let rest = text
            .strip_prefix("kafka://")
            .ok_or_else(|| StreamError::Target(text.to_owned()))?;
        let (brokers, topic) = rest
            .split_once('/')
            .ok_or_else(|| StreamError::Target(text.to_owned()))?;
        if brokers.is_empty() || topic.is_empty() || topic.contains('/') {
            return Err(StreamError::Target(text.to_owned()));
        }
        Ok(Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
        })
    }
}

/// Sends records, keeping a bounded number in flight.
pub struct Producer {
    producer: FutureProducer,
    topic: String,
    in_flight: Vec<rdkafka::producer::DeliveryFuture>,
    sent: u64,
}

const MAX_IN_FLIGHT: usize = 10_000;

impl Producer {
    /// An idempotent producer for `target`.
    pub fn new(target: &KafkaTarget) -> Result<Self, StreamError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &target.brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            .create()?;
        Ok(Self {
            producer,
            topic: target.topic.clone(),
            in_flight: Vec::new(),
            sent: 0,
        })
    }

    /// Queues one record (waits for earlier deliveries when too many are in flight).
    pub async fn send(&mut self, key: &str, payload: &[u8]) -> Result<(), StreamError> {
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.wait().await?;
        }
        loop {
            match self
                .producer
                .send_result(FutureRecord::to(&self.topic).key(key).payload(payload))
            {
                Ok(delivery) => {
                    self.in_flight.push(delivery);
                    self.sent += 1;
                    return Ok(());
                }
                // the local queue is full: let deliveries drain
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    _,
                )) => {
                    self.wait().await?;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }

    /// Waits until every queued record is acknowledged by the broker.
    pub async fn wait(&mut self) -> Result<(), StreamError> {
        for delivery in self.in_flight.drain(..) {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(error.into()),
                Err(_) => return Err(StreamError::Unavailable("delivery cancelled".to_owned())),
            }
        }
        Ok(())
    }

    /// Records sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Waits for every delivery and flushes the client.
    pub async fn finish(mut self) -> Result<u64, StreamError> {
        self.wait().await?;
        self.producer.flush(Duration::from_secs(30))?;
        Ok(self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let target = KafkaTarget::parse("kafka://127.0.0.1:9092/transactions").unwrap();
        assert_eq!(
            (target.brokers.as_str(), target.topic.as_str()),
            ("127.0.0.1:9092", "transactions")
        );
        for bad in ["127.0.0.1:9092/t", "kafka://host:1", "kafka:///t", "kafka://h:1/a/b"] {
            assert!(KafkaTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
