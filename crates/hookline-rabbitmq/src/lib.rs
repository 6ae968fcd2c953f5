//! A [`DeliveryQueue`](hookline_core::queue::DeliveryQueue) on RabbitMQ
//! (AMQP 0-9-1, through lapin).
//!
//! # Topology
//! All queues are durable quorum queues, reached through the default
//! exchange:
//! - `<queue_name>`: the main queue. The dispatcher consumes it with manual
//!   acknowledgements and a prefetch limit.
//! - `<queue_name>.delay.<ms>ms`: one per retry step, plus one per rounded
//!   delay that a retry needed and no step matched (a longer `Retry-After`,
//!   say). Messages wait there for `x-message-ttl` and are then
//!   dead-lettered back to the main queue.
//! - `<queue_name>.dlq`: dead letters, with the reason in the
//!   [`REASON_HEADER`] header.
//!
//! # Guarantees
//! Every publish is persistent, mandatory and confirmed by the broker before
//! the call returns `Ok`. A retry or dead letter is published before the
//! original is acknowledged, so a crash in between duplicates a task and
//! never loses one. After a lost connection the broker requeues every
//! unacknowledged delivery, and a lease from the old connection is skipped
//! when settled, so delivery is at-least-once.
//!
//! # Consumer timeout
//! RabbitMQ closes a channel whose delivery stays unacknowledged longer than
//! its `consumer_timeout` (1800000 ms, 30 minutes, in the environment of a
//! default RabbitMQ 3.10.8). A delivery here waits in the receive buffer
//! until the dispatcher has a free slot, and then for one attempt and the
//! recording of its outcome. With `prefetch` equal to the dispatcher's
//! concurrency, that wait is roughly one request timeout, an estimate rather
//! than a bound. If the timeout is hit anyway (the state store is down for
//! longer, say), the channel closes, this queue reconnects and the
//! deliveries come again.
//!
//! For the same reason the `visibility` argument of `receive` is not
//! enforced: an unacknowledged delivery stays with its consumer until it is
//! settled or the channel closes.

mod consumer;
mod lease;
mod message;
mod queue;
mod receive;
mod session;
mod settings;
mod settle;
mod supervisor;
mod topology;

pub use message::{reason_header, REASON_HEADER};
pub use queue::AmqpQueue;
pub use settings::AmqpSettings;
