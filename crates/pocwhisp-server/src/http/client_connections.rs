//! How many connections each client holds, so that one address cannot take every one of
//! `server.max_connections` (`server.max_connections_per_client`).
//!
//! IPv6 clients are counted by their /64 network: one host is usually given a whole /64,
//! and could otherwise open each connection from another address of it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use perf_core::sync::lock;

/// The open connections of every client address; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct ClientConnections {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of a client, given back when dropped.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    connections: Arc<ClientConnections>,
    client: IpAddr,
}

/// The address a client is counted by: IPv4 as it is (an IPv4-mapped IPv6 address as the
/// IPv4 one), IPv6 by its /64 network.
fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl ClientConnections {
    /// At most `cap` connections per client (at least one).
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(ClientConnections {
            cap: cap.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `address`, or `None` if its client already holds `cap`.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Option<ClientSlot> {
        let client = client_of(address);
        let mut open = lock(&self.open);
        let count = open.entry(client).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            connections: Arc::clone(self),
            client,
        })
    }

    /// Connections `address`'s client holds now.
    #[cfg(test)]
    fn held_by(&self, address: IpAddr) -> usize {
        let open = lock(&self.open);
        open.get(&client_of(address)).copied().unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.connections.open);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            // Clients that left take no memory.
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_holds_at_most_its_cap_and_gets_slots_back_as_it_closes() {
        let connections = ClientConnections::new(2);
        let first = connections.admit(address("192.0.2.1")).unwrap();
        let _second = connections.admit(address("192.0.2.1")).unwrap();
        assert!(connections.admit(address("192.0.2.1")).is_none());
        // Another client is not affected.
        assert!(connections.admit(address("192.0.2.2")).is_some());
        drop(first);
        assert_eq!(connections.held_by(address("192.0.2.1")), 1);
        assert!(connections.admit(address("192.0.2.1")).is_some());
    }

    #[test]
    fn a_client_that_closed_everything_is_forgotten() {
        let connections = ClientConnections::new(1);
        drop(connections.admit(address("192.0.2.7")).unwrap());
        assert!(connections.open.lock().unwrap().is_empty());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        let connections = ClientConnections::new(1);
        let _held = connections.admit(address("2001:db8:1:2::1")).unwrap();
        assert!(connections.admit(address("2001:db8:1:2:ffff::9")).is_none());
        assert!(connections.admit(address("2001:db8:1:3::1")).is_some());
        // An IPv4-mapped address is its IPv4 client.
        let _v4 = connections.admit(address("192.0.2.9")).unwrap();
        assert!(connections.admit(address("::ffff:192.0.2.9")).is_none());
    }
}
