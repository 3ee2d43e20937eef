//! Web UI sessions: a random session id in a cookie maps, in this process's memory only, to
//! the signed-in person's Ward token and the session's CSRF token.
//!
//! The token never leaves the server: not in the cookie, not in a page, not in a log. A
//! session ends on sign-out, after 30 minutes without a request, or 8 hours after sign-in.
//! Signing in always starts a new session id (no fixation). Sessions are per listener and
//! do not survive a restart, which only means signing in again.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use subtle::ConstantTimeEq;
use ward_core::request::ClientToken;

const IDLE: Duration = Duration::from_secs(30 * 60);
const ABSOLUTE: Duration = Duration::from_secs(8 * 3600);
/// Above this many sessions, the oldest are dropped (anonymous ones cost a page view each).
const MAX_SESSIONS: usize = 10_000;

/// One session.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) csrf: String,
    /// `None` before sign-in (the sign-in page's session carries only a CSRF token).
    pub(crate) token: Option<ClientToken>,
    /// True when the UI created the token (userpass, OIDC): revoked on sign-out.
    pub(crate) owns_token: bool,
    pub(crate) display_name: String,
    /// The OIDC flow in progress: mount, expected state, client nonce.
    pub(crate) oidc: Option<OidcFlow>,
    created: Instant,
    last_seen: Instant,
}

#[derive(Clone)]
pub(crate) struct OidcFlow {
    pub(crate) mount: String,
    pub(crate) state: String,
    pub(crate) client_nonce: String,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("signed_in", &self.token.is_some())
            .field("display_name", &self.display_name)
            .finish_non_exhaustive()
    }
}

/// All sessions of one listener.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new anonymous session: its id and CSRF token.
    pub(crate) fn start(&self) -> (String, Session) {
        self.insert(Session {
            csrf: random_id(),
            token: None,
            owns_token: false,
            display_name: String::new(),
            oidc: None,
            created: Instant::now(),
            last_seen: Instant::now(),
        })
    }

    /// Signs in: a fresh session id holding the token; the old session (if any) ends.
    pub(crate) fn sign_in(
        &self,
        previous: Option<&str>,
        token: ClientToken,
        owns_token: bool,
        display_name: String,
    ) -> (String, Session) {
        if let Some(previous) = previous {
            self.end(previous);
        }
        self.insert(Session {
            csrf: random_id(),
            token: Some(token),
            owns_token,
            display_name,
            oidc: None,
            created: Instant::now(),
            last_seen: Instant::now(),
        })
    }

    /// The live session with this id, touched.
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.lock();
        let now = Instant::now();
        let live = map.get(id).is_some_and(|s| {
            now.duration_since(s.last_seen) < IDLE && now.duration_since(s.created) < ABSOLUTE
        });
        if !live {
            map.remove(id);
            return None;
        }
        let session = map.get_mut(id)?;
        session.last_seen = now;
        Some(session.clone())
    }

    pub(crate) fn set_oidc(&self, id: &str, flow: OidcFlow) {
        if let Some(session) = self.lock().get_mut(id) {
            session.oidc = Some(flow);
        }
    }

    /// Ends a session and returns it (so that a token the UI created can be revoked).
    pub(crate) fn end(&self, id: &str) -> Option<Session> {
        self.lock().remove(id)
    }

    fn insert(&self, session: Session) -> (String, Session) {
        let id = random_id();
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            let now = Instant::now();
            map.retain(|_, s| now.duration_since(s.last_seen) < IDLE);
            if map.len() >= MAX_SESSIONS {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.last_seen)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        match self.map.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// 32 random bytes, URL-safe base64.
pub(crate) fn random_id() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time equality of two secrets (CSRF tokens, OIDC state).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_rotates_the_session_id_and_sign_out_ends_it() {
        let sessions = Sessions::default();
        let (anonymous, _) = sessions.start();
        let (id, session) = sessions.sign_in(
            Some(&anonymous),
            ClientToken::new("t"),
            false,
            "alice".into(),
        );
        assert_ne!(id, anonymous);
        assert!(sessions.get(&anonymous).is_none());
        assert_eq!(sessions.get(&id).map(|s| s.csrf), Some(session.csrf));
        assert!(sessions.end(&id).is_some());
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn csrf_comparison_refuses_empty_and_different_values() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("", ""));
    }
}
