//! [`AmqpQueue`]: construction, shutdown and the [`DeliveryQueue`] impl.
//! Receiving and settling live in `receive.rs` and `settle.rs`.

use crate::consumer::Buffered;
use crate::message::{failure, publish_confirmed, Outgoing};
use crate::session::Session;
use crate::settings::{redacted_url, AmqpSettings};
use crate::supervisor::supervise;
use crate::topology::{declare_passive, Topology};
use async_trait::async_trait;
use hookline_core::queue::{
    DeliveryQueue, DeliveryTask, Leased, QueueDepth, QueueError, Settlement,
};
use lapin::Channel;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Maximum time `enqueue`, `settle` and `depth` wait for a reconnect before
/// they fail; their callers retry.
pub(crate) const RECONNECT_WAIT: Duration = Duration::from_secs(2);

/// State shared by the queue and its reconnect task.
pub(crate) struct Shared {
    pub(crate) settings: AmqpSettings,
    pub(crate) topology: Topology,
    /// The live session, or `None` while reconnecting.
    session: watch::Sender<Option<Arc<Session>>>,
    buffer: mpsc::UnboundedSender<Buffered>,
}

impl Shared {
    pub(crate) async fn open_session(&self, generation: u16) -> Result<Arc<Session>, QueueError> {
        Session::open(
            &self.settings,
            &self.topology,
            generation,
            self.buffer.clone(),
        )
        .await
    }

    pub(crate) fn set_session(&self, session: Option<Arc<Session>>) {
        self.session.send_replace(session);
    }

    pub(crate) fn current_session(&self) -> Option<Arc<Session>> {
        self.session.borrow().clone()
    }

    /// Returns the live session, waiting up to `wait` for a reconnect.
    pub(crate) async fn session(&self, wait: Duration) -> Result<Arc<Session>, QueueError> {
        let mut changes = self.session.subscribe();
        let ready = tokio::time::timeout(wait, changes.wait_for(Option::is_some)).await;
        match ready {
            Ok(Ok(session)) => Ok(session.clone().expect("wait_for checked Some")),
            _ => Err(failure(format!(
                "not connected to RabbitMQ at {}; reconnecting in the background, retry later",
                redacted_url(&self.settings.url)
            ))),
        }
    }
}

/// A [`DeliveryQueue`] on a RabbitMQ quorum queue. See the crate
/// documentation for the topology and the delivery guarantees.
pub struct AmqpQueue {
    pub(crate) shared: Arc<Shared>,
    pub(crate) buffer: Mutex<mpsc::UnboundedReceiver<Buffered>>,
    shutdown: CancellationToken,
    supervisor: JoinHandle<()>,
}

impl AmqpQueue {
    /// Connects, declares the queues and starts consuming. Fails when the
    /// settings are invalid or the first connection fails; after that, lost
    /// connections are reopened in the background.
    pub async fn connect(settings: AmqpSettings) -> Result<Arc<Self>, QueueError> {
        settings.validate()?;
        let topology = Topology::new(&settings);
        let (buffer_sender, buffer) = mpsc::unbounded_channel();
        let (session, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            settings,
            topology,
            session,
            buffer: buffer_sender,
        });
        let first = shared.open_session(0).await?;
        shared.set_session(Some(first.clone()));
        tracing::info!(
            url = %redacted_url(&shared.settings.url),
            queue = shared.topology.main(),
            delay_queues = shared.topology.steps().len(),
            prefetch = shared.settings.prefetch,
            "Connected to RabbitMQ"
        );

