//! Where slice networks get their addresses. Left to itself, Docker carves bridge networks out
//! of its default pools, which hold about 31 of them per engine: a node would refuse its 32nd
//! slice. A node manager instead takes one /24 per slice network from a pool of its own
//! (`--network-pool`, 4096 networks in the default 10.240.0.0/12), skipping every subnet that
//! any network of the engine or any route of the host already covers. Node managers sharing an
//! engine need no coordination: the engine refuses an overlapping subnet, and the loser moves
//! on to the next one.
//!
//! Pure: the engine's subnets and the host's routes come in as arguments.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Prefix length of one slice network (254 slivers of one slice on one node).
pub const SLICE_PREFIX: u8 = 24;

/// The default pool: 10.240.0.0/12, 4096 slice networks.
pub const DEFAULT_POOL: &str = "10.240.0.0/12";

/// An IPv4 network, e.g. 10.240.3.0/24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Net {
    base: u32,
    prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Net {
    /// The network holding `addr`/`prefix` (host bits cleared).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Net {
            base: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    /// Prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// First address.
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// The first host address, the gateway Docker gives the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn last(&self) -> u32 {
        self.base | !mask(self.prefix)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Net) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix)
    }
}

impl FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| {
            format!("{s:?} is not a network: expected ADDRESS/PREFIX, e.g. 10.240.0.0/12")
        })?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{prefix:?} is not a prefix length (0 to 32)"))?;
        let net = Net::new(addr, prefix).expect("prefix checked");
        if net.addr() != addr {
            return Err(format!("{s} has host bits set; did you mean {net}?"));
        }
        Ok(net)
    }
}

/// The pool slice networks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool(Net);

impl Pool {
    /// A pool over `net`, which must hold at least one slice network.
    pub fn new(net: Net) -> Result<Self, String> {
        if net.prefix > SLICE_PREFIX {
            return Err(format!(
                "network pool {net} is smaller than one /{SLICE_PREFIX} slice network"
            ));
        }
        Ok(Pool(net))
    }

    /// The pool's network.
    pub fn net(&self) -> Net {
        self.0
    }

    /// How many slice networks it holds.
    pub fn capacity(&self) -> u32 {
        1 << (SLICE_PREFIX - self.0.prefix)
    }

    /// Slice networks of the pool, lowest first, that overlap nothing in `taken`.
    pub fn free<'a>(&self, taken: &'a [Net]) -> impl Iterator<Item = Net> + 'a {
        let first = self.0.base;
        let step = 1u32 << (32 - u32::from(SLICE_PREFIX));
        (0..self.capacity())
            .map(move |i| Net {
                base: first + i * step,
                prefix: SLICE_PREFIX,
            })
            .filter(move |n| !taken.iter().any(|t| t.overlaps(n)))
    }
}

impl FromStr for Pool {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Pool::new(s.parse()?)
    }
}

/// The networks the host routes to, from the text of `/proc/net/route` (the default route
/// is left out: it covers everything).
pub fn routes(proc_net_route: &str) -> Vec<Net> {
    proc_net_route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // The kernel prints each address as the native-endian integer whose bytes in
            // memory are the address in network order.
            let dest = u32::from_str_radix(cols.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(cols.get(7)?, 16).ok()?;
            let prefix = mask.count_ones() as u8;
            (prefix > 0).then(|| Net::new(Ipv4Addr::from(dest.to_ne_bytes()), prefix))?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Net {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_refuse_bad_input_with_reasons() {
        assert_eq!(net("10.240.0.0/12").to_string(), "10.240.0.0/12");
        assert_eq!(
            "10.240.0.1/12".parse::<Net>().unwrap_err(),
            "10.240.0.1/12 has host bits set; did you mean 10.240.0.0/12?"
        );
        assert!("10.240.0.0"
            .parse::<Net>()
            .unwrap_err()
            .contains("ADDRESS/PREFIX"));
        assert!("10.240.0.0/33"
            .parse::<Net>()
            .unwrap_err()
            .contains("prefix length"));
        assert!("ten/8".parse::<Net>().unwrap_err().contains("IPv4"));
        assert!("10.0.0.0/25"
            .parse::<Pool>()
            .unwrap_err()
            .contains("smaller than one /24"));
    }

    #[test]
    fn overlap_is_symmetric_and_exact_at_the_edges() {
        let a = net("10.240.0.0/12");
        assert!(a.overlaps(&net("10.255.255.0/24")));
        assert!(net("10.255.255.0/24").overlaps(&a));
        assert!(!a.overlaps(&net("10.0.0.0/12")));
        assert!(!net("10.240.1.0/24").overlaps(&net("10.240.2.0/24")));
        assert!(net("0.0.0.0/0").overlaps(&net("192.168.1.0/24")));
    }

    #[test]
    fn the_pool_skips_what_is_taken_and_holds_4096_by_default() {
        let pool: Pool = DEFAULT_POOL.parse().unwrap();
        assert_eq!(pool.capacity(), 4096);
        let taken = [net("10.240.0.0/23"), net("10.240.3.0/24")];
        let free: Vec<String> = pool.free(&taken).take(3).map(|n| n.to_string()).collect();
        assert_eq!(free, ["10.240.2.0/24", "10.240.4.0/24", "10.240.5.0/24"]);
        assert_eq!(pool.free(&[pool.net()]).count(), 0);
        assert_eq!(net("10.240.4.0/24").gateway().to_string(), "10.240.4.1");
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn host_routes_are_read_from_proc_net_route() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            br-1\t0000F00A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let r: Vec<String> = routes(text).iter().map(Net::to_string).collect();
        assert_eq!(r, ["192.0.2.0/24", "10.240.0.0/16"]);
    }
}
