//! Access control: HS256 bearer tokens (JWT) carrying a room, an identity, an expiry
//! and permissions, as the contract's "Operation" section fixes them. With no secret
//! configured the server is open and every check passes.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Send media when joining.
    Publish,
    /// Receive the mix when joining.
    Subscribe,
    /// Start and stop recordings.
    Record,
    /// Run the meeting: set the layout, mute and remove other participants.
    Moderate,
    /// List rooms and recordings, download recordings, read metrics; implies every
    /// other permission.
    Admin,
    /// A permission this server does not know (from another issuer): grants nothing.
    #[serde(other)]
    Unknown,
}

impl std::str::FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "publish" => Ok(Self::Publish),
            "subscribe" => Ok(Self::Subscribe),
            "record" => Ok(Self::Record),
            "moderate" => Ok(Self::Moderate),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown permission {other:?} (publish, subscribe, record, moderate, admin)")),
        }
    }
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Identity of the bearer.
    pub sub: String,
    /// The room it is for, or `"*"` for every room.
    pub room: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// What it allows.
    pub perms: Vec<Permission>,
}

impl Claims {
    /// Whether the token covers `room`.
    pub fn covers(&self, room: &str) -> bool {
        self.room == "*" || self.room == room
    }

    /// Whether the token carries `perm` (admin carries all).
    pub fn allows(&self, perm: Permission) -> bool {
        self.perms.contains(&perm) || self.perms.contains(&Permission::Admin)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header (401).
    #[error("missing bearer token (Authorization: Bearer <token>)")]
    Missing,
    /// The token is malformed, badly signed or expired (401).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token is valid but does not allow this (403).
    #[error("{0}")]
    Forbidden(String),
}

/// Who is asking: everyone (open server) or the bearer of a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No secret configured: everything is allowed.
    Open,
    /// A verified token.
    Token(Claims),
}

impl Access {
    /// Requires every permission in `perms`, for `room` when given.
    pub fn require(&self, room: Option<&str>, perms: &[Permission]) -> Result<(), AuthError> {
        let Access::Token(claims) = self else { return Ok(()) };
        if let Some(room) = room
            && !claims.covers(room)
        {
            return Err(AuthError::Forbidden(format!("token is for room {:?}, not {room:?}", claims.room)));
        }
        match perms.iter().find(|p| !claims.allows(**p)) {
            Some(missing) => Err(AuthError::Forbidden(format!(
                "token lacks the {:?} permission",
                serde_json::to_value(missing).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
            ))),
            None => Ok(()),
        }
    }

    /// The identity to name TURN credentials and logs after.
    pub fn identity(&self) -> &str {
        match self {
            Access::Open => "anonymous",
            Access::Token(c) => &c.sub,
        }
    }
}

/// Verifies tokens with the configured secret.
pub struct Authenticator {
    keys: Option<DecodingKey>,
    validation: Validation,
}

impl Authenticator {
    /// An authenticator for `secret`; `None` makes the server open.
    pub fn new(secret: Option<&str>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: a token expired one second ago is expired.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Tokens from other issuers may carry an audience; this server has none.
        validation.validate_aud = false;
        Self { keys: secret.map(|s| DecodingKey::from_secret(s.as_bytes())), validation }
    }

    /// Whether tokens are required.
    pub fn is_open(&self) -> bool {
        self.keys.is_none()
    }

    /// Checks the `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Result<Access, AuthError> {
        let Some(key) = &self.keys else { return Ok(Access::Open) };
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            AuthError::Invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired".to_owned(),
                ErrorKind::InvalidSignature => "bad signature".to_owned(),
                _ => e.to_string(),
            })
        })?;
        Ok(Access::Token(data.claims))
    }
}

/// Signs `claims` with `secret` (HS256).
pub fn mint(secret: &str, claims: &Claims) -> Result<String, AuthError> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| AuthError::Invalid(e.to_string()))
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(room: &str, perms: &[Permission], exp: u64) -> Claims {
        Claims { sub: "alice".into(), room: room.into(), exp, perms: perms.to_vec() }
    }

    #[test]
    fn a_valid_token_grants_its_permissions_for_its_room() {
        let auth = Authenticator::new(Some("s"));
        let token = mint("s", &claims("r1", &[Permission::Publish], unix_now() + 60)).unwrap();
        let access = auth.check(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(access.identity(), "alice");
        assert_eq!(access.require(Some("r1"), &[Permission::Publish]), Ok(()));
        assert!(matches!(access.require(Some("r1"), &[Permission::Subscribe]), Err(AuthError::Forbidden(_))));
        assert!(matches!(access.require(Some("r2"), &[Permission::Publish]), Err(AuthError::Forbidden(_))));
    }

    #[test]
    fn wildcard_rooms_and_admin_cover_everything() {
        let access = Access::Token(claims("*", &[Permission::Admin], 0));
        assert_eq!(access.require(Some("any"), &[Permission::Record, Permission::Subscribe]), Ok(()));
        assert_eq!(access.require(None, &[Permission::Admin]), Ok(()));
    }

    #[test]
    fn bad_tokens_are_unauthorized() {
        let auth = Authenticator::new(Some("s"));
        let expired = mint("s", &claims("r", &[Permission::Publish], unix_now() - 5)).unwrap();
        let forged = mint("other", &claims("r", &[Permission::Publish], unix_now() + 60)).unwrap();
        assert_eq!(auth.check(None), Err(AuthError::Missing));
        assert_eq!(auth.check(Some("Basic abc")), Err(AuthError::Missing));
        assert_eq!(auth.check(Some(&format!("Bearer {expired}"))), Err(AuthError::Invalid("token expired".into())));
        assert_eq!(auth.check(Some(&format!("Bearer {forged}"))), Err(AuthError::Invalid("bad signature".into())));
        assert!(matches!(auth.check(Some("Bearer not.a.jwt")), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn an_open_server_allows_everything() {
        let auth = Authenticator::new(None);
        assert!(auth.is_open());
        assert_eq!(auth.check(None).unwrap().require(Some("r"), &[Permission::Admin]), Ok(()));
    }

    #[test]
    fn unknown_permissions_and_audiences_are_ignored() {
        #[derive(Serialize)]
        struct Foreign {
            sub: &'static str,
            room: &'static str,
            exp: u64,
            perms: [&'static str; 2],
            aud: &'static str,
        }
        let foreign =
            Foreign { sub: "x", room: "r", exp: unix_now() + 60, perms: ["subscribe", "broadcast"], aud: "app" };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &foreign, &EncodingKey::from_secret(b"s")).unwrap();
        let access = Authenticator::new(Some("s")).check(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(access.require(Some("r"), &[Permission::Subscribe]), Ok(()));
        assert!(access.require(Some("r"), &[Permission::Publish]).is_err());
    }

    #[test]
    fn permissions_parse_from_the_cli_names() {
        assert_eq!("record".parse::<Permission>(), Ok(Permission::Record));
        assert!("root".parse::<Permission>().is_err());
    }
}
