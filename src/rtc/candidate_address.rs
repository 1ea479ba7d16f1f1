//! The one address the server's ICE candidate is gathered on.
//!
//! webrtc-ice, given a UDP mux, makes one host candidate per local address but hands
//! them all the *same* connection, each candidate reading from it in a loop of its
//! own: a datagram is credited to whichever candidate's loop read it. With two
//! addresses, a check's answer that arrived for one candidate's pair is credited to
//! the other's, the pair the client nominated never succeeds, and the join stays
//! "connecting" (measured: 2 joins in 6 on a host with a second interface). So the
//! server gathers on exactly one address: the first of `rtc.interfaces` that has
//! one, else the interface of the default route, else the first found. An operator
//! with several addresses picks one with `rtc.interfaces`, or announces the public one
//! with `rtc.public_ip`.

use std::net::IpAddr;

/// A local IPv4 address and its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddress {
    /// The interface's name (`eth0`).
    pub interface: String,
    /// One of its addresses.
    pub ip: IpAddr,
}

/// Picks the address to gather on from `found` (in the system's order): the first
/// interface of `wanted` (the configured list; empty: any) that has one; without a
/// list, the `default_route` interface's, else the first non-loopback one, else
/// loopback when `include_loopback`.
pub fn pick(
    found: &[LocalAddress],
    wanted: &[String],
    include_loopback: bool,
    default_route: Option<&str>,
) -> Option<LocalAddress> {
    let usable = |a: &&LocalAddress| a.ip.is_ipv4() && (include_loopback || !a.ip.is_loopback());
    if !wanted.is_empty() {
        return wanted.iter().find_map(|name| found.iter().filter(usable).find(|a| &a.interface == name)).cloned();
    }
    let by_route = default_route.and_then(|name| found.iter().filter(usable).find(|a| a.interface == name));
    by_route
        .or_else(|| found.iter().filter(usable).find(|a| !a.ip.is_loopback()))
        .or_else(|| found.iter().find(usable))
        .cloned()
}

/// The machine's IPv4 addresses, by interface.
pub fn local_addresses() -> Vec<LocalAddress> {
    webrtc::util::ifaces::ifaces()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| Some(LocalAddress { ip: i.addr?.ip(), interface: i.name }))
        .filter(|a| a.ip.is_ipv4())
        .collect()
}

/// The interface of the IPv4 default route (Linux: `/proc/net/route`).
pub fn default_route_interface() -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let (interface, destination) = (fields.next()?, fields.next()?);
        (destination == "00000000").then(|| interface.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found() -> Vec<LocalAddress> {
        [("lo", "127.0.0.1"), ("docker0", "172.17.0.1"), ("eth0", "192.0.2.10"), ("eth0", "192.0.2.11")]
            .iter()
            .map(|(interface, ip)| LocalAddress { interface: (*interface).into(), ip: ip.parse().unwrap() })
            .collect()
    }

    fn ip(a: Option<LocalAddress>) -> Option<String> {
        a.map(|a| a.ip.to_string())
    }

    #[test]
    fn the_default_routes_interface_is_preferred() {
        assert_eq!(ip(pick(&found(), &[], false, Some("eth0"))), Some("192.0.2.10".into()));
    }

    #[test]
    fn without_a_default_route_the_first_non_loopback_address_is_used() {
        assert_eq!(ip(pick(&found(), &[], true, None)), Some("172.17.0.1".into()));
        let only_lo = &found()[..1];
        assert_eq!(ip(pick(only_lo, &[], true, None)), Some("127.0.0.1".into()));
        assert_eq!(ip(pick(only_lo, &[], false, None)), None, "loopback only when included");
    }

    #[test]
    fn the_configured_list_is_taken_in_its_order() {
        let wanted = ["wg0".to_owned(), "lo".to_owned(), "eth0".to_owned()];
        assert_eq!(ip(pick(&found(), &wanted, true, Some("eth0"))), Some("127.0.0.1".into()));
        assert_eq!(ip(pick(&found(), &wanted, false, Some("eth0"))), Some("192.0.2.10".into()));
        assert_eq!(ip(pick(&found(), &["wg0".to_owned()], true, None)), None);
    }
}
