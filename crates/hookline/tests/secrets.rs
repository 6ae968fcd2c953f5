//! Signing secrets at rest through the `hookline` binary: the generated
//! key file of the embedded mode, the database files without the
//! plaintext secret, and the key settings of the distributed mode.

mod common;

use common::World;
use std::process::Command;

/// Runs `hookline` with only `env` set and returns its exit success,
/// standard output and standard error.
fn run_hookline(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookline"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("hookline runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn embedded_key_file_keeps_secrets_out_of_database() {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    server
        .create_application(&world.receiver, "order-created", "shop")
        .await;
    let secret = world
        .receiver_secrets()
        .pop()
        .expect("the secret was noted");

    let key_file = world.data_dir().join("secret-key");
    assert!(
        key_file.is_file(),
        "the key is generated into the data directory"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        server.log_text().contains("secret-key"),
        "the generated key's path is logged"
    );

    let database = std::fs::read(world.data_dir().join("hookline.db"));
    assert!(database.is_ok(), "the database file exists");
    for name in ["hookline.db", "hookline.db-wal"] {
        let path = world.data_dir().join(name);
        // The write-ahead log may have been checkpointed and removed.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        assert!(
            !contains_bytes(&bytes, secret.as_bytes()),
            "{name} contains the plaintext signing secret"
        );
    }
}

#[test]
fn distributed_mode_requires_secret_keys() {
    let (succeeded, _, stderr) = run_hookline(
        &["serve"],
        &[
            (
                "HOOKLINE_STORAGE__URL",
                "postgres://hookline@127.0.0.1:1/none",
            ),
            ("HOOKLINE_QUEUE__URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
            ("HOOKLINE_API__ADMIN_TOKEN", "token"),
        ],
    );
    assert!(
        !succeeded,
        "the distributed mode must not start without keys"
    );
    assert!(stderr.contains("secrets.keys is not set"), "{stderr}");
}

#[test]
fn generated_key_is_accepted_and_redacted() {
    let (succeeded, stdout, stderr) = run_hookline(&["secrets", "generate-key", "--id", "k2"], &[]);
    assert!(succeeded, "{stderr}");
    let key = stdout.trim();
    assert!(key.starts_with("k2:"), "{key}");

    let (succeeded, stdout, stderr) =
        run_hookline(&["config", "check"], &[("HOOKLINE_SECRETS__KEYS", key)]);
    assert!(succeeded, "{stderr}");
    assert!(stdout.contains("k2:<redacted>"), "{stdout}");
    assert!(!stdout.contains(&key[3..]), "the key is printed: {stdout}");

    let (succeeded, _, stderr) = run_hookline(
        &["config", "check"],
        &[("HOOKLINE_SECRETS__KEYS", "k2:not-base64")],
    );
    assert!(!succeeded);
    assert!(stderr.contains("secrets.keys"), "{stderr}");
    assert!(
        !stderr.contains("not-base64"),
        "the key is echoed: {stderr}"
    );
}
