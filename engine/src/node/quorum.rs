//! Counting acknowledgements of one write: no I/O, so the rule is testable on its own.
//!
//! A write to R replicas succeeds once W of them hold it (invariant 1) and is doomed as
//! soon as more than R − W have failed, so a client waits for exactly as long as the
//! answer is unknown.

/// Where a write stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Neither W acknowledgements nor more than R − W failures yet.
    Pending,
    /// W replicas hold the object.
    Reached,
    /// Too many replicas failed for W to be reachable.
    Impossible,
}

#[derive(Debug)]
pub(crate) struct Quorum {
    replicas: usize,
    needed: usize,
    acked: Vec<u16>,
    /// Why each failed replica failed, naming it.
    failed: Vec<String>,
}

impl Quorum {
    pub(crate) fn new(replicas: usize, needed: usize) -> Self {
        assert!(needed >= 1 && needed <= replicas, "1 <= W <= R");
        Self {
            replicas,
            needed,
            acked: Vec::new(),
            failed: Vec::new(),
        }
    }

    pub(crate) fn ack(&mut self, node: u16) {
        assert!(
            !self.acked.contains(&node),
            "node {node} acknowledged twice"
        );
        self.acked.push(node);
    }

    /// A replica (or an empty replica slot) failed; `reason` names it.
    pub(crate) fn fail(&mut self, reason: String) {
        self.failed.push(reason);
    }

    pub(crate) fn outcome(&self) -> Outcome {
        if self.acked.len() >= self.needed {
            Outcome::Reached
        } else if self.replicas - self.failed.len() < self.needed {
            Outcome::Impossible
        } else {
            Outcome::Pending
        }
    }

    pub(crate) fn acked(&self) -> &[u16] {
        &self.acked
    }

    /// Why the quorum could not be reached, naming each failed replica.
    pub(crate) fn failure_report(&self) -> String {
        let reasons = &self.failed;
        format!(
            "{} of the {} acknowledgements needed (quorum W={} of R={}); {}",
            self.acked.len(),
            self.needed,
            self.needed,
            self.replicas,
            if reasons.is_empty() {
                "no failures recorded".to_owned()
            } else {
                reasons.join("; ")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reached_at_w_acks() {
        let mut q = Quorum::new(3, 2);
        q.ack(0);
        assert_eq!(q.outcome(), Outcome::Pending);
        q.fail("node 1: down".into());
        assert_eq!(q.outcome(), Outcome::Pending);
        q.ack(2);
        assert_eq!(q.outcome(), Outcome::Reached);
        assert_eq!(q.acked(), [0, 2]);
    }

    #[test]
    fn impossible_once_more_than_r_minus_w_fail() {
        let mut q = Quorum::new(3, 3);
        q.ack(0);
        assert_eq!(q.outcome(), Outcome::Pending);
        q.fail("node 2: unreachable".into());
        assert_eq!(q.outcome(), Outcome::Impossible);
        let report = q.failure_report();
        assert!(
            report.contains("W=3 of R=3") && report.contains("node 2: unreachable"),
            "{report}"
        );
    }

    #[test]
    fn all_combinations_agree_with_the_rule() {
        for r in 1..=5usize {
            for w in 1..=r {
                for acks in 0..=r {
                    for fails in 0..=(r - acks) {
                        let mut q = Quorum::new(r, w);
                        (0..acks).for_each(|n| q.ack(n as u16));
                        (0..fails).for_each(|n| q.fail(format!("node {}", 100 + n)));
                        let expected = if acks >= w {
                            Outcome::Reached
                        } else if r - fails < w {
                            Outcome::Impossible
                        } else {
                            Outcome::Pending
                        };
                        assert_eq!(
                            q.outcome(),
                            expected,
                            "R={r} W={w} acks={acks} fails={fails}"
                        );
                    }
                }
            }
        }
    }
}
