//! Plain string values with an expiry, for caches that replicas share.

use crate::client::{RedisClient, RedisError};
use bytes::Bytes;
use std::time::Duration;

impl RedisClient {
    /// Reads the value of key `<prefix><name>` with `GET`, or `None` when the
    /// key does not exist or has expired.
    pub async fn get_value(&self, name: &str) -> Result<Option<Bytes>, RedisError> {
        let mut get = redis::cmd("GET");
        get.arg(self.prefixed(name));
        let mut connection = self.connection();
        let request = get.query_async::<Option<Vec<u8>>>(&mut connection);
        let value = self.bounded("GET", request).await?;
        Ok(value.map(Bytes::from))
    }

    /// Writes `value` to key `<prefix><name>` with `SET key value PX ttl`,
    /// replacing any value the key has.
    pub async fn set_value(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let mut set = redis::cmd("SET");
        set.arg(self.prefixed(name))
            .arg(value)
            .arg("PX")
            .arg(expiry_millis(ttl)?);
        let mut connection = self.connection();
        self.bounded("SET", set.query_async::<()>(&mut connection))
            .await
    }

    /// Writes `value` to key `<prefix><name>` with `SET key value NX PX ttl`
    /// unless the key exists. Returns whether this call wrote it, which makes
    /// the key a claim that expires by itself.
    pub async fn set_value_if_absent(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let mut set = redis::cmd("SET");
        set.arg(self.prefixed(name))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(expiry_millis(ttl)?);
        let mut connection = self.connection();
        let request = set.query_async::<Option<String>>(&mut connection);
        let reply = self.bounded("SET", request).await?;
        Ok(reply.is_some())
    }
}

/// Converts `ttl` into whole milliseconds for `PX`, rounding up, because
/// Redis rejects an expiry of zero.
fn expiry_millis(ttl: Duration) -> Result<u64, RedisError> {
    if ttl.is_zero() {
        return Err(RedisError::InvalidSettings(
            "the expiry of a value must be greater than zero".to_owned(),
        ));
    }
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis)
        .map_err(|_| RedisError::InvalidSettings(format!("the expiry {ttl:?} is too long")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rounds_up_and_rejects_zero() {
        assert_eq!(expiry_millis(Duration::from_micros(1)).unwrap(), 1);
        assert_eq!(expiry_millis(Duration::from_millis(1500)).unwrap(), 1500);
        assert!(expiry_millis(Duration::ZERO).is_err());
    }
}
