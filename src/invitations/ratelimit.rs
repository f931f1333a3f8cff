//! Rate limits of the accept endpoint: a token bucket per client (`per_minute` requests
//! a minute, with bursts up to the same number) and one bucket shared by all clients
//! (the global cap), so that many addresses together cannot flood the API server.
//!
//! Who the client is ([`client_key`]): the TCP peer, unless the peer is a trusted proxy
//! (`--trusted-proxies`); then the right-most address of `X-Forwarded-For` that is not
//! itself a trusted proxy. A client that is not behind a trusted proxy cannot choose its
//! bucket by sending `X-Forwarded-For`. IPv6 clients are grouped by their /64 prefix
//! (one subscriber's network), so rotating addresses inside it does not escape the
//! limit.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many clients are remembered before idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A `--trusted-proxies` entry that is not an address or a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR network such as 10.0.0.0/8 or fd00::/8")]
pub struct InvalidCidr(pub String);

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidCidr(text.to_string());
        let trimmed = text.trim();
        let (address, prefix) = match trimmed.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (trimmed, None),
        };
        let network: IpAddr = address.parse().map_err(|_| invalid())?;
        let max = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(invalid)?,
        };
        Ok(Cidr {
            network: mask(network, prefix),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// Whether `address` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        match (self.network, address) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(address, self.prefix) == self.network
            }
            _ => false,
        }
    }
}

/// `address` with all but the first `prefix` bits cleared.
fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = if prefix == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(prefix.min(32))))
            };
            IpAddr::V4(kept.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = if prefix == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(prefix.min(128))))
            };
            IpAddr::V6(Ipv6Addr::from(kept))
        }
    }
}

/// The bucket a client falls into: an IPv4 address, or an IPv6 /64 network.
pub fn bucket_of(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        v6 @ IpAddr::V6(_) => mask(v6, 64),
    }
}

fn trusted(address: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|cidr| cidr.contains(address))
}

/// One `X-Forwarded-For` entry as an address: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`
/// or `[2001:db8::1]:5678`.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

/// The client's bucket: `peer` (the TCP peer) unless it is a trusted proxy; then the
/// right-most `X-Forwarded-For` address (`forwarded_for`: the header values in order)
/// that is not a trusted proxy. When every listed address is a trusted proxy, the
/// left-most one; an entry that is not an address ends the walk at the proxy that
/// handed it over (a proxy we trust appends well-formed addresses, so garbage was
/// written by the client).
pub fn client_key<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    proxies: &[Cidr],
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted(peer, proxies) {
        return bucket_of(peer);
    }
    let entries: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(address) = forwarded_address(entry) else {
            break;
        };
        client = address.to_canonical();
        if !trusted(client, proxies) {
            break;
        }
    }
    bucket_of(client)
}

/// Why a request was refused, and when to try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
    /// True when the cap shared by all clients was reached, not the client's own.
    pub global: bool,
}

#[derive(Debug)]
pub struct RateLimiter {
    per_minute: f64,
    global_per_minute: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<IpAddr, Bucket>,
    global: Bucket,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: rate,
            updated: now,
        }
    }

    fn refill(&mut self, rate: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate / 60.0).min(rate);
        self.updated = now;
    }

    /// How long until one token is there (zero when one is).
    fn wait(&self, rate: f64) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) * 60.0 / rate).max(Duration::from_secs(1))
        }
    }
}

