//! Scripted responses to the requests that pass routing, method and
//! signature checks.

use std::time::Duration;

/// Status of every successful response: 204 No Content.
pub(crate) const SUCCESS_STATUS: u16 = 204;
/// Status sent with `Retry-After` by [`Behaviour::RetryAfter`].
const RETRY_AFTER_STATUS: u16 = 503;
/// Status recorded for a request that [`Behaviour::Hang`] never responds to.
pub(crate) const NO_RESPONSE_STATUS: u16 = 0;

/// Scripted response of an endpoint to each webhook attempt.
///
/// Variants that fail a number of times count attempts per webhook, that is
/// per endpoint and `webhook-id`, so every message on an endpoint gets the
/// same sequence of responses however concurrent deliveries interleave.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Behaviour {
    /// Responds with 204 No Content.
    #[default]
    Succeed,
    /// Responds with `status` to the first `failures` attempts of each
    /// webhook, then with 204.
    FailTimes { failures: u32, status: u16 },
    /// Responds with `status` to every attempt.
    AlwaysFail { status: u16 },
    /// Responds with `status` to a fraction `ratio` (0.0 to 1.0) of attempts
    /// and with 204 to the rest. Whether an attempt fails is a hash of the endpoint,
    /// `webhook-id` and attempt index, so a rerun fails the same attempts.
    FailRatio { ratio: f64, status: u16 },
    /// Waits this long, then responds with 204.
    Delay(Duration),
    /// Responds with 503 and `Retry-After: seconds` to the first `failures`
    /// attempts of each webhook, then 204.
    RetryAfter { failures: u32, seconds: u64 },
    /// Records the request and never responds, until the client resets the
    /// stream or closes the connection, or the receiver shuts down. The
    /// record's `responded_status` is 0, so the attempt does not count as
    /// a success.
    Hang,
}

/// The response chosen for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) status: u16,
    pub(crate) retry_after_secs: Option<u64>,
    pub(crate) delay: Option<Duration>,
    /// Whether the handler waits forever instead of responding.
    pub(crate) hang: bool,
}

impl Decision {
    pub(crate) fn status(status: u16) -> Self {
        Self {
            status,
            retry_after_secs: None,
            delay: None,
            hang: false,
        }
    }
}

impl Behaviour {
    /// Checks that statuses are HTTP statuses from 200 to 599 and that a
    /// ratio is between 0.0 and 1.0.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let status = match self {
            Self::Succeed | Self::Delay(_) | Self::RetryAfter { .. } | Self::Hang => return Ok(()),
            Self::FailTimes { status, .. } | Self::AlwaysFail { status } => *status,
            Self::FailRatio { ratio, status } => {
                if !(0.0..=1.0).contains(ratio) {
                    return Err(format!(
                        "invalid ratio {ratio} in {self:?}: expected 0.0 to 1.0"
                    ));
                }
                *status
            }
        };
        if !(200..=599).contains(&status) {
            return Err(format!(
                "invalid HTTP status {status} in {self:?}: expected 200 to 599"
            ));
        }
        Ok(())
    }

    /// Chooses the response to the `attempt`-th request (1-based) for this
    /// endpoint and `webhook-id`.
    pub(crate) fn decide(&self, endpoint: &str, webhook_id: &str, attempt: u32) -> Decision {
        match *self {
            Self::Succeed => Decision::status(SUCCESS_STATUS),
            Self::FailTimes { failures, status } if attempt <= failures => Decision::status(status),
            Self::FailTimes { .. } => Decision::status(SUCCESS_STATUS),
            Self::AlwaysFail { status } => Decision::status(status),
            Self::FailRatio { ratio, status } => {
                if unit_hash(endpoint, webhook_id, attempt) < ratio {
                    Decision::status(status)
                } else {
                    Decision::status(SUCCESS_STATUS)
                }
            }
            Self::Delay(delay) => Decision {
                delay: Some(delay),
                ..Decision::status(SUCCESS_STATUS)
            },
            Self::RetryAfter { failures, seconds } if attempt <= failures => Decision {
                retry_after_secs: Some(seconds),
                ..Decision::status(RETRY_AFTER_STATUS)
            },
            Self::RetryAfter { .. } => Decision::status(SUCCESS_STATUS),
            Self::Hang => Decision {
                hang: true,
                ..Decision::status(NO_RESPONSE_STATUS)
            },
        }
    }
}

