//! Summaries of the receiver's log: the first successful delivery of each
//! event to each application, and the connections and HTTP versions used.

use crate::workload::{endpoint_index, event_index, product_of_event};
use hookline_receiver::ReceivedWebhook;
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

/// First successful receipt of every (application, event) pair.
///
/// With several products, events take turns among them, and application
/// endpoint `app-N` belongs to product `N / applications`, so each event
/// has `applications` applications, at the positions `N % applications`.
#[derive(Debug)]
pub(crate) struct Receipts {
    first_event: u64,
    events: u64,
    products: u32,
    /// Indexed by `position * events + event - first_event`, where
    /// `position` is the application's place among its product's.
    first_success: Vec<Option<Instant>>,
    /// Pairs with at least one successful receipt.
    pub(crate) delivered: u64,
    /// Latest of the first successful receipts.
    pub(crate) last_receipt: Option<Instant>,
    /// Successful requests whose endpoint or Idempotency-Key this
    /// benchmark did not make.
    pub(crate) unmatched: u64,
}

impl Receipts {
    /// Collects the first 2xx receipt per pair from `records`, for events
    /// 0 to `events - 1`, each delivered to the `applications`
    /// applications of its product.
    pub(crate) fn collect(
        records: &[ReceivedWebhook],
        events: u64,
        products: u32,
        applications: u32,
    ) -> Self {
        Self::collect_from(records, 0, events, products, applications)
    }

    /// Collects the first 2xx receipt per pair from `records`, for the
    /// `events` events numbered from `first_event`. Receipts of other
    /// events count as unmatched.
    pub(crate) fn collect_from(
        records: &[ReceivedWebhook],
        first_event: u64,
        events: u64,
        products: u32,
        applications: u32,
    ) -> Self {
        let mut receipts = Self {
            first_event,
            events,
            products: products.max(1),
            first_success: vec![None; (events * u64::from(applications)) as usize],
            delivered: 0,
            last_receipt: None,
            unmatched: 0,
        };
        for record in records.iter().filter(|record| record.succeeded()) {
            match receipts.slot(record, applications) {
                Some(slot) => receipts.note(slot, record.received_instant),
                None => receipts.unmatched += 1,
            }
        }
        receipts
    }

    fn slot(&self, record: &ReceivedWebhook, applications: u32) -> Option<usize> {
        let total = u64::from(self.products) * u64::from(applications);
        let endpoint =
            endpoint_index(&record.endpoint).filter(|&index| u64::from(index) < total)?;
        let index = event_index(record.idempotency_key.as_deref()?)?;
        let event = index
            .checked_sub(self.first_event)
            .filter(|&event| event < self.events)?;
        // A receipt at another product's application is not a delivery.
        if product_of_event(index, self.products) != endpoint / applications {
            return None;
        }
        let position = endpoint % applications;
        Some((u64::from(position) * self.events + event) as usize)
    }

    fn note(&mut self, slot: usize, received: Instant) {
        let first = &mut self.first_success[slot];
        match first {
            Some(earlier) if *earlier <= received => return,
            Some(_) => {}
            None => self.delivered += 1,
        }
        *first = Some(received);
        if self.last_receipt.is_none_or(|last| last < received) {
            self.last_receipt = Some(received);
        }
    }

    /// Returns the end-to-end latency of every delivered pair: its first
    /// successful receipt minus the send time of its event. `sent` is
    /// indexed like [`IngestOutcome::sent`](crate::generator::IngestOutcome),
    /// from the first event.
    pub(crate) fn latencies(&self, sent: &[Option<Instant>]) -> Vec<Duration> {
        let events = self.events as usize;
        self.first_success
            .iter()
            .enumerate()
            .filter_map(|(slot, received)| {
                let sent = sent.get(slot % events).copied().flatten()?;
                Some(received.as_ref()?.saturating_duration_since(sent))
            })
            .collect()
    }
}

/// Connections and HTTP versions that the requests arrived on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ConnectionUse {
    /// Distinct client addresses, that is TCP connections.
    pub(crate) connections: usize,
    /// HTTP versions seen, such as `HTTP/2.0`.
    pub(crate) http_versions: Vec<String>,
}

