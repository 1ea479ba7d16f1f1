//! A WebRTC MCU: every participant sends one stream over one peer connection and gets
//! one back — the grid composite of everyone's video and a mix-minus of everyone
//! else's audio — whatever the size of the conference.
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod fuzzing;
pub mod layout;
pub mod media;
pub mod memory;
pub mod metrics;
pub mod recordings;
pub mod room;
pub mod rtc;
pub mod server;
pub mod turn;
