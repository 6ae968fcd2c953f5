//! One connection to the broker with its two channels: a publishing channel
//! in confirm mode and a consuming channel whose consumer feeds the receive
//! buffer. A reconnect replaces the whole session and bumps its generation.

use crate::consumer::{pump, Buffered, Health, Leases};
use crate::message::failure;
use crate::settings::{redacted_url, AmqpSettings};
use crate::topology::Topology;
use hookline_core::queue::QueueError;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Maximum time to open a connection, its channels and declare the topology.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest AMQP frame proposed when the URL sets no `frame_max`. lapin
/// keeps a receive and a send buffer of 32 frames each, zero-filled, so
/// RabbitMQ's default of 128 KiB would hold 8 MiB per connection; 32 KiB
/// frames hold 2 MiB. A larger message body goes out as several frames.
const DEFAULT_FRAME_MAX: u32 = 32 * 1024;

/// Interval of the check that catches a channel closed by the broker while
/// the consumer still runs (a publishing channel closed by a failed
/// declaration, say).
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A live connection. Dropping it stops the consumer task and closes the
/// connection, which makes the broker requeue every unacknowledged delivery.
pub(crate) struct Session {
    pub(crate) generation: u16,
    connection: Connection,
    publisher: Channel,
    consumer_channel: Channel,
    pub(crate) leases: Arc<Leases>,
    /// Delay queues declared on this connection, by delay in milliseconds.
    delay_queues: Mutex<BTreeSet<u64>>,
    health: Arc<Health>,
    /// The consumer task; `None` in a publish-only session.
    pump: Option<AbortHandle>,
}

impl Session {
    /// Connects, declares the topology and, unless the session only
    /// publishes, starts consuming the main queue.
    pub(crate) async fn open(
        settings: &AmqpSettings,
        topology: &Topology,
        generation: u16,
        buffer: mpsc::UnboundedSender<Buffered>,
    ) -> Result<Arc<Self>, QueueError> {
        let opened = tokio::time::timeout(
            OPEN_TIMEOUT,
            Self::open_channels(settings, topology, generation, buffer),
        )
        .await;
        let session = match opened {
            Ok(Ok(session)) => session,
            Ok(Err(error)) => {
                let url = redacted_url(&settings.url);
                return Err(QueueError::new(
                    format!(
                        "failed to connect to RabbitMQ at {url} and declare queue {}",
                        topology.main()
                    ),
                    error,
                ));
            }
            Err(_) => {
                return Err(failure(format!(
                    "timed out after {OPEN_TIMEOUT:?} connecting to RabbitMQ at {}",
                    redacted_url(&settings.url)
                )))
            }
        };
        Ok(Arc::new(session))
    }

    async fn open_channels(
        settings: &AmqpSettings,
        topology: &Topology,
        generation: u16,
        buffer: mpsc::UnboundedSender<Buffered>,
    ) -> lapin::Result<Self> {
        let properties =
            ConnectionProperties::default().with_connection_name("hookline delivery queue".into());
        let connection = match connection_uri(&settings.url) {
            Some(uri) => Connection::connect_uri(uri, properties).await?,
            // lapin reports why the URL is invalid.
            None => Connection::connect(&settings.url, properties).await?,
        };
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        topology.declare(&publisher).await?;

        let consumer_channel = connection.create_channel().await?;
        let leases = Arc::new(Leases::default());
        let health = Arc::new(Health::default());
        let pump = if settings.consume {
            consumer_channel
                .basic_qos(settings.prefetch, BasicQosOptions { global: false })
                .await?;
            let consumer = consumer_channel
                .basic_consume(
                    topology.main().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let task = tokio::spawn(pump(
                consumer,
                generation,
                leases.clone(),
                buffer,
                health.clone(),
            ));
            Some(task.abort_handle())
        } else {
            None
        };
        Ok(Self {
            generation,
            connection,
            publisher,
            consumer_channel,
            leases,
            delay_queues: Mutex::new(topology.steps().iter().copied().collect()),
            health,
            pump,
        })
    }

    pub(crate) fn publisher(&self) -> &Channel {
        &self.publisher
    }

    pub(crate) async fn create_channel(&self) -> Result<Channel, QueueError> {
        self.connection
            .create_channel()
            .await
            .map_err(|error| QueueError::new("failed to open a RabbitMQ channel", error))
    }

    /// Declares the delay queue for `delay_ms` unless this connection already
    /// declared it.
    pub(crate) async fn ensure_delay_queue(
        &self,
        topology: &Topology,
        delay_ms: u64,
    ) -> Result<(), QueueError> {
        if self.delay_queue_set().contains(&delay_ms) {
            return Ok(());
        }
        topology
            .declare_delay(&self.publisher, delay_ms)
            .await
            .map_err(|error| {
                let name = topology.delay_queue(delay_ms);
                QueueError::new(format!("failed to declare delay queue {name}"), error)
            })?;
        self.delay_queue_set().insert(delay_ms);
        Ok(())
    }

    /// Delays, in milliseconds, of the delay queues declared on this
    /// connection.
    pub(crate) fn delay_queues(&self) -> Vec<u64> {
        self.delay_queue_set().iter().copied().collect()
    }

    fn delay_queue_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.delay_queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the consumer stops or a channel is closed, and returns
    /// the reason.
    pub(crate) async fn failed(&self) -> String {
        loop {
            tokio::select! {
                _ = self.health.failed() => return self.health.reason(),
                _ = tokio::time::sleep(HEALTH_CHECK_INTERVAL) => {
                    if let Some(reason) = self.closed_part() {
                        return reason.into();
                    }
                }
            }
        }
    }

    fn closed_part(&self) -> Option<&'static str> {
        if !self.connection.status().connected() {
            Some("the connection is closed")
        } else if !self.publisher.status().connected() {
            Some("the publishing channel is closed")
        } else if !self.consumer_channel.status().connected() {
            Some("the consuming channel is closed")
        } else {
            None
        }
    }

    /// Closes the connection; the broker requeues unacknowledged deliveries.
    pub(crate) async fn close(&self) {
        if let Some(pump) = &self.pump {
            pump.abort();
        }
        if let Err(error) = self.connection.close(200, "OK".into()).await {
            tracing::debug!(%error, "Closing the RabbitMQ connection failed");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(pump) = &self.pump {
            pump.abort();
        }
    }
}

/// Parses `url` and proposes [`DEFAULT_FRAME_MAX`] unless the URL sets
/// `frame_max` itself. Returns `None` for a URL that does not parse.
fn connection_uri(url: &str) -> Option<AMQPUri> {
    let mut uri: AMQPUri = url.parse().ok()?;
    uri.query.frame_max.get_or_insert(DEFAULT_FRAME_MAX);
    Some(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_max_defaults_unless_set() {
        let plain = connection_uri("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(plain.query.frame_max, Some(DEFAULT_FRAME_MAX));

        let explicit =
            connection_uri("amqp://guest:guest@127.0.0.1:5672/%2f?frame_max=131072").unwrap();
        assert_eq!(explicit.query.frame_max, Some(131_072));
        assert_eq!(explicit.authority.userinfo.username, "guest");

        assert!(connection_uri("not a url").is_none());
    }
}
