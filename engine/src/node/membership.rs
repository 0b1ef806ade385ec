//! Failure detection: every node sends each other member a heartbeat (a `Status`
//! request on the existing QUIC connection) every `heartbeat_interval`, and declares a
//! member dead when none has been answered for `failure_timeout`. A member that stops
//! answering while its process lives (SIGSTOP, a stall) is dead the same way, and alive
//! again with its first answer.
//!
//! At most one heartbeat per member is in flight, so a stopped member does not pile
//! them up. Members start alive: a node that has just started gives its peers one
//! timeout to answer before it judges them. So does a node that was itself paused
//! (stopped, or starved of CPU) for longer than the timeout: its peers' silence was its
//! own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fdw_net::placement::Member;
use fdw_net::transport;
use fdw_net::wire::{MemberHealth, Request, Response};
use tokio::time::Instant;

use super::NodeShared;

/// Heartbeat timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// How often each member is sent a heartbeat.
    pub interval: Duration,
    /// How long without an answer before a member is declared dead.
    pub failure_timeout: Duration,
}

impl Default for HeartbeatConfig {
    /// Every 500 ms, dead after 2 s: a dead member is known within 2.5 s.
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            failure_timeout: Duration::from_secs(2),
        }
    }
}

struct Peer {
    last_answer: Instant,
    alive: bool,
    /// When `alive` last changed.
    since: Instant,
    probing: bool,
}

/// This node's view of the other members.
pub(super) struct Membership {
    config: HeartbeatConfig,
    peers: Mutex<HashMap<u16, Peer>>,
    last_tick: Mutex<Instant>,
}

