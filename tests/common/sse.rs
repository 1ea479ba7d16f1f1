//! A reader of a room's Server-Sent Events (`GET /rooms/{room}/events`).

use std::time::Duration;

use serde_json::Value;

use super::Server;

/// A Server-Sent Events reader over a streaming HTTP response.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    pub async fn open(server: &Server, room: &str) -> Result<Self, u16> {
        let response = reqwest::get(format!("{}/rooms/{room}/events", server.url)).await.expect("GET events");
        if response.status() != 200 {
            return Err(response.status().as_u16());
        }
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        Ok(Self { response, buffer: String::new() })
    }

    /// The next event (name, data), skipping comments; `None` when the stream ends or
    /// nothing comes within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut data) = (None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                match name {
                    Some(name) => return Some((name, serde_json::from_str(&data).expect("JSON data"))),
                    None => continue, // a keep-alive comment
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads until an event named `name` comes (others are skipped), within `timeout`.
    pub async fn until(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some((event, data)) = self.next(deadline - tokio::time::Instant::now()).await {
            if event == name {
                return data;
            }
            seen.push(event);
        }
        panic!("no {name:?} event within {timeout:?}; saw {seen:?}");
    }
}
