//! `hookline secrets`: key generation and re-encryption of the stored
//! signing secrets under the newest key of `secrets.keys`.

use crate::backends::is_distributed;
use crate::config::Config;
use anyhow::Context;
use hookline_core::cipher::{SecretCipher, SecretKey};
use hookline_postgres::PgBackend;
use hookline_sqlite::SqliteBackend;

/// Returns a new random key as `<id>:<base64>`, for `secrets.keys`.
pub fn generate_key(id: &str) -> anyhow::Result<String> {
    let key = SecretKey::generate(id).context("cannot generate a secret key")?;
    Ok(key.to_entry())
}

/// Returns the keys of the distributed mode, which has no data directory
/// to keep a generated key in, so it needs them configured.
pub fn required_keys(config: &Config) -> anyhow::Result<SecretCipher> {
    config.secrets.cipher()?.context(
        "secrets.keys is not set; the distributed mode encrypts signing secrets with it. \
         Generate a key with `hookline secrets generate-key`, then set it in secrets.keys, \
         HOOKLINE_SECRETS__KEYS or a file named by HOOKLINE_SECRETS__KEYS_FILE",
    )
}

/// Re-encrypts every signing secret that is stored in plain text or under
/// an older key with the newest key, and returns a line to print.
pub async fn rotate(config: &Config) -> anyhow::Result<String> {
    if is_distributed(config) {
        let keys = required_keys(config)?;
        let newest = keys.newest_key_id().to_owned();
        let url = config.storage.url.as_deref().unwrap_or_default();
        let pg = PgBackend::connect(url, config.storage.schema.as_deref(), 2)
            .await
            .context("cannot connect to PostgreSQL at storage.url")?
            .with_secret_keys(keys);
        let changed = pg
            .store()
            .reencrypt_secrets()
            .await
            .context("cannot re-encrypt signing secrets")?;
        pg.close().await;
        return Ok(format!(
            "re-encrypted {changed} signing secret(s); all are now encrypted with key {newest:?}"
        ));
    }
    let keys = config.secrets.cipher()?;
    let data_dir = &config.storage.data_dir;
    // Opening the embedded store re-encrypts what is not under the newest key.
    let backend = SqliteBackend::open_exclusive_with_keys(data_dir, keys)
        .await
        .with_context(|| {
            format!(
                "cannot open the state store in storage.data_dir {}",
                data_dir.display()
            )
        })?;
    backend.close().await;
    Ok("signing secrets in storage.data_dir are all encrypted with the newest key".to_owned())
}
