//! The reconnect loop: waits for the current session to fail, then opens a
//! new one with exponential backoff, which declares the topology again and
//! resumes consuming.

use crate::queue::Shared;
use crate::session::Session;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Wait before the first reconnect attempt; it doubles after each failure.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// Replaces failed sessions until `shutdown` is cancelled.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    mut session: Arc<Session>,
    shutdown: CancellationToken,
) {
    loop {
        let reason = tokio::select! {
            _ = shutdown.cancelled() => return,
            reason = session.failed() => reason,
        };
        let lost = session.generation;
        shared.set_session(None);
        tracing::warn!(
            generation = lost,
            %reason,
            "Lost the RabbitMQ connection; unacknowledged deliveries return to the queue; reconnecting"
        );
        // Closing explicitly makes the broker requeue the unacknowledged
        // deliveries now, not when it notices a dead socket.
        session.close().await;
        drop(session);

        let generation = lost.wrapping_add(1);
        session = match reconnect(&shared, generation, &shutdown).await {
            Some(session) => session,
            None => return,
        };
        shared.set_session(Some(session.clone()));
        tracing::info!(
            generation,
            queue = shared.topology.main(),
            "Reconnected to RabbitMQ; topology declared and consuming again"
        );
    }
}

/// Opens a session, retrying with exponential backoff capped at the
/// configured maximum. Returns `None` when `shutdown` is cancelled first.
async fn reconnect(
    shared: &Shared,
    generation: u16,
    shutdown: &CancellationToken,
) -> Option<Arc<Session>> {
    let max_backoff = shared.settings.reconnect_max_backoff;
    let mut backoff = INITIAL_BACKOFF.min(max_backoff);
    let mut attempt: u32 = 1;
    loop {
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return None,
            opened = shared.open_session(generation) => opened,
        };
        match opened {
            Ok(session) => return Some(session),
            Err(error) => tracing::warn!(
                attempt,
                retry_in = ?backoff,
                error = %error,
                source = error.source.as_ref().map(|source| source.to_string()),
                "Reconnecting to RabbitMQ failed"
            ),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = backoff.saturating_mul(2).min(max_backoff);
        attempt = attempt.saturating_add(1);
    }
}
