//! Who may open a WebSocket: the connection cap and the per-address cap.
//! An [`Admission`] lives as long as its session and gives its places back
//! when dropped.
//!
//! Every per-address limit counts an [`AddressGroup`], not an exact
//! address: one IPv6 subscriber gets a whole /64 and could otherwise use a
//! fresh address for every connection.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The unit every per-address limit counts: an IPv4 address as it is, an
/// IPv6 address as its /64 network (what one subscriber or one LAN gets),
/// and an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) as its IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressGroup(IpAddr);

impl AddressGroup {
    /// The group `ip` belongs to.
    pub fn of(ip: IpAddr) -> AddressGroup {
        match ip {
            IpAddr::V4(v4) => AddressGroup(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressGroup(IpAddr::V4(v4)),
                None => AddressGroup(IpAddr::V6(Ipv6Addr::from(
                    u128::from(v6) & !((1u128 << 64) - 1),
                ))),
            },
        }
    }
}

/// `192.0.2.1`, or `2001:db8::/64`.
impl fmt::Display for AddressGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Connections open per [`AddressGroup`]; one counter per kind of
/// connection (WebSockets, plain HTTP).
///
/// A std `Mutex`: it is held for one map update, never across an await.
#[derive(Default)]
pub struct PerAddress {
    open: Mutex<HashMap<AddressGroup, usize>>,
}

/// One connection's place under a [`PerAddress`] cap, given back on drop.
pub struct Place {
    group: AddressGroup,
    per_address: Arc<PerAddress>,
}

impl PerAddress {
    /// Takes a place for `group` if it has fewer than `max` open.
    pub fn try_take(self: &Arc<Self>, group: AddressGroup, max: usize) -> Option<Place> {
        let mut open = self.open.lock().expect("per-address lock");
        let n = open.entry(group).or_default();
        if *n >= max {
            if *n == 0 {
                open.remove(&group);
            }
            return None;
        }
        *n += 1;
        Some(Place {
            group,
            per_address: self.clone(),
        })
    }

    /// Places taken by `group` now.
    pub fn open(&self, group: AddressGroup) -> usize {
        let open = self.open.lock().expect("per-address lock");
        open.get(&group).copied().unwrap_or(0)
    }
}

impl Place {
    /// The group this place counts against.
    pub fn group(&self) -> AddressGroup {
        self.group
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.per_address.open.lock().expect("per-address lock");
        if let Some(n) = open.get_mut(&self.group) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.group);
            }
        }
    }
}

/// A session's places under both caps.
pub struct Admission {
    /// Where the client connects from (after trusted proxies).
    pub client: IpAddr,
    _permit: OwnedSemaphorePermit,
    place: Place,
}

impl Admission {
    /// The address group the client counts against.
    pub fn group(&self) -> AddressGroup {
        self.place.group()
    }
}

/// Why a connection was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// The broker-wide connection cap.
    Full,
    /// This address group already has its share of connections.
    TooManyFrom(AddressGroup, usize),
}

/// Takes a place for `client` under both caps, or says which one is full.
pub fn admit(
    connections: &Arc<Semaphore>,
    per_address: &Arc<PerAddress>,
    client: IpAddr,
    max_per_address: usize,
) -> Result<Admission, Refusal> {
    let permit = connections
        .clone()
        .try_acquire_owned()
        .map_err(|_| Refusal::Full)?;
    let group = AddressGroup::of(client);
    let place = per_address
        .try_take(group, max_per_address)
        .ok_or(Refusal::TooManyFrom(group, max_per_address))?;
    Ok(Admission {
        client,
        _permit: permit,
        place,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(s: &str) -> AddressGroup {
        AddressGroup::of(s.parse().unwrap())
    }

    #[test]
    fn ipv4_is_exact_and_ipv6_is_its_slash_64() {
        assert_eq!(group("192.0.2.1"), group("192.0.2.1"));
        assert_ne!(group("192.0.2.1"), group("192.0.2.2"));
        assert_eq!(group("2001:db8::1"), group("2001:db8::2"));
        assert_eq!(
            group("2001:db8::1"),
            group("2001:db8:0:0:ffff:ffff:ffff:ffff")
        );
        assert_ne!(group("2001:db8::1"), group("2001:db8:0:1::1"));
        assert_eq!(group("::ffff:192.0.2.1"), group("192.0.2.1"));
        assert_ne!(group("::ffff:192.0.2.1"), group("::ffff:192.0.2.2"));
        assert_eq!(group("2001:db8::1").to_string(), "2001:db8::/64");
        assert_eq!(group("::ffff:192.0.2.1").to_string(), "192.0.2.1");
    }

    #[test]
    fn places_are_counted_per_group_and_given_back() {
        let per = Arc::new(PerAddress::default());
        let a = per.try_take(group("2001:db8::1"), 2).unwrap();
        let _b = per.try_take(group("2001:db8::2"), 2).unwrap();
        assert!(per.try_take(group("2001:db8::3"), 2).is_none());
        assert!(per.try_take(group("2001:db8:0:1::1"), 2).is_some());
        drop(a);
        assert_eq!(per.open(group("2001:db8::9")), 1);
        assert!(per.try_take(group("2001:db8::3"), 2).is_some());
        assert!(per.try_take(group("192.0.2.1"), 0).is_none());
        assert_eq!(per.open(group("192.0.2.1")), 0);
    }
}
