//! The header one node puts on a request it forwards to another: who forwarded it,
//! when, for which client, signed with the cluster's shared secret (kept in Redis,
//! so whoever can reach Redis is trusted, and nobody else). The node receiving it
//! answers the request itself (never forwards it again) and applies its per-client
//! limits to the client named, not to the forwarding node. A header that does not
//! verify is ignored. Pure: the time is passed in.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The header's name.
pub const HEADER: &str = "x-mcu-forwarded";
/// How long a signed header stays valid (clocks of nodes differ a little; a
/// captured header cannot be replayed for long).
pub const VALID_MS: u64 = 30_000;

/// What a verified header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The node that forwarded the request.
    pub node: String,
    /// The client's address as that node saw it.
    pub client: Option<IpAddr>,
}

fn mac(secret: &[u8], node: &str, at_ms: u64, client: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{node}|{at_ms}|{client}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The header value for a request forwarded by `node` at `now_ms` for `client`.
pub fn sign(secret: &[u8], node: &str, now_ms: u64, client: Option<IpAddr>) -> String {
    let client = client.map(|c| c.to_string()).unwrap_or_default();
    let signature = mac(secret, node, now_ms, &client);
    format!("{node};{now_ms};{client};{signature}")
}

/// The header's content if it is signed with `secret` and recent at `now_ms`.
pub fn verify(secret: &[u8], value: &str, now_ms: u64) -> Option<Forwarded> {
    let mut parts = value.rsplitn(4, ';');
    let (signature, client, at, node) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let at_ms: u64 = at.parse().ok()?;
    if now_ms.abs_diff(at_ms) > VALID_MS {
        return None;
    }
    let mut check = Hmac::<Sha1>::new_from_slice(secret).ok()?;
    check.update(format!("{node}|{at_ms}|{client}").as_bytes());
    let bytes: Vec<u8> = (0..signature.len())
        .step_by(2)
        .map(|i| signature.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()?;
    check.verify_slice(&bytes).ok()?;
    Some(Forwarded { node: node.to_owned(), client: client.parse().ok() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_header_verifies_and_names_the_node_and_client() {
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let value = sign(b"secret", "node-a", 1_000_000, Some(client));
        assert_eq!(
            verify(b"secret", &value, 1_010_000),
            Some(Forwarded { node: "node-a".into(), client: Some(client) })
        );
        let unknown_client = sign(b"secret", "node-a", 1_000_000, None);
        assert_eq!(verify(b"secret", &unknown_client, 1_000_000).unwrap().client, None);
    }

    #[test]
    fn a_forged_stale_or_tampered_header_is_refused() {
        let value = sign(b"secret", "node-a", 1_000_000, None);
        assert_eq!(verify(b"other", &value, 1_000_000), None, "another secret");
        assert_eq!(verify(b"secret", &value, 1_000_000 + VALID_MS + 1), None, "too old");
        let tampered = value.replacen("node-a", "node-b", 1);
        assert_eq!(verify(b"secret", &tampered, 1_000_000), None, "another node");
        for junk in ["", "x", "a;b;c;d", "node;1;;zz", "node;notanumber;;00"] {
            assert_eq!(verify(b"secret", junk, 1_000_000), None, "{junk:?}");
        }
    }
}
