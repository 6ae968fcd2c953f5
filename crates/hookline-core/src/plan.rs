//! Plans: how many notifications an application may receive per period,
//! what happens to the ones over that limit, and what the plan costs.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

/// Names of the plans that migration 2 creates in both stores.
pub const SEEDED_PLANS: [&str; 2] = ["free", "paid"];

/// Length of a plan's rate-limit window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitPeriod {
    Second,
    Minute,
    Hour,
    Day,
}

impl LimitPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "second" => Some(Self::Second),
            "minute" => Some(Self::Minute),
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            _ => None,
        }
    }

    pub fn duration(self) -> Duration {
        match self {
            Self::Second => Duration::from_secs(1),
            Self::Minute => Duration::from_secs(60),
            Self::Hour => Duration::from_secs(3600),
            Self::Day => Duration::from_secs(86_400),
        }
    }
}

/// What happens to a notification over the plan's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    /// Send it at the start of the next window, without counting an attempt.
    Defer,
    /// Dead-letter the delivery with the reason `rate_limited`.
    DeadLetter,
}

impl OverLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Defer => "defer",
            Self::DeadLetter => "dead_letter",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "defer" => Some(Self::Defer),
            "dead_letter" => Some(Self::DeadLetter),
            _ => None,
        }
    }
}

/// The rate limit of a plan: at most `limit` notifications per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimit {
    pub limit: u64,
    pub period: LimitPeriod,
    pub over_limit: OverLimit,
}

/// A named plan, such as `free` or `paid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    /// Notifications per period; `None` means unlimited.
    pub limit: Option<u64>,
    pub period: LimitPeriod,
    pub over_limit: OverLimit,
    /// Decimal amount in `currency`, in the canonical form of [`parse_fee`].
    pub monthly_fee: String,
    /// ISO 4217 code such as `USD`.
    pub currency: String,
    pub trial_days: u32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Plan {
    /// Returns the rate limit, or `None` for an unlimited plan.
    pub fn rate_limit(&self) -> Option<PlanLimit> {
        self.limit.map(|limit| PlanLimit {
            limit,
            period: self.period,
            over_limit: self.over_limit,
        })
    }
}

/// Digits allowed before the decimal point of a fee.
const MAX_FEE_INTEGER_DIGITS: usize = 15;
/// Digits allowed after the decimal point of a fee, once trailing zeros are dropped.
const MAX_FEE_FRACTION_DIGITS: usize = 4;

/// Parses a non-negative decimal amount such as `19.99` into its canonical
/// form: no leading zeros, no trailing fractional zeros and no trailing
/// point, so `"019.90"` becomes `"19.9"` and `"10.0"` becomes `"10"`.
/// Returns `None` for anything else, including signs, exponents and more
/// than 15 integer or 4 fractional digits.
pub fn parse_fee(value: &str) -> Option<String> {
    let (integer, fraction) = value.split_once('.').unwrap_or((value, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if integer.is_empty() || !all_digits(integer) || !all_digits(fraction) {
        return None;
    }
    if value.ends_with('.') {
        return None;
    }
    let integer = integer.trim_start_matches('0');
    let integer = if integer.is_empty() { "0" } else { integer };
    let fraction = fraction.trim_end_matches('0');
    if integer.len() > MAX_FEE_INTEGER_DIGITS || fraction.len() > MAX_FEE_FRACTION_DIGITS {
        return None;
    }
    if fraction.is_empty() {
        Some(integer.to_owned())
    } else {
        Some(format!("{integer}.{fraction}"))
    }
}

/// Whether `code` has the shape of an ISO 4217 currency code: three
/// uppercase ASCII letters. It does not check the code against the list.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// Whether `name` is a valid plan name: 1 to 64 of `[a-z0-9._-]`.
pub fn is_valid_plan_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_is_canonical() {
        let cases = [
            ("0", "0"),
            ("19.99", "19.99"),
            ("019.90", "19.9"),
            ("10.0", "10"),
            ("0.0001", "0.0001"),
            ("000", "0"),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_fee(input).as_deref(), Some(expected), "{input}");
        }
    }

    #[test]
    fn fee_rejects_other_forms() {
        for input in [
            "",
            "-1",
            "+1",
            "1e3",
            "1.",
            ".5",
            "1.00001",
            "abc",
            "1,5",
            "1 000",
            "1234567890123456",
        ] {
            assert_eq!(parse_fee(input), None, "{input}");
        }
    }

    #[test]
    fn period_names_round_trip() {
        for period in [
            LimitPeriod::Second,
            LimitPeriod::Minute,
            LimitPeriod::Hour,
            LimitPeriod::Day,
        ] {
            assert_eq!(LimitPeriod::parse(period.as_str()), Some(period));
        }
        assert_eq!(LimitPeriod::Hour.duration(), Duration::from_secs(3600));
        assert_eq!(LimitPeriod::parse("week"), None);
    }

    #[test]
    fn over_limit_names_round_trip() {
        for action in [OverLimit::Defer, OverLimit::DeadLetter] {
            assert_eq!(OverLimit::parse(action.as_str()), Some(action));
        }
        assert_eq!(OverLimit::parse("drop"), None);
    }

    #[test]
    fn plan_names_and_currencies() {
        assert!(is_valid_plan_name("free"));
        assert!(is_valid_plan_name("pro-2024.v1"));
        assert!(!is_valid_plan_name(""));
        assert!(!is_valid_plan_name("Pro"));
        assert!(!is_valid_plan_name(&"a".repeat(65)));
        assert!(is_currency_code("EUR"));
        assert!(!is_currency_code("eur"));
        assert!(!is_currency_code("EURO"));
    }
}
