//! Which executions this replica owns. The store's lease rows are the authority; this is
//! what the replica last learned of them, with a local deadline so that a replica that
//! stopped renewing (paused, partitioned) stops acting before anyone can take over.

use crate::{Controller, Error, lock, now_nanos};
use contrail_store::{ExecKey, Fence, LeaseGrant, ReplicaRecord};
use std::collections::HashMap;
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
        let mut held = lock(&self.held);
        for g in grants {
            held.insert(
                g.key,
                Held {
                    epoch: g.epoch,
                    valid_until,
                },
            );
        }
    }

    /// Replaces the set by what a renewal returned; the keys that were lost.
    fn replace(&self, grants: Vec<LeaseGrant>, valid_until: Instant) -> Vec<ExecKey> {
        let mut held = lock(&self.held);
        let mut next = HashMap::with_capacity(grants.len());
        for g in grants {
            next.insert(
                g.key,
                Held {
                    epoch: g.epoch,
                    valid_until,
                },
            );
        }
        // Claimed while the renewal was under way: newer than what it could report.
        for (k, h) in held.iter() {
            if h.valid_until > valid_until {
                next.insert(k.clone(), *h);
            }
        }
        let lost = held
            .keys()
            .filter(|k| !next.contains_key(*k))
            .cloned()
            .collect();
        *held = next;
        lost
    }

    fn keys(&self) -> Vec<ExecKey> {
        lock(&self.held).keys().cloned().collect()
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
        let now = now_nanos();
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
        let now = now_nanos();
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