impl RateLimiter {
    /// `per_minute` requests a minute for each client, `global_per_minute` for all
    /// together (each at least 1).
    pub fn new(per_minute: u32, global_per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute.max(1)),
            global_per_minute: f64::from(global_per_minute.max(1)),
            state: Mutex::new(State {
                buckets: HashMap::new(),
                global: Bucket::full(f64::from(global_per_minute.max(1)), Instant::now()),
            }),
        }
    }

    /// Takes one request from `client`'s bucket (see [`client_key`]) and from the
    /// global one, or says how long until both have one. A refused request takes
    /// nothing from either.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Limited> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let per_minute = self.per_minute;
        if state.buckets.len() >= MAX_TRACKED {
            state.buckets.retain(|_, bucket| {
                let mut bucket = *bucket;
                bucket.refill(per_minute, now);
                bucket.tokens < per_minute
            });
        }
        state.global.refill(self.global_per_minute, now);
        let global_wait = state.global.wait(self.global_per_minute);
        let bucket = state
            .buckets
            .entry(client)
            .or_insert(Bucket::full(per_minute, now));
        bucket.refill(per_minute, now);
        let own_wait = bucket.wait(per_minute);
        if !own_wait.is_zero() {
            return Err(Limited {
                retry_after: own_wait,
                global: false,
            });
        }
        if !global_wait.is_zero() {
            return Err(Limited {
                retry_after: global_wait,
                global: true,
            });
        }
        bucket.tokens -= 1.0;
        state.global.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn each_client_gets_its_own_bucket_that_refills() {
        let limiter = RateLimiter::new(3, 1000);
        let a = ip("10.0.0.1");
        let b = ip("10.0.0.2");
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(a, start).is_ok());
        }
        let limited = limiter.check(a, start).unwrap_err();
        assert!(!limited.global);
        let wait = limited.retry_after;
        assert!(
            wait >= Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(
            limiter.check(b, start).is_ok(),
            "another client is not limited"
        );
        assert!(limiter.check(a, start + Duration::from_secs(21)).is_ok());
        assert!(limiter.check(a, start + Duration::from_secs(21)).is_err());
    }

    #[test]
    fn the_global_cap_holds_across_clients() {
        let limiter = RateLimiter::new(5, 10);
        let start = Instant::now();
        for i in 0..10 {
            assert!(limiter.check(ip(&format!("10.0.1.{i}")), start).is_ok());
        }
        let limited = limiter.check(ip("10.0.2.1"), start).unwrap_err();
        assert!(limited.global, "{limited:?}");
        assert!(limited.retry_after >= Duration::from_secs(1));
        // A client refused by the global cap kept its own tokens; six seconds refill one
        // global token (10 a minute).
        let later = start + Duration::from_secs(6);
        assert!(limiter.check(ip("10.0.2.1"), later).is_ok());
        assert!(limiter.check(ip("10.0.2.2"), later).unwrap_err().global);
    }

    #[test]
    fn cidrs_parse_and_match() {
        let list = cidrs(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]);
        assert!(trusted(ip("10.200.3.4"), &list));
        assert!(trusted(ip("::ffff:10.1.2.3"), &list), "IPv4-mapped");
        assert!(trusted(ip("192.168.1.7"), &list));
        assert!(!trusted(ip("192.168.1.8"), &list));
        assert!(trusted(ip("fd12::1"), &list));
        assert!(!trusted(ip("2001:db8::1"), &list));
        assert!(!trusted(ip("11.0.0.1"), &list));
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "example.com",
            "10.0.0.0/x",
            "/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let proxies = cidrs(&["10.0.0.0/8"]);
        assert_eq!(
            client_key(ip("203.0.113.9"), ["198.51.100.1"], &proxies),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_key(ip("203.0.113.9"), ["198.51.100.1"], &[]),
            ip("203.0.113.9"),
            "no trusted proxies: the header is ignored"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_address_is_the_client() {
        let proxies = cidrs(&["10.0.0.0/8"]);
        // The client forged the first entry; the proxy appended the real address.
        assert_eq!(
            client_key(
                ip("10.0.0.5"),
                ["1.1.1.1, 203.0.113.9", "10.0.0.7"],
                &proxies
            ),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_key(ip("10.0.0.5"), ["203.0.113.9:4711"], &proxies),
            ip("203.0.113.9"),
            "with a port"
        );
        // Every hop trusted: the left-most.
        assert_eq!(
            client_key(ip("10.0.0.5"), ["10.9.9.9, 10.0.0.7"], &proxies),
            ip("10.9.9.9")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_key(ip("10.0.0.5"), std::iter::empty(), &proxies),
            ip("10.0.0.5")
        );
        // Garbage stops the walk at the proxy that handed it over.
        assert_eq!(
            client_key(ip("10.0.0.5"), ["203.0.113.9, garbage, 10.0.0.7"], &proxies),
            ip("10.0.0.7")
        );
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a = client_key(ip("2001:db8:1:2:aaaa::1"), std::iter::empty(), &[]);
        let b = client_key(ip("2001:db8:1:2:ffff:1:2:3"), std::iter::empty(), &[]);
        let c = client_key(ip("2001:db8:1:3::1"), std::iter::empty(), &[]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("::ffff:203.0.113.9"), std::iter::empty(), &[]),
            ip("203.0.113.9"),
            "IPv4-mapped peers are IPv4 clients"
        );
        let limiter = RateLimiter::new(2, 1000);
        let now = Instant::now();
        assert!(limiter.check(a, now).is_ok());
        assert!(limiter.check(b, now).is_ok());
        assert!(limiter.check(a, now).is_err(), "rotating inside a /64");
        assert!(limiter.check(c, now).is_ok());
    }
}
