//! ICE servers for clients: STUN/TURN URIs from the configuration, with ephemeral
//! TURN credentials in the TURN REST API scheme that coturn's `use-auth-secret`
//! verifies: `username = "<unix expiry>:<identity>"`,
//! `credential = base64(HMAC-SHA1(secret, username))`.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;

use crate::config::TurnConfig;

/// One entry of `iceServers`, as `RTCPeerConnection` takes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:`/`turn:`/`turns:` URIs.
    pub urls: Vec<String>,
    /// TURN username (absent for STUN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password (absent for STUN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The `GET /ice-servers` document.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IceServers {
    /// Usable as-is in `new RTCPeerConnection({iceServers})`.
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServer>,
    /// Seconds the credentials stay valid.
    pub ttl: u64,
}

/// The TURN REST credential for `identity`, valid until `expiry` (Unix seconds).
pub fn credential(secret: &str, identity: &str, expiry: u64) -> (String, String) {
    // Colons separate the expiry from the identity in the username.
    let identity: String = identity.chars().map(|c| if c == ':' { '_' } else { c }).collect();
    let username = format!("{expiry}:{identity}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

/// The ICE servers for `identity` at `now` (Unix seconds).
pub fn ice_servers(config: &TurnConfig, identity: &str, now: u64) -> IceServers {
    let (stun, turn): (Vec<String>, Vec<String>) = config.urls.iter().cloned().partition(|u| u.starts_with("stun:"));
    let mut servers = Vec::new();
    if !stun.is_empty() {
        servers.push(IceServer { urls: stun, username: None, credential: None });
    }
    if let (false, Some(secret)) = (turn.is_empty(), &config.secret) {
        let (username, password) = credential(secret, identity, now.saturating_add(config.ttl_s));
        servers.push(IceServer { urls: turn, username: Some(username), credential: Some(password) });
    }
    IceServers { ice_servers: servers, ttl: config.ttl_s }
}

/// The ICE servers as WHIP/WHEP `Link` header values (RFC 9725 §4.6), one per URI:
/// `<turn:host:3478>; rel="ice-server"; username="..."; credential="...";
/// credential-type="password"`.
pub fn link_headers(servers: &IceServers) -> Vec<String> {
    // Quotes and backslashes cannot occur in the credentials (a number, an identity
    // without them, base64); escape them anyway, as a quoted-string wants.
    let quoted = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut links = Vec::new();
    for server in &servers.ice_servers {
        for url in &server.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(username), Some(credential)) = (&server.username, &server.credential) {
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quoted(username),
                    quoted(credential)
                ));
            }
            links.push(link);
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        // Reference value: printf '1700000000:alice' | openssl dgst -sha1 -hmac secret -binary | base64
        let (user, pass) = credential("secret", "alice", 1_700_000_000);
        assert_eq!(user, "1700000000:alice");
        assert_eq!(pass, "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
    }

    #[test]
    fn stun_and_turn_are_separate_entries() {
        let config = TurnConfig {
            urls: vec!["stun:198.51.100.1:3478".into(), "turn:198.51.100.1:3478?transport=udp".into()],
            secret: Some("s".into()),
            ttl_s: 600,
        };
        let doc = ice_servers(&config, "bob", 1000);
        assert_eq!(doc.ttl, 600);
        assert_eq!(doc.ice_servers.len(), 2);
        assert_eq!(doc.ice_servers[0].username, None);
        assert_eq!(doc.ice_servers[1].username.as_deref(), Some("1600:bob"));
        let json = serde_json::to_value(&doc).unwrap();
        assert!(json["iceServers"][0].get("credential").is_none());
    }

    #[test]
    fn each_uri_is_a_link_header_with_its_credentials() {
        let config = TurnConfig {
            urls: vec!["stun:198.51.100.1:3478".into(), "turn:198.51.100.1:3478?transport=udp".into()],
            secret: Some("s".into()),
            ttl_s: 600,
        };
        let links = link_headers(&ice_servers(&config, "bob", 1000));
        let (_, credential) = credential("s", "bob", 1600);
        assert_eq!(
            links,
            vec![
                "<stun:198.51.100.1:3478>; rel=\"ice-server\"".to_owned(),
                format!(
                    "<turn:198.51.100.1:3478?transport=udp>; rel=\"ice-server\"; username=\"1600:bob\"; \
                     credential=\"{credential}\"; credential-type=\"password\""
                ),
            ]
        );
    }
}
