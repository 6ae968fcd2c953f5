//! The key file of the embedded mode: `<data_dir>/secret-key`, generated on
//! first use when `secrets.keys` is not configured.

use hookline_core::cipher::{SecretCipher, SecretKey};
use hookline_core::store::StoreError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the key file inside the data directory.
pub const SECRET_KEY_FILE: &str = "secret-key";

/// Id of the generated key. Name it in `secrets.keys` (as
/// `local:<base64>`, after a new key) to rotate away from the file.
const GENERATED_KEY_ID: &str = "local";

/// Reads the key in `<data_dir>/secret-key`, or generates it with mode 0600
/// when the file does not exist.
pub(crate) fn load_or_generate(data_dir: &Path) -> Result<SecretCipher, StoreError> {
    let path = data_dir.join(SECRET_KEY_FILE);
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => parse(&path, &text)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => generate(&path)?,
        Err(error) => return Err(file_failure("read", &path, error)),
    };
    SecretCipher::new(vec![key]).map_err(|error| {
        StoreError::backend(format!("invalid secret key in {}", path.display()), error)
    })
}

fn parse(path: &Path, text: &str) -> Result<SecretKey, StoreError> {
    warn_if_readable_by_others(path);
    SecretKey::parse(text).map_err(|error| {
        let message = format!("invalid secret key file {}", path.display());
        StoreError::backend(message, error)
    })
}

fn generate(path: &Path) -> Result<SecretKey, StoreError> {
    let key = SecretKey::generate(GENERATED_KEY_ID).expect("the generated key id is valid");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(path)
        .and_then(|mut file| writeln!(file, "{}", key.to_entry()).and_then(|()| file.sync_all()));
    match written {
        Ok(()) => {
            tracing::warn!(
                path = %path.display(),
                "secrets.keys is not set; generated the key that encrypts signing secrets \
                 and wrote it to this file. Back it up: without it the stored secrets \
                 cannot be read"
            );
            Ok(key)
        }
        // Another process created the file between the read and the create.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text =
                std::fs::read_to_string(path).map_err(|error| file_failure("read", path, error))?;
            parse(path, &text)
        }
        Err(error) => Err(file_failure("write", path, error)),
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "The secret key file is readable by other users; run chmod 600 on it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

fn file_failure(operation: &str, path: &Path, error: std::io::Error) -> StoreError {
    let path: PathBuf = path.to_owned();
    StoreError::backend(
        format!(
            "failed to {operation} the secret key file {}",
            path.display()
        ),
        error,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(dir.path()).unwrap();
        assert_eq!(first.newest_key_id(), "local");
        let sealed = first.encrypt("whsec_c2VjcmV0", "app_1");
        let second = load_or_generate(dir.path()).unwrap();
        assert_eq!(second.decrypt(&sealed, "app_1").unwrap(), "whsec_c2VjcmV0");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(SECRET_KEY_FILE);
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn invalid_key_file_fails_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SECRET_KEY_FILE), "local:short").unwrap();
        let error = load_or_generate(dir.path()).unwrap_err();
        assert!(error.to_string().contains("secret-key"), "{error}");
    }
}
