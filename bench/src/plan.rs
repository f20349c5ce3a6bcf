//! What a scenario asks for, as numbers: sockets, users, channels, senders, rate, and which
//! socket belongs to which user, channel and node.

use anyhow::{bail, Result};

use crate::cli::Scenario;

/// What a scenario asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub scenario: &'static str,
    pub sockets: usize,
    /// Socket `i` belongs to user `i % users`.
    pub users: usize,
    /// User `u` is a member of channel `u % channels` (0: no channels).
    pub channels: usize,
    /// Sockets `0..senders` send.
    pub senders: usize,
    /// Aggregate messages/s (open loop); 0 with `inflight > 0` is the closed loop.
    pub rate: f64,
    pub inflight: usize,
}

impl Plan {
    pub fn from(s: &Scenario) -> Result<Plan> {
        let p = match *s {
            Scenario::Idle { clients, users } => Plan {
                scenario: "idle",
                sockets: clients,
                users: users.unwrap_or(clients).clamp(1, clients.max(1)),
                channels: 0,
                senders: 0,
                rate: 0.0,
                inflight: 0,
            },
            Scenario::Fanout {
                members,
                senders,
                rate,
                users,
            } => Plan {
                scenario: "fanout",
                sockets: members,
                users: users.unwrap_or(members).clamp(1, members.max(1)),
                channels: 1,
                senders: senders.min(members),
                rate,
                inflight: 0,
            },
            Scenario::Latency {
                clients,
                channels,
                rate,
            } => Plan {
                scenario: "latency",
                sockets: clients,
                users: clients,
                channels: channels.min(clients),
                senders: clients,
                rate,
                inflight: 0,
            },
            Scenario::Ingest {
                senders,
                channels,
                inflight,
                rate,
            } => Plan {
                scenario: "ingest",
                sockets: senders,
                users: senders,
                channels: channels.unwrap_or(senders).clamp(1, senders.max(1)),
                senders,
                rate,
                inflight: if rate > 0.0 { 0 } else { inflight.max(1) },
            },
        };
        if p.sockets == 0 {
            bail!("need at least one client");
        }
        if p.senders > 0 && p.rate <= 0.0 && p.inflight == 0 {
            bail!("--rate must be > 0");
        }
        Ok(p)
    }

    pub fn channel_of_socket(&self, i: usize) -> Option<usize> {
        (self.channels > 0).then(|| (i % self.users) % self.channels)
    }

    /// Node socket `i` connects to. Members of one channel are spread over the nodes (the k-th
    /// member of a channel goes to node k mod n), so with several nodes most deliveries cross
    /// from the sender's node to another one, which is what a cluster benchmark is about.
    pub fn node_of_socket(&self, i: usize, nodes: usize) -> usize {
        let nodes = nodes.max(1);
        match (i % self.users).checked_div(self.channels) {
            Some(member) => (member + i / self.users) % nodes,
            None => i % nodes,
        }
    }

    /// Connected sockets receiving each message of channel `c`.
    pub fn fanout(&self, c: usize) -> u64 {
        (0..self.sockets)
            .filter(|&i| self.channel_of_socket(i) == Some(c))
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let p = Plan::from(&Scenario::Latency {
            clients: 200,
            channels: 100,
            rate: 10000.0,
        })
        .unwrap();
        assert_eq!(
            (p.sockets, p.users, p.channels, p.senders),
            (200, 200, 100, 200)
        );
        assert_eq!(p.fanout(0), 2);
        assert_eq!(p.channel_of_socket(101), Some(1));
        // Two nodes: the two members of every channel sit on different nodes.
        for ch in 0..100 {
            assert_ne!(p.node_of_socket(ch, 2), p.node_of_socket(ch + 100, 2));
        }
        assert_eq!(p.node_of_socket(7, 1), 0);
        let f = Plan::from(&Scenario::Fanout {
            members: 10,
            senders: 1,
            rate: 5.0,
            users: None,
        })
        .unwrap();
        assert_eq!(f.fanout(0), 10);
        // One channel: sockets alternate between nodes.
        let on_node1 = (0..10).filter(|&i| f.node_of_socket(i, 2) == 1).count();
        assert_eq!(on_node1, 5);
        let i = Plan::from(&Scenario::Ingest {
            senders: 4,
            channels: None,
            inflight: 8,
            rate: 0.0,
        })
        .unwrap();
        assert_eq!((i.channels, i.inflight, i.fanout(3)), (4, 8, 1));
        let idle = Plan::from(&Scenario::Idle {
            clients: 100,
            users: Some(10),
        })
        .unwrap();
        assert_eq!((idle.users, idle.channel_of_socket(5)), (10, None));
        assert!(Plan::from(&Scenario::Fanout {
            members: 10,
            senders: 1,
            rate: 0.0,
            users: None,
        })
        .is_err());
    }
}
