//! Who may open a WebSocket: the connection cap and the per-address cap.
//! An [`Admission`] lives as long as its session and gives its places back
//! when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections open per client address.
#[derive(Default)]
pub struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A session's places under both caps.
pub struct Admission {
    /// Where the client connects from (after trusted proxies).
    pub client: IpAddr,
    _permit: OwnedSemaphorePermit,
    per_address: Arc<PerAddress>,
}

/// Why a connection was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// The broker-wide connection cap.
    Full,
    /// This address already has its share of connections.
    TooManyFrom(IpAddr, usize),
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
    let mut open = per_address.open.lock().expect("per-address lock");
    let n = open.entry(client).or_default();
    if *n >= max_per_address {
        return Err(Refusal::TooManyFrom(client, max_per_address));
    }
    *n += 1;
    drop(open);
    Ok(Admission {
        client,
        _permit: permit,
        per_address: per_address.clone(),
    })
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.per_address.open.lock().expect("per-address lock");
        if let Some(n) = open.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}