/// Maps a request's identity to a number in `[0, 1)`: FNV-1a over the
/// fields, then the SplitMix64 finalizer, because FNV-1a alone leaves the
/// high bits poorly mixed for short inputs.
fn unit_hash(endpoint: &str, webhook_id: &str, attempt: u32) -> f64 {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

    let attempt_bytes = attempt.to_le_bytes();
    // A zero byte separates the fields so that ("ab", "c") and ("a", "bc") differ.
    let fields: [&[u8]; 5] = [
        endpoint.as_bytes(),
        &[0],
        webhook_id.as_bytes(),
        &[0],
        &attempt_bytes,
    ];
    let mut hash = FNV_OFFSET_BASIS;
    for byte in fields.iter().flat_map(|field| field.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }

    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;

    // The top 53 bits fill an f64 mantissa exactly.
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_times_fails_first_attempts_only() {
        let behaviour = Behaviour::FailTimes {
            failures: 2,
            status: 500,
        };
        let statuses: Vec<u16> = (1..=4)
            .map(|attempt| behaviour.decide("a", "msg", attempt).status)
            .collect();
        assert_eq!(statuses, [500, 500, 204, 204]);
    }

    #[test]
    fn retry_after_sets_header_while_failing() {
        let behaviour = Behaviour::RetryAfter {
            failures: 1,
            seconds: 7,
        };
        let first = behaviour.decide("a", "msg", 1);
        assert_eq!(first.status, 503);
        assert_eq!(first.retry_after_secs, Some(7));
        let second = behaviour.decide("a", "msg", 2);
        assert_eq!(second, Decision::status(204));
    }

    #[test]
    fn delay_succeeds_after_waiting() {
        let decision = Behaviour::Delay(Duration::from_millis(5)).decide("a", "msg", 1);
        assert_eq!(decision.status, 204);
        assert_eq!(decision.delay, Some(Duration::from_millis(5)));
    }

    #[test]
    fn hang_records_no_status() {
        let decision = Behaviour::Hang.decide("a", "msg", 3);
        assert!(decision.hang);
        assert_eq!(decision.status, NO_RESPONSE_STATUS);
        assert_eq!(decision.delay, None);
        assert!(Behaviour::Hang.validate().is_ok());
    }

    #[test]
    fn fail_ratio_is_deterministic() {
        let behaviour = Behaviour::FailRatio {
            ratio: 0.5,
            status: 502,
        };
        for attempt in 1..20 {
            let first = behaviour.decide("orders", "msg_1", attempt);
            let second = behaviour.decide("orders", "msg_1", attempt);
            assert_eq!(first, second);
        }
    }

    #[test]
    fn fail_ratio_matches_ratio_over_many_requests() {
        let behaviour = Behaviour::FailRatio {
            ratio: 0.3,
            status: 500,
        };
        let total = 10_000;
        let failed = (0..total)
            .filter(|index| {
                behaviour
                    .decide("orders", &format!("msg_{index}"), 1)
                    .status
                    == 500
            })
            .count();
        let observed = failed as f64 / total as f64;
        assert!(
            (0.27..0.33).contains(&observed),
            "observed failure ratio {observed}"
        );
    }

    #[test]
    fn fail_ratio_extremes() {
        let never = Behaviour::FailRatio {
            ratio: 0.0,
            status: 500,
        };
        let always = Behaviour::FailRatio {
            ratio: 1.0,
            status: 500,
        };
        for index in 0..1000 {
            let id = format!("msg_{index}");
            assert_eq!(never.decide("a", &id, 1).status, 204);
            assert_eq!(always.decide("a", &id, 1).status, 500);
        }
    }

    #[test]
    fn validate_rejects_bad_status_and_ratio() {
        assert!(Behaviour::AlwaysFail { status: 42 }.validate().is_err());
        assert!(Behaviour::FailTimes {
            failures: 1,
            status: 600
        }
        .validate()
        .is_err());
        assert!(Behaviour::FailRatio {
            ratio: 1.5,
            status: 500
        }
        .validate()
        .is_err());
        assert!(Behaviour::FailRatio {
            ratio: f64::NAN,
            status: 500
        }
        .validate()
        .is_err());
        assert!(Behaviour::FailRatio {
            ratio: 0.5,
            status: 500
        }
        .validate()
        .is_ok());
        assert!(Behaviour::Succeed.validate().is_ok());
    }
}
