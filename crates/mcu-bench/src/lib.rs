//! Load generator and benchmarks of the `mcu` server, kept out of the server crate:
//! synthetic participants sending pre-encoded media against a running server
//! (`mcu-bench load`), join reliability (`mcu-bench connect`), and the full benchmark
//! that starts its own servers, measures and writes `BENCHMARKS.md`
//! (`mcu-bench all`). [`client`] is a real WebRTC participant (webrtc-rs plus
//! GStreamer) that the server's integration tests use as well.

pub mod capacity;
pub mod cli;
pub mod client;
pub mod connect;
pub mod content;
pub mod encode;
pub mod janus;
pub mod labels;
pub mod limit;
pub mod load;
pub mod media;
pub mod peer;
pub mod picture;
pub mod probe;
pub mod received;
pub mod report;
pub mod run;
pub mod server;
pub mod starved;
pub mod sys;
pub mod viewer;
pub mod webrtcbin;
pub mod whep;
