//! Real impaired networks: a client in a network namespace of its own, joined to the
//! host (where the server runs) by a veth pair; packet loss made by nftables
//! (`numgen random`) in an input hook, so a dropped packet is simply never received,
//! as on a real network; rate limits by `tc tbf`. Needs root, `ip`, `nft` and `tc`;
//! [`Namespace::create`] says why not otherwise.

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mcu_bench::client::{Client, ClientOptions, Received};
use webrtc::peer_connection::RTCPeerConnection;

/// A namespace `mcu-{pid}-{n}` with its end of a veth pair at `10.77.{n}.2/24`; the
/// host's end is `10.77.{n}.1/24`. Removed (with the pair and its nftables table)
/// when dropped.
pub struct Namespace {
    pub name: String,
    /// The host's end of the veth pair (the server's side).
    pub host_interface: String,
    /// The host's address on it (`10.77.{n}.1`).
    pub host_address: String,
    table: String,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

impl Namespace {
    /// Creates the namespace and its link; `Err` says why it cannot be done here.
    pub fn create() -> Result<Namespace, String> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        if unsafe { libc::geteuid() } != 0 {
            return Err("network namespaces need root".into());
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed) + (std::process::id() % 50) * 4;
        let name = format!("mcu-{}-{n}", std::process::id());
        let (host, inner) = (format!("mcuh{n}"), format!("mcun{n}"));
        let namespace = Namespace {
            name: name.clone(),
            host_interface: host.clone(),
            host_address: format!("10.77.{n}.1"),
            table: format!("mcu_test_{}_{n}", std::process::id()),
        };
        // A run killed before its cleanup may have left the host's end behind.
        let _ = run("ip", &["link", "del", &host]);
        run("ip", &["netns", "add", &name])?;
        run("ip", &["link", "add", &host, "type", "veth", "peer", "name", &inner, "netns", &name])?;
        run("ip", &["addr", "add", &format!("10.77.{n}.1/24"), "dev", &host])?;
        run("ip", &["link", "set", &host, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", name.as_str(), "ip"];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        in_ns(&["addr", "add", &format!("10.77.{n}.2/24"), "dev", &inner])?;
        in_ns(&["link", "set", &inner, "up"])?;
        in_ns(&["link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// A namespace, or `None` after saying why a test cannot make one here (it then
    /// skips).
    pub fn or_skip() -> Option<Namespace> {
        match Namespace::create() {
            Ok(ns) => Some(ns),
            Err(why) => {
                eprintln!("SKIPPED: cannot make a network namespace here: {why}");
                None
            }
        }
    }

    /// Drops `percent` % of the UDP packets the host receives from the namespace (a
    /// publisher's uplink, at the server's input); 100 cuts it.
    pub fn lose_on_host_input(&self, percent: u32) -> Result<(), String> {
        let iif = format!("\"{}\"", self.host_interface);
        self.drop_rule(&[], &["iifname", &iif], percent)
    }

    /// Drops `percent` % of the UDP packets the namespace receives (a receiver's
    /// downlink, at the client's input).
    pub fn lose_on_namespace_input(&self, percent: u32) -> Result<(), String> {
        self.drop_rule(&["netns", "exec", &self.name], &[], percent)
    }

    /// An input-hook chain dropping `percent` % of UDP (matching `filter` too), made
    /// with `nft` run through `ip {prefix}` (in the namespace) or directly.
    fn drop_rule(&self, prefix: &[&str], filter: &[&str], percent: u32) -> Result<(), String> {
        let nft = |args: &[&str]| {
            if prefix.is_empty() {
                run("nft", args)
            } else {
                let mut all = prefix.to_vec();
                all.push("nft");
                all.extend_from_slice(args);
                run("ip", &all)
            }
        };
        let table = self.table.as_str();
        let percent = percent.to_string();
        nft(&["add", "table", "inet", table])?;
        nft(&["add", "chain", "inet", table, "input", "{ type filter hook input priority 0; }"])?;
        let mut rule = vec!["add", "rule", "inet", table, "input"];
        rule.extend_from_slice(filter);
        rule.extend_from_slice(&["meta", "l4proto", "udp"]);
        // 100 % is an outage: every packet (numgen's range ends at 99).
        if percent != "100" {
            rule.extend_from_slice(&["numgen", "random", "mod", "100", "<", &percent]);
        }
        rule.extend_from_slice(&["counter", "drop"]);
        nft(&rule)
    }

    /// Limits what the host sends the namespace to `rate` (`tc tbf`, e.g. "300kbit").
    pub fn limit(&self, rate: &str) -> Result<(), String> {
        let dev = self.host_interface.as_str();
        run("tc", &["qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", "16kb", "latency", "50ms"])
    }

    /// Lifts [`Self::limit`].
    pub fn unlimit(&self) -> Result<(), String> {
        run("tc", &["qdisc", "del", "dev", &self.host_interface, "root"])
    }

    /// Packets dropped so far by the loss rules (both sides).
    pub fn dropped(&self) -> u64 {
        let list = |mut command: Command| {
            command.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
        };
        let mut host = Command::new("nft");
        host.args(["list", "table", "inet", &self.table]);
        let mut inner = Command::new("ip");
        inner.args(["netns", "exec", &self.name, "nft", "list", "table", "inet", &self.table]);
        [list(host), list(inner)]
            .iter()
            .flat_map(|text| {
                text.split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .filter(|w| w[0] == "packets")
                    .filter_map(|w| w[1].parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    /// Ends the loss (both sides).
    pub fn heal(&self) {
        let _ = run("nft", &["delete", "table", "inet", &self.table]);
        let _ = run("ip", &["netns", "exec", &self.name, "nft", "delete", "table", "inet", &self.table]);
    }

    /// Joins `room` at `base_url` from inside the namespace: the client's runtime
    /// threads enter the namespace before any socket is made (threads they start
    /// inherit it).
    pub async fn join(&self, base_url: &str, room: &str, options: ClientOptions) -> NamespacedClient {
        let path = format!("/run/netns/{}", self.name);
        let (base_url, room) = (base_url.to_owned(), room.to_owned());
        let (joined_tx, joined_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("namespace file");
            assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let options = ClientOptions { loopback_only: false, ..options };
                let client = Client::join(&base_url, &room, options).await.expect("join from the namespace");
                let _ = joined_tx.send((Arc::clone(&client.received), Arc::clone(&client.pc)));
                let _ = stop_rx.await;
                client.close().await;
            });
        });
        let (received, pc) = joined_rx.await.expect("the namespaced client joined");
        NamespacedClient { received, pc, stop: Some(stop_tx), thread: Some(thread) }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.heal();
        // Deleting the namespace deletes its end of the pair, and with it the host's.
        let _ = run("ip", &["netns", "delete", &self.name]);
    }
}

/// A client running in a namespace (on its own runtime); closed when dropped.
pub struct NamespacedClient {
    pub received: Arc<Received>,
    pub pc: Arc<RTCPeerConnection>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for NamespacedClient {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
