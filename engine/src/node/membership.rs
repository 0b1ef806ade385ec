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
//!
//! Each answer carries the member's incarnation, which changes when its process
//! restarts: a restart is a loss too (its memory is empty), even if it was too quick to
//! be declared dead. Recovery ([`super::recovery`]) acts on both.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fdw_net::placement::Member;
use fdw_net::transport;
use fdw_net::wire::{MemberHealth, Request, Response};
use tokio::sync::Notify;
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
    /// Its incarnation, once it answered.
    incarnation: Option<u64>,
    /// When it was last seen to have restarted.
    restarted_at: Option<Instant>,
}

/// This node's view of the other members.
pub(super) struct Membership {
    config: HeartbeatConfig,
    peers: Mutex<HashMap<u16, Peer>>,
    last_tick: Mutex<Instant>,
    /// Members lost (declared dead, or restarted) since start.
    losses: AtomicU64,
    /// A member was lost.
    lost: Notify,
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
                    incarnation: None,
                    restarted_at: None,
                };
                (m.id, peer)
            })
            .collect();
        Self {
            config,
            peers: Mutex::new(peers),
            last_tick: Mutex::new(now),
            losses: AtomicU64::new(0),
            lost: Notify::new(),
        }
    }

    pub(super) fn config(&self) -> HeartbeatConfig {
        self.config
    }

    /// Members lost since start: a count that changes with every loss.
    pub(super) fn losses(&self) -> u64 {
        self.losses.load(Ordering::Acquire)
    }

    /// Resolves at the next loss.
    pub(super) fn next_loss(&self) -> tokio::sync::futures::Notified<'_> {
        self.lost.notified()
    }

    fn count_loss(&self) {
        self.losses.fetch_add(1, Ordering::AcqRel);
        self.lost.notify_waiters();
    }

    /// Whether `id` lost what it held when `committed_at` was: it is declared dead, or
    /// it restarted since. Returns when that was noticed.
    pub(super) fn lost_since(&self, id: u16, committed_at: Instant) -> Option<Instant> {
        let peers = self.peers();
        let peer = peers.get(&id)?;
        if !peer.alive {
            return Some(peer.since);
        }
        peer.restarted_at.filter(|&at| at > committed_at)
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

    /// Records a heartbeat's outcome: the incarnation it answered with, or `None`.
    fn answered(&self, id: u16, answer: Option<u64>) {
        let mut peers = self.peers();
        let Some(peer) = peers.get_mut(&id) else {
            return;
        };
        peer.probing = false;
        let Some(incarnation) = answer else {
            return;
        };
        let now = Instant::now();
        peer.last_answer = now;
        if !peer.alive {
            tracing::info!(peer = id, "member answers again: alive");
            peer.alive = true;
            peer.since = now;
        }
        let known = peer.incarnation.replace(incarnation);
        if known.is_some_and(|known| known != incarnation) {
            tracing::warn!(
                peer = id,
                "member restarted: what it held in memory is gone"
            );
            peer.restarted_at = Some(now);
            drop(peers);
            self.count_loss();
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
        let mut lost = false;
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
                lost = true;
            }
            if !peer.probing {
                peer.probing = true;
                due.push(id);
            }
        }
        drop(peers);
        if lost {
            self.count_loss();
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
                let answer = transport::within(timeout, heartbeat(&node, &member))
                    .await
                    .ok()
                    .flatten();
                if answer.is_none() {
                    // A killed peer's connection looks open until the idle timeout:
                    // the next heartbeat connects afresh, and reaches a restart at once.
                    node.peers.drop_connection(member.id);
                }
                node.membership.answered(member.id, answer);
            });
        }
        tokio::time::sleep(interval).await;
    }
}

