//! Which executions this replica owns. The store's lease rows are the authority; this is
//! what the replica last learned of them, with a local deadline so that a replica that
//! stopped renewing (paused, partitioned) stops acting before anyone can take over.

use crate::{Controller, Error, lock};
use contrail_store::{ExecKey, Fence, LeaseGrant, ReplicaRecord};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<ExecKey, Held>>,
    /// When the last renewal was sent (None: never).
    renewed: Mutex<Option<Instant>>,
    started_at: Mutex<Option<i64>>,
}

#[derive(Clone, Copy)]
struct Held {
    epoch: i64,
    /// Acting is safe until then: the store's expiry measured from before the request.
    valid_until: Instant,
}

impl Leases {
    pub(crate) fn len(&self) -> usize {
        lock(&self.held).len()
    }

    pub(crate) fn drop_key(&self, k: &ExecKey) {
        lock(&self.held).remove(k);
    }

    fn insert(&self, grants: Vec<LeaseGrant>, valid_until: Instant) {
        hold(&mut lock(&self.held), grants, valid_until);
    }

    /// Replaces the set by what a renewal returned; the keys that were lost. Leases
    /// claimed while the renewal was under way are newer than what it could report: kept.
    fn replace(&self, grants: Vec<LeaseGrant>, valid_until: Instant) -> Vec<ExecKey> {
        let mut held = lock(&self.held);
        let renewed: HashSet<&ExecKey> = grants.iter().map(|g| &g.key).collect();
        let mut lost = Vec::new();
        held.retain(|k, h| {
            let keep = renewed.contains(k) || h.valid_until > valid_until;
            if !keep {
                lost.push(k.clone());
            }
            keep
        });
        hold(&mut held, grants, valid_until);
        lost
    }

    fn keys(&self) -> Vec<ExecKey> {
        lock(&self.held).keys().cloned().collect()
    }
}

/// Records grants valid until `valid_until`; a grant never replaces a newer one.
fn hold(held: &mut HashMap<ExecKey, Held>, grants: Vec<LeaseGrant>, valid_until: Instant) {
    for g in grants {
        let newer = held
            .get(&g.key)
            .is_some_and(|h| h.valid_until > valid_until);
        if !newer {
            held.insert(
                g.key,
                Held {
                    epoch: g.epoch,
                    valid_until,
                },
            );
        }
    }
}

impl Controller {
    /// The fence to commit under: the lease this replica holds on `k` while it is still
    /// valid locally, or a fresh claim when the execution is free. None: not ours to run.
    pub(crate) fn fence(&self, k: &ExecKey) -> Result<Option<Fence>, Error> {
        let owner = &self.cfg.replica;
        let held = lock(&self.leases.held).get(k).copied();
        if let Some(h) = held {
            // Past the local deadline the lease may be someone else's already: wait for
            // the next renewal to tell.
            return Ok((Instant::now() < h.valid_until).then(|| Fence {
                owner: owner.clone(),
                epoch: h.epoch,
            }));
        }
        let started = Instant::now();
        let now = self.clock.now();
        let ttl = self.cfg.lease_ttl;
        let Some(epoch) = self
            .store
            .claim_execution(k, owner, now, now + ttl.as_nanos() as i64)?
        else {
            return Ok(None);
        };
        self.leases.insert(
            vec![LeaseGrant {
                key: k.clone(),
                epoch,
            }],
            started + ttl,
        );
        tracing::debug!(execution = %k, epoch, "claimed");
        Ok(Some(Fence {
            owner: owner.clone(),
            epoch,
        }))
    }

    /// One resync pass: renew (every third of the TTL) and heartbeat, claim free and
    /// expired executions, and return every execution owned now. `adopt` (the first pass)
    /// also re-takes the leases this replica name held before a restart.
    pub(crate) fn resync(&self, adopt: bool) -> Result<Vec<ExecKey>, Error> {
        let owner = &self.cfg.replica;
        let ttl = self.cfg.lease_ttl;
        let started = Instant::now();
        let now = self.clock.now();
        let expires_at = now + ttl.as_nanos() as i64;
        let due = lock(&self.leases.renewed).is_none_or(|t| t.elapsed() >= ttl / 3);
        if due {
            let started_at = *lock(&self.leases.started_at).get_or_insert(now);
            self.store.heartbeat(&ReplicaRecord {
                id: owner.clone(),
                role: self.cfg.role.clone(),
                started_at,
                seen_at: now,
                expires_at,
                leases: 0,
            })?;
            let held = self.store.renew_leases(owner, expires_at)?;
            for k in self.leases.replace(held, started + ttl) {
                tracing::warn!(execution = %k, "lease lost to another replica; dropping");
                self.forget(&k);
            }
            *lock(&self.leases.renewed) = Some(started);
        }
        let claimed =
            self.store
                .claim_executions(owner, now, expires_at, self.cfg.claim_batch, adopt)?;
        if !claimed.is_empty() {
            tracing::info!(replica = %owner, count = claimed.len(), "claimed executions");
        }
        self.leases.insert(claimed, started + ttl);
        Ok(self.leases.keys())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn grant(name: &str, epoch: i64) -> LeaseGrant {
        LeaseGrant {
            key: ExecKey {
                project: "p".into(),
                domain: "d".into(),
                name: name.into(),
            },
            epoch,
        }
    }

    #[test]
    fn a_renewal_drops_what_it_lost_and_keeps_what_was_claimed_meanwhile() {
        let leases = Leases::default();
        let t0 = Instant::now();
        leases.insert(vec![grant("a", 1), grant("b", 1)], t0);
        // "c" is claimed after the renewal was sent, at epoch 3.
        leases.insert(vec![grant("c", 3)], t0 + Duration::from_secs(2));
        // The renewal (sent at t0 + 1 s) reports "a" and an older view of "c"; "b" was lost.
        let lost = leases.replace(
            vec![grant("a", 1), grant("c", 2)],
            t0 + Duration::from_secs(1),
        );
        assert_eq!(lost, vec![grant("b", 0).key]);
        let held = lock(&leases.held);
        assert_eq!(held.len(), 2);
        assert_eq!(held[&grant("c", 0).key].epoch, 3, "the newer claim wins");
        assert_eq!(
            held[&grant("a", 0).key].valid_until,
            t0 + Duration::from_secs(1)
        );
    }
}
