//! The per-IP limit on joins (`server.join_rate_per_min`): a keyed token bucket, so
//! one address cannot flood the server with peer connections.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use warp::http::StatusCode;

use super::ApiError;

/// Checks between two sweeps of addresses whose budget is full again.
const SWEEP_EVERY: u64 = 1024;

/// Joins allowed per client address.
pub struct JoinLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: std::sync::atomic::AtomicU64,
}

impl JoinLimiter {
    /// `per_minute` joins per address, in bursts of up to as many; 0 disables.
    pub fn new(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts a join from `ip`; 429 when it is over its rate.
    pub fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        // Forget addresses that are back to a full budget now and then, so the map
        // holds only recent joiners.
        if self.checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now()).as_secs() + 1;
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, format!("too many joins from {ip}; retry in {wait} s"))
                .retry_after(u32::try_from(wait).unwrap_or(u32::MAX))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_budget() {
        let limiter = JoinLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_ok());
        let refused = limiter.check(a).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(limiter.check(b).is_ok(), "another address is not affected");
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = JoinLimiter::new(0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..1000).all(|_| limiter.check(a).is_ok()));
    }
}