        let shutdown = CancellationToken::new();
        let supervisor = tokio::spawn(supervise(shared.clone(), first, shutdown.clone()));
        Ok(Arc::new(Self {
            shared,
            buffer: Mutex::new(buffer),
            shutdown,
            supervisor,
        }))
    }

    /// Stops reconnecting and closes the connection. The broker requeues
    /// every delivery that was received and not settled.
    pub async fn close(&self) {
        self.shutdown.cancel();
        let session = self.shared.session.send_replace(None);
        if let Some(session) = session {
            session.close().await;
        }
        tracing::info!(
            queue = self.shared.topology.main(),
            "RabbitMQ connection closed"
        );
    }

    async fn read_depth(&self) -> Result<QueueDepth, QueueError> {
        let session = self.shared.session(RECONNECT_WAIT).await?;
        // A passive declaration of a missing queue closes its channel, so
        // depth reads never use the publishing channel.
        let channel = session.create_channel().await?;
        let topology = &self.shared.topology;

        let main = declare_passive(&channel, topology.main())
            .await
            .map_err(depth_failed(topology.main()))?;
        let dead = declare_passive(&channel, topology.dead_letter())
            .await
            .map_err(depth_failed(topology.dead_letter()))?;
        let scheduled = self.scheduled_count(&session, &channel).await?;
        let _ = channel.close(200, "OK".into()).await;

        Ok(QueueDepth {
            ready: u64::from(main.message_count()),
            scheduled,
            leased: u64::try_from(session.leases.len()).unwrap_or(u64::MAX),
            dead: u64::from(dead.message_count()),
            oldest_ready_age_secs: None,
        })
    }

    /// Sums the ready counts of the delay queues this connection declared.
    async fn scheduled_count(
        &self,
        session: &Session,
        channel: &Channel,
    ) -> Result<u64, QueueError> {
        let topology = &self.shared.topology;
        let mut scheduled = 0;
        for delay_ms in session.delay_queues() {
            // Redeclaring with the same arguments also recreates a delay
            // queue deleted behind this process's back.
            let queue = topology
                .declare_delay(channel, delay_ms)
                .await
                .map_err(depth_failed(&topology.delay_queue(delay_ms)))?;
            scheduled += u64::from(queue.message_count());
        }
        Ok(scheduled)
    }
}

impl Drop for AmqpQueue {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.supervisor.abort();
        // Dropping the last session handle closes the connection.
        self.shared.set_session(None);
    }
}

#[async_trait]
impl DeliveryQueue for AmqpQueue {
    /// Publishes one persistent message per task to the main queue and
    /// returns `Ok` once the broker confirmed all of them.
    ///
    /// NOTE: RabbitMQ does not deduplicate by message id, so enqueueing a
    /// delivery that is already queued adds a second copy. The dispatcher
    /// then attempts it twice, which at-least-once delivery allows.
    async fn enqueue(&self, tasks: Vec<DeliveryTask>) -> Result<(), QueueError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let main = self.shared.topology.main();
        let messages = tasks
            .iter()
            .map(|task| Outgoing::task(task, main))
            .collect::<Result<Vec<_>, _>>()?;
        let session = self.shared.session(RECONNECT_WAIT).await?;
        let timeout = self.shared.settings.confirm_timeout;
        let results = publish_confirmed(session.publisher(), &messages, timeout).await;
        first_error(results, "enqueue")
    }

    /// Returns up to `max` deliveries, waiting up to `wait` for the first.
    ///
    /// `visibility` is not enforced: RabbitMQ keeps an unacknowledged
    /// delivery with its consumer until it is settled or the channel closes,
    /// which outlasts any request timeout. A delivery comes back for another
    /// consumer only after this process loses its connection, and then the
    /// stale lease is skipped when it is settled.
    async fn receive(
        &self,
        max: usize,
        _visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Leased>, QueueError> {
        self.receive_leased(max, wait).await
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> Result<(), QueueError> {
        self.settle_leases(settlements).await
    }

    /// Reads ready counts: `ready` of the main queue, `dead` of the
    /// dead-letter queue and `scheduled` summed over the delay queues. The
    /// age of the oldest ready message is not available over AMQP.
    ///
    /// NOTE: `scheduled` covers the delay queues of the current retry
    /// schedule and those this connection declared. Delay queues of an older
    /// schedule, or declared only by other processes, are not counted.
    /// `leased` counts only this process's unsettled deliveries.
    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.read_depth().await
    }

    /// Returns `true`: RabbitMQ does not deduplicate by message id, and a
    /// delivery kept for a disabled application stays in a delay queue when
    /// the application is enabled and its deliveries are enqueued again.
    fn may_hold_copies(&self) -> bool {
        true
    }
}

fn depth_failed(queue: &str) -> impl FnOnce(lapin::Error) -> QueueError {
    let message = format!("failed to read the depth of queue {queue}");
    move |error| QueueError::new(message, error)
}

/// Reduces per-message results to the first error, noting how many failed.
pub(crate) fn first_error(
    results: Vec<Result<(), QueueError>>,
    operation: &str,
) -> Result<(), QueueError> {
    let total = results.len();
    let mut errors = results.into_iter().filter_map(Result::err);
    let Some(first) = errors.next() else {
        return Ok(());
    };
    let failed = 1 + errors.count();
    Err(QueueError {
        message: format!(
            "{operation} failed for {failed} of {total} messages: {}",
            first.message
        ),
        source: first.source,
    })
}
