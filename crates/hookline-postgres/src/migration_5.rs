//! Schema version 5: developer portal accounts and sessions, application
//! owners, and the secret an application used before its last rotation.

/// The store writes `email` lowercased, so the unique constraint is
/// case-insensitive. `token_hash` is the hex SHA-256 of the session cookie.
///
/// `previous_secret` is encrypted like `secret` and signs deliveries next to
/// it until `previous_secret_expires_at`. Both columns are NULL for an
/// application whose secret was never rotated.
pub(crate) const VERSION_5: &str = r#"
CREATE TABLE portal_accounts (
    id text PRIMARY KEY,
    email text NOT NULL,
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('consumer', 'provider')),
    created_at timestamptz NOT NULL,
    CONSTRAINT portal_accounts_email_key UNIQUE (email)
);

CREATE TABLE portal_sessions (
    token_hash text PRIMARY KEY,
    account_id text NOT NULL REFERENCES portal_accounts (id) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX portal_sessions_by_expiry ON portal_sessions (expires_at);
CREATE INDEX portal_sessions_by_account ON portal_sessions (account_id);

CREATE TABLE application_owners (
    application_id text PRIMARY KEY REFERENCES applications (id),
    account_id text NOT NULL REFERENCES portal_accounts (id),
    created_at timestamptz NOT NULL
);
CREATE INDEX application_owners_by_account ON application_owners (account_id);

ALTER TABLE applications ADD COLUMN previous_secret text;
ALTER TABLE applications ADD COLUMN previous_secret_expires_at timestamptz;
"#;