impl Membership {
    pub(super) fn new(config: HeartbeatConfig, me: u16, members: &[Member]) -> Self {
        let now = Instant::now();
        let peers = members
            .iter()
            .filter(|m| m.id != me)
            .map(|m| {
                let peer = Peer {
                    last_answer: now,
                    alive: true,
                    since: now,
                    probing: false,
                };
                (m.id, peer)
            })
            .collect();
        Self {
            config,
            peers: Mutex::new(peers),
            last_tick: Mutex::new(now),
        }
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Peer>> {
        self.peers.lock().expect("membership lock")
    }

    /// Whether `id` answered within the failure timeout (this node counts as alive).
    #[cfg(test)]
    fn is_alive(&self, id: u16) -> bool {
        self.peers().get(&id).is_none_or(|p| p.alive)
    }

    /// How long `id` has been silent, if it is declared dead.
    pub(super) fn dead_for(&self, id: u16) -> Option<Duration> {
        let peers = self.peers();
        let peer = peers.get(&id).filter(|p| !p.alive)?;
        Some(peer.last_answer.elapsed())
    }

    /// Every other member as this node sees it, by id.
    pub(super) fn health(&self) -> Vec<MemberHealth> {
        let mut health: Vec<MemberHealth> = self
            .peers()
            .iter()
            .map(|(&id, p)| MemberHealth {
                id,
                alive: p.alive,
                since_ms: p.since.elapsed().as_millis() as u64,
            })
            .collect();
        health.sort_by_key(|h| h.id);
        health
    }

    /// Records a heartbeat's outcome.
    fn answered(&self, id: u16, answered: bool) {
        let mut peers = self.peers();
        let Some(peer) = peers.get_mut(&id) else {
            return;
        };
        peer.probing = false;
        if answered {
            peer.last_answer = Instant::now();
            if !peer.alive {
                tracing::info!(peer = id, "member answers again: alive");
                peer.alive = true;
                peer.since = Instant::now();
            }
        }
    }

    /// Declares dead every member silent for longer than the failure timeout; returns
    /// the members to send a heartbeat now (none already in flight).
    fn tick(&self) -> Vec<u16> {
        let now = Instant::now();
        let paused = {
            let mut last = self.last_tick.lock().expect("membership tick");
            let gap = now.saturating_duration_since(*last);
            *last = now;
            (gap > self.config.failure_timeout).then_some(gap)
        };
        let mut peers = self.peers();
        if let Some(gap) = paused {
            tracing::warn!(
                ?gap,
                "this node was paused: every member gets a new timeout to answer"
            );
            for peer in peers.values_mut() {
                peer.last_answer = peer.last_answer.max(now);
            }
        }
        let mut due = Vec::new();
        for (&id, peer) in peers.iter_mut() {
            let silent = now.saturating_duration_since(peer.last_answer);
            if peer.alive && silent > self.config.failure_timeout {
                tracing::warn!(
                    peer = id,
                    ?silent,
                    "member declared dead: no heartbeat answered"
                );
                peer.alive = false;
                peer.since = now;
            }
            if !peer.probing {
                peer.probing = true;
                due.push(id);
            }
        }
        due
    }
}

/// The heartbeat loop; ends when the node shuts down.
pub(super) async fn run(node: std::sync::Arc<NodeShared>) {
    let interval = node.membership.config.interval;
    let timeout = node.membership.config.failure_timeout;
    while !node.draining.load(Ordering::Acquire) {
        for id in node.membership.tick() {
            let Some(member) = node.placement.member(id).cloned() else {
                continue;
            };
            let node = node.clone();
            tokio::spawn(async move {
                let answered = transport::within(timeout, heartbeat(&node, &member))
                    .await
                    .is_ok_and(|ok| ok);
                node.membership.answered(member.id, answered);
            });
        }
        tokio::time::sleep(interval).await;
    }
}

/// One heartbeat: a status request on the member's connection.
async fn heartbeat(node: &NodeShared, member: &Member) -> Result<bool, transport::TransportError> {
    let Ok(connection) = node.peers.connection(member).await else {
        return Ok(false);
    };
    let Ok((mut send, mut recv)) = connection.open_bi().await else {
        return Ok(false);
    };
    transport::write_message(&mut send, &Request::Status.encode()).await?;
    let _ = send.finish();
    Ok(matches!(
        transport::read_response(&mut recv).await?,
        Response::Status(_)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u16) -> Vec<Member> {
        (0..n)
            .map(|id| Member {
                id,
                name: format!("node-{id}"),
                addr: ([127, 0, 0, 1], 7000 + id).into(),
            })
            .collect()
    }

    const CONFIG: HeartbeatConfig = HeartbeatConfig {
        interval: Duration::from_millis(100),
        failure_timeout: Duration::from_millis(500),
    };

    /// Ticks every interval for `ticks` intervals, member `answering` answering each
    /// heartbeat and the others silent.
    async fn run_for(m: &Membership, ticks: u32, answering: &[u16]) {
        for _ in 0..ticks {
            for id in m.tick() {
                m.answered(id, answering.contains(&id));
            }
            tokio::time::advance(CONFIG.interval).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_member_is_dead_after_the_timeout_and_alive_when_it_answers() {
        let m = Membership::new(CONFIG, 0, &members(3));
        run_for(&m, 5, &[1]).await;
        assert!(m.is_alive(1) && m.is_alive(2), "not yet past the timeout");
        run_for(&m, 2, &[1]).await;
        assert!(m.is_alive(1), "it answers");
        assert!(!m.is_alive(2), "silent for longer than 500 ms");
        assert!(m.dead_for(2).is_some_and(|d| d > CONFIG.failure_timeout));
        assert!(m.is_alive(0), "a node never judges itself");
        let health = m.health();
        assert_eq!(
            health.iter().map(|h| (h.id, h.alive)).collect::<Vec<_>>(),
            [(1, true), (2, false)]
        );
        run_for(&m, 1, &[1, 2]).await;
        assert!(
            m.is_alive(2) && m.dead_for(2).is_none(),
            "back with its first answer"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_heartbeat_at_a_time_per_member() {
        let m = Membership::new(CONFIG, 0, &members(2));
        assert_eq!(m.tick(), [1]);
        assert!(m.tick().is_empty(), "the first is still in flight");
        m.answered(1, false);
        assert_eq!(m.tick(), [1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_was_paused_does_not_blame_its_peers() {
        let m = Membership::new(CONFIG, 0, &members(2));
        run_for(&m, 2, &[1]).await;
        // This node stops for 5 s (SIGSTOP): no ticks, no answers.
        tokio::time::advance(Duration::from_secs(5)).await;
        for id in m.tick() {
            m.answered(id, false);
        }
        assert!(m.is_alive(1), "its silence was this node's own");
        run_for(&m, 7, &[]).await;
        assert!(!m.is_alive(1), "but a real silence still counts");
    }
}