/// One heartbeat: a status request on the member's connection. Returns the member's
/// incarnation if it answered.
async fn heartbeat(
    node: &NodeShared,
    member: &Member,
) -> Result<Option<u64>, transport::TransportError> {
    let Ok(connection) = node.peers.connection(member).await else {
        return Ok(None);
    };
    let Ok((mut send, mut recv)) = connection.open_bi().await else {
        return Ok(None);
    };
    transport::write_message(&mut send, &Request::Status.encode()).await?;
    let _ = send.finish();
    Ok(match transport::read_response(&mut recv).await? {
        Response::Status(status) => Some(status.incarnation),
        _ => None,
    })
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

    /// Ticks every interval for `ticks` intervals, the members in `answering` answering
    /// each heartbeat (with the incarnation given) and the others silent.
    async fn run_for(m: &Membership, ticks: u32, answering: &[(u16, u64)]) {
        for _ in 0..ticks {
            for id in m.tick() {
                let answer = answering.iter().find(|(a, _)| *a == id).map(|(_, i)| *i);
                m.answered(id, answer);
            }
            tokio::time::advance(CONFIG.interval).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_member_is_dead_after_the_timeout_and_alive_when_it_answers() {
        let m = Membership::new(CONFIG, 0, &members(3));
        run_for(&m, 5, &[(1, 1)]).await;
        assert!(m.is_alive(1) && m.is_alive(2), "not yet past the timeout");
        run_for(&m, 2, &[(1, 1)]).await;
        assert!(m.is_alive(1), "it answers");
        assert!(!m.is_alive(2), "silent for longer than 500 ms");
        assert!(m.dead_for(2).is_some_and(|d| d > CONFIG.failure_timeout));
        assert!(m.is_alive(0), "a node never judges itself");
        let health = m.health();
        assert_eq!(
            health.iter().map(|h| (h.id, h.alive)).collect::<Vec<_>>(),
            [(1, true), (2, false)]
        );
        run_for(&m, 1, &[(1, 1), (2, 1)]).await;
        assert!(
            m.is_alive(2) && m.dead_for(2).is_none(),
            "back with its first answer"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deaths_and_restarts_are_losses_and_pauses_are_not() {
        let m = Membership::new(CONFIG, 0, &members(3));
        let before = Instant::now();
        run_for(&m, 2, &[(1, 1), (2, 1)]).await;
        assert_eq!(m.losses(), 0);
        assert_eq!(m.lost_since(1, before), None);

        // Member 1 answers with a new incarnation: it restarted, quicker than the
        // timeout. What it held before is lost; what it got since is not.
        for id in m.tick() {
            m.answered(id, Some(if id == 1 { 2 } else { 1 }));
        }
        assert_eq!(m.losses(), 1);
        assert!(m.is_alive(1));
        let restarted = m.lost_since(1, before).unwrap();
        tokio::time::advance(CONFIG.interval).await;
        assert_eq!(m.lost_since(1, Instant::now()), None);
        assert_eq!(m.lost_since(1, before), Some(restarted));

        // Member 2 goes silent: dead, a loss, whenever its objects were committed.
        run_for(&m, 7, &[(1, 2)]).await;
        assert_eq!(m.losses(), 2);
        assert!(m.lost_since(2, Instant::now()).is_some());
        // It comes back as the same process (SIGCONT): alive, and no longer lost.
        run_for(&m, 1, &[(1, 2), (2, 1)]).await;
        assert_eq!(m.lost_since(2, before), None);
        assert_eq!(m.losses(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn one_heartbeat_at_a_time_per_member() {
        let m = Membership::new(CONFIG, 0, &members(2));
        assert_eq!(m.tick(), [1]);
        assert!(m.tick().is_empty(), "the first is still in flight");
        m.answered(1, None);
        assert_eq!(m.tick(), [1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_was_paused_does_not_blame_its_peers() {
        let m = Membership::new(CONFIG, 0, &members(2));
        run_for(&m, 2, &[(1, 1)]).await;
        // This node stops for 5 s (SIGSTOP): no ticks, no answers.
        tokio::time::advance(Duration::from_secs(5)).await;
        for id in m.tick() {
            m.answered(id, None);
        }
        assert!(m.is_alive(1), "its silence was this node's own");
        run_for(&m, 7, &[]).await;
        assert!(!m.is_alive(1), "but a real silence still counts");
    }
}