impl ConnectionUse {
    pub(crate) fn of(records: &[ReceivedWebhook]) -> Self {
        let peers: HashSet<_> = records.iter().map(|record| record.peer_addr).collect();
        let versions: BTreeSet<String> = records
            .iter()
            .map(|record| format!("{:?}", record.version))
            .collect();
        Self {
            connections: peers.len(),
            http_versions: versions.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hookline_receiver::Verification;
    use time::OffsetDateTime;

    fn record(
        endpoint: &str,
        key: &str,
        status: u16,
        received_instant: Instant,
    ) -> ReceivedWebhook {
        ReceivedWebhook {
            endpoint: endpoint.to_owned(),
            webhook_id: format!("msg_{key}"),
            timestamp: 0,
            signature: String::new(),
            idempotency_key: Some(key.to_owned()),
            content_type: None,
            body: Bytes::new(),
            method: reqwest::Method::POST,
            version: reqwest::Version::HTTP_2,
            peer_addr: "127.0.0.1:40000".parse().unwrap(),
            verification: Verification::Verified,
            responded_status: status,
            received_at: OffsetDateTime::UNIX_EPOCH,
            received_instant,
            attempt_index: 1,
        }
    }

    fn sorted_latencies(receipts: &Receipts, sent: &[Option<Instant>]) -> Vec<Duration> {
        let mut latencies = receipts.latencies(sent);
        latencies.sort();
        latencies
    }

    #[test]
    fn collect_keeps_first_success_per_pair() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let records = [
            record("app-0", "event-0", 500, at(1)),
            record("app-0", "event-0", 204, at(5)),
            record("app-0", "event-0", 204, at(9)),
            record("app-1", "event-0", 204, at(7)),
            record("raw", "event-1", 204, at(8)),
            record("app-0", "unknown", 204, at(8)),
        ];
        let receipts = Receipts::collect(&records, 2, 1, 2);
        assert_eq!(receipts.delivered, 2);
        assert_eq!(receipts.unmatched, 2);
        assert_eq!(receipts.last_receipt, Some(at(7)));

        let sent = [Some(start), None];
        let latencies = sorted_latencies(&receipts, &sent);
        assert_eq!(
            latencies,
            [Duration::from_millis(5), Duration::from_millis(7)]
        );
    }

    #[test]
    fn collect_from_offsets_event_numbers() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let records = [
            record("app-0", "event-9", 204, at(1)),
            record("app-0", "event-10", 204, at(4)),
            record("app-0", "event-11", 204, at(6)),
            record("app-0", "event-12", 204, at(8)),
        ];
        let receipts = Receipts::collect_from(&records, 10, 2, 1, 1);
        assert_eq!(receipts.delivered, 2);
        assert_eq!(receipts.unmatched, 2);
        assert_eq!(receipts.last_receipt, Some(at(6)));

        let sent = [Some(start), Some(at(2))];
        let latencies = sorted_latencies(&receipts, &sent);
        assert_eq!(
            latencies,
            [Duration::from_millis(4), Duration::from_millis(4)]
        );
    }

    #[test]
    fn collect_matches_product_applications() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // Two products of two applications: app-0 and app-1 subscribe to
        // product 0 (even events), app-2 and app-3 to product 1 (odd events).
        let records = [
            record("app-0", "event-0", 204, at(1)),
            record("app-1", "event-0", 204, at(2)),
            record("app-2", "event-1", 204, at(3)),
            record("app-3", "event-1", 204, at(4)),
            record("app-2", "event-0", 204, at(5)),
            record("app-4", "event-1", 204, at(6)),
        ];
        let receipts = Receipts::collect(&records, 2, 2, 2);
        assert_eq!(receipts.delivered, 4);
        assert_eq!(
            receipts.unmatched, 2,
            "event 0 at product 1's app-2, and app-4, which no product has"
        );
        assert_eq!(receipts.last_receipt, Some(at(4)));
        let sent = [Some(start), Some(start)];
        let latencies = sorted_latencies(&receipts, &sent);
        let expected: Vec<Duration> = (1..=4).map(Duration::from_millis).collect();
        assert_eq!(latencies, expected);
    }

    #[test]
    fn connection_use_counts_peers_and_versions() {
        let now = Instant::now();
        let mut other = record("app-0", "event-1", 204, now);
        other.peer_addr = "127.0.0.1:40001".parse().unwrap();
        other.version = reqwest::Version::HTTP_11;
        let records = [record("app-0", "event-0", 204, now), other];
        let usage = ConnectionUse::of(&records);
        assert_eq!(usage.connections, 2);
        assert_eq!(usage.http_versions, ["HTTP/1.1", "HTTP/2.0"]);
    }
}
