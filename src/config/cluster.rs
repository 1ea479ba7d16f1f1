//! The cluster part of the configuration: off unless a Redis URL is given.

use serde::{Deserialize, Serialize};

/// Many nodes sharing their rooms through Redis (contract v1.1, "Many nodes").
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:port` (`MCU_REDIS_URL`); unset: a single node, as in v1.
    pub redis_url: Option<String>,
    /// This node's HTTP base URL as clients and the other nodes reach it
    /// (`MCU_NODE_URL`); required with `redis_url`.
    pub node_url: Option<String>,
    /// This node's name in `GET /nodes` and `GET /rooms` (`MCU_NODE_ID`); default: the
    /// host and port of `node_url`.
    pub node_id: Option<String>,
}

impl ClusterConfig {
    /// Whether clustering is on.
    pub fn enabled(&self) -> bool {
        self.redis_url.as_deref().is_some_and(|u| !u.trim().is_empty())
    }

    /// This node's id: `node_id`, else `node_url` without its scheme.
    pub fn id(&self) -> String {
        self.node_id.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| {
            let url = self.node_url.as_deref().unwrap_or_default();
            url.split_once("://").map_or(url, |(_, rest)| rest).trim_end_matches('/').to_owned()
        })
    }
}

/// A Redis URL may carry a password.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<redacted>"))
            .field("node_url", &self.node_url)
            .field("node_id", &self.node_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_defaults_to_the_urls_host_and_port() {
        let c = ClusterConfig { node_url: Some("http://10.0.0.5:8080/".into()), ..Default::default() };
        assert_eq!(c.id(), "10.0.0.5:8080");
        let named = ClusterConfig { node_id: Some("mcu-a".into()), ..c };
        assert_eq!(named.id(), "mcu-a");
        assert!(!named.enabled());
    }
}
