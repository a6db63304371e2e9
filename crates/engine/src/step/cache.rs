//! Memoization of task nodes: a cacheable node looks its inputs up before it runs
//! (waiting while a serialized entry is held elsewhere), files its outputs after, and
//! gives a serialized reservation back when it fails.

use super::{CacheOutcome, Effect, Round};
use crate::state::{CacheState, CacheStatus, CatalogRef, Item, NodePhase, NodeState};

impl Round<'_> {
    pub(super) fn observe_cache(&mut self, node: usize, outcome: &CacheOutcome) {
        let now = self.now;
        let poll = self.cfg.cache_poll;
        let Some(n) = self.s.nodes.get_mut(node) else {
            return;
        };
        let pending = n
            .cache()
            .is_some_and(|c| matches!(c.status, CacheStatus::Lookup | CacheStatus::Waiting));
        if n.phase != NodePhase::Queued || n.task().is_some() || !pending {
            return;
        }
        let set = |n: &mut NodeState, status, catalog| {
            n.set_cache(CacheState {
                status,
                catalog,
                poll_at: None,
            });
        };
        match outcome {
            CacheOutcome::Hit(r) => {
                set(n, CacheStatus::Hit, Some(r.clone()));
                n.phase = NodePhase::Succeeded;
                n.started_at = Some(now);
                n.finished_at = Some(now);
            }
            CacheOutcome::Miss(r) => {
                set(n, CacheStatus::Miss, Some(r.clone()));
                self.launch(node, 0);
            }
            CacheOutcome::Wait => {
                n.set_cache(CacheState {
                    status: CacheStatus::Waiting,
                    catalog: None,
                    poll_at: Some(now.saturating_add(poll)),
                });
            }
            CacheOutcome::Failed(_) => {
                set(n, CacheStatus::LookupFailure, None);
                self.launch(node, 0);
            }
        }
    }

    pub(super) fn observe_cache_released(&mut self, node: usize) {
        if let Some(c) = self.s.nodes.get_mut(node).and_then(|n| n.cache_mut())
            && c.status == CacheStatus::Miss
        {
            c.status = CacheStatus::Released;
        }
    }

    pub(super) fn observe_cache_put(&mut self, node: usize, result: &Result<CatalogRef, String>) {
        let Some(c) = self.s.nodes.get_mut(node).and_then(|n| n.cache_mut()) else {
            return;
        };
        if !matches!(c.status, CacheStatus::Miss | CacheStatus::Skipped) {
            return;
        }
        match result {
            Ok(r) => {
                c.status = CacheStatus::Populated;
                c.catalog = Some(r.clone());
            }
            Err(_) => c.status = CacheStatus::PutFailure,
        }
    }

    /// Cache requests whose answers were not seen yet are asked again: a lookup until it
    /// is answered (a waiting node only when its poll is due), a put until it is confirmed.
    pub(super) fn settle_cache(&mut self) {
        for i in 0..self.s.nodes.len() {
            let n = &self.s.nodes[i];
            if let Some(a) = n.array().filter(|_| n.phase == NodePhase::Running) {
                for (item, c) in a.items.bytes().enumerate() {
                    let item = item as u32;
                    let e = match Item::of_code(c) {
                        Item::Lookup => Effect::CacheLookupItem { node: i, item },
                        Item::Filing => Effect::CachePutItem {
                            node: i,
                            item,
                            attempt: a.attempt(item),
                        },
                        _ => continue,
                    };
                    if !self.fx.contains(&e) {
                        self.fx.push(e);
                    }
                }
                continue;
            }
            let Some(c) = n.cache() else { continue };
            let e = match (n.phase, c.status) {
                (NodePhase::Queued, CacheStatus::Lookup) if n.task().is_none() => {
                    Effect::CacheLookup { node: i }
                }
                (NodePhase::Queued, CacheStatus::Waiting)
                    if n.task().is_none() && c.poll_at.is_none_or(|t| t <= self.now) =>
                {
                    Effect::CacheLookup { node: i }
                }
                (NodePhase::Succeeded, CacheStatus::Miss | CacheStatus::Skipped) => {
                    Effect::CachePut { node: i }
                }
                (NodePhase::Failed | NodePhase::TimedOut, CacheStatus::Miss)
                    if self.plan.nodes[i].cache == Some(true) =>
                {
                    Effect::CacheRelease { node: i }
                }
                _ => continue,
            };
            if !self.fx.contains(&e) {
                self.fx.push(e);
            }
        }
    }
}
