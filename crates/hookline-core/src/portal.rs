//! Records of the developer portal: accounts, sign-in sessions, which
//! account owns which application, and signing-secret rotation.
//!
//! Both state stores implement [`PortalStore`] beside [`crate::store::Store`].
//! Session tokens are stored as hashes only, so a copy of the database does
//! not sign anyone in.

use crate::limit::LimitError;
use crate::store::StoreError;
use crate::{ApplicationId, SigningSecret};
use async_trait::async_trait;
use std::time::Duration;
use time::OffsetDateTime;

/// Password checks allowed per email within [`SIGN_IN_WINDOW`] before
/// further sign-ins and password changes of that email are rejected.
pub const SIGN_IN_MAX_FAILURES: u32 = 5;
/// The sliding window of [`SIGN_IN_MAX_FAILURES`].
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Limit on password checks per email: an attempt is counted before its
/// check runs and the count is cleared when the password matches, so only
/// failed checks stay counted. Counting first keeps concurrent attempts,
/// also on several replicas that share the limiter, from passing the
/// maximum together.
#[async_trait]
pub trait SignInLimiter: Send + Sync + 'static {
    /// Counts a password check of the lowercased `email`. Returns `None`
    /// when the check may run, or how long to wait when the email already
    /// has [`SIGN_IN_MAX_FAILURES`] counted checks within [`SIGN_IN_WINDOW`],
    /// in which case this attempt is not counted.
    async fn begin_attempt(&self, email: &str) -> Result<Option<Duration>, LimitError>;
    /// Forgets the counted checks of `email` after its password matched.
    async fn clear(&self, email: &str) -> Result<(), LimitError>;
}

/// What an account may see in the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An API consumer: sees only the applications it owns.
    Consumer,
    /// The API provider: sees every application and the provider pages.
    Provider,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consumer => "consumer",
            Self::Provider => "provider",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "consumer" => Some(Self::Consumer),
            "provider" => Some(Self::Provider),
            _ => None,
        }
    }
}

/// A portal account. The email is stored lowercased and is unique.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    /// PHC string of the argon2id hash; never the password.
    pub password_hash: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

/// A signed-in browser session.
#[derive(Debug, Clone)]
pub struct PortalSession {
    /// SHA-256 of the cookie value, hex-encoded.
    pub token_hash: String,
    pub account_id: String,
    /// Token that every form of this session must send back.
    pub csrf_token: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// The secret an application used before its last rotation, which still
/// signs deliveries until `expires_at`.
#[derive(Debug, Clone)]
pub struct PreviousSecret {
    pub secret: SigningSecret,
    pub expires_at: OffsetDateTime,
}

/// Storage of the portal's records.
#[async_trait]
pub trait PortalStore: Send + Sync + 'static {
    /// Fails with [`StoreError::Conflict`] when the email is taken.
    async fn create_account(&self, account: &Account) -> Result<(), StoreError>;
    async fn account(&self, id: &str) -> Result<Option<Account>, StoreError>;
    /// Looks the account up by its lowercased email.
    async fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError>;
    /// Returns `false` when the account does not exist.
    async fn set_password_hash(&self, id: &str, password_hash: &str) -> Result<bool, StoreError>;
    /// Changes the account's role. Returns `false` when the account does not
    /// exist.
    async fn set_role(&self, id: &str, role: Role) -> Result<bool, StoreError>;

    async fn create_session(&self, session: &PortalSession) -> Result<(), StoreError>;
    /// The session with this token hash, unless it expired before `now`.
    async fn session(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<PortalSession>, StoreError>;
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Ends every session of the account, for example after a password change.
    async fn delete_sessions_of(&self, account_id: &str) -> Result<(), StoreError>;
    /// Deletes the sessions that expired at or before `now` and returns how
    /// many. [`PortalStore::session`] already ignores them, so this only
    /// reclaims space. The default implementation deletes nothing.
    async fn delete_expired_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let _ = now;
        Ok(0)
    }

    async fn set_application_owner(
        &self,
        application: &ApplicationId,
        account_id: &str,
    ) -> Result<(), StoreError>;
    async fn application_owner(
        &self,
        application: &ApplicationId,
    ) -> Result<Option<String>, StoreError>;
    /// Ids of the applications the account owns, newest first.
    async fn owned_applications(&self, account_id: &str) -> Result<Vec<ApplicationId>, StoreError>;

    /// Makes `secret` the application's signing secret and keeps the one it
    /// replaces as [`PreviousSecret`] until `previous_expires_at`, so that
    /// both sign deliveries during the overlap. Returns `false` when the
    /// application does not exist.
    async fn rotate_secret(
        &self,
        application: &ApplicationId,
        secret: &SigningSecret,
        previous_expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// The previous secret while it has not expired at `now`.
    async fn previous_secret(
        &self,
        application: &ApplicationId,
        now: OffsetDateTime,
    ) -> Result<Option<PreviousSecret>, StoreError>;
}
