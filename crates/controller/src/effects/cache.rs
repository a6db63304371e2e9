//! Memoization: a cacheable node's (or array item's) lookup, filing and serialized
//! reservation, against the catalog tables (`MemoStore`).

use super::Cx;
use crate::{Error, telemetry};
use contrail_blob::layout;
use contrail_engine::{CacheOutcome, CatalogRef, Effect, ExecState, Observation, Plan, ids};
use contrail_idl::core;
use contrail_store::{ArtifactRecord, ArtifactUse, CatalogKey};
use prost::Message;

/// How long a serialized cache reservation lives without being renewed (Flyte: 3 × 10 s).
const RESERVATION_LEASE: i64 = 30_000_000_000;

/// Flyte's cache key of running `task` on `inputs`, as the store files it.
pub(super) fn catalog_key(
    task: &core::TaskTemplate,
    inputs: &core::LiteralMap,
) -> Result<CatalogKey, String> {
    contrail_catalog::cache_key(task, inputs)
        .map(|k| CatalogKey {
            project: k.project,
            domain: k.domain,
            name: k.name,
            version: k.version,
            tag: k.tag,
        })
        .map_err(|e| e.to_string())
}

impl Cx<'_> {
    /// Who holds a serialized cache reservation: the node of this execution.
    pub(super) fn owner(&self, plan: &Plan, node: usize) -> String {
        ids::fixed_length_unique_id(50, &[&self.k.name, &plan.nodes[node].id])
    }

    /// The cache key of a node: the one its lookup recorded in its state, else derived
    /// from its written inputs (`overwrite_cache` skips the lookup); `None` when none can
    /// be made.
    pub(super) fn cache_key(
        &self,
        plan: &Plan,
        state: &ExecState,
        node: usize,
    ) -> Result<Option<CatalogKey>, Error> {
        if let Some(r) = state.nodes[node].cache().and_then(|c| c.catalog.as_ref()) {
            return Ok(Some(CatalogKey {
                project: r.project.clone(),
                domain: r.domain.clone(),
                name: r.name.clone(),
                version: r.version.clone(),
                tag: r.tag.clone(),
            }));
        }
        let Some(task) = plan.task(node) else {
            return Ok(None);
        };
        let inputs = self
            .c
            .read_map(&layout::node_inputs(self.wdir, &plan.nodes[node].id))?;
        Ok(catalog_key(task, &inputs).ok())
    }

    pub(super) fn catalog_ref(key: &CatalogKey, a: Option<&ArtifactRecord>) -> CatalogRef {
        CatalogRef {
            project: key.project.clone(),
            domain: key.domain.clone(),
            name: key.name.clone(),
            version: key.version.clone(),
            tag: key.tag.clone(),
            artifact_id: a.map(|a| a.artifact_id.clone()).unwrap_or_default(),
            source_execution: a.map(|a| a.source.name.clone()).unwrap_or_default(),
            source_node: a.map(|a| a.source_node.clone()).unwrap_or_default(),
            source_attempt: a.map_or(0, |a| a.source_attempt),
        }
    }

    /// Resolves a cacheable node's inputs, writes them, and asks the catalog.
    pub(super) fn cache_lookup(
        &self,
        plan: &Plan,
        state: &ExecState,
        node: usize,
    ) -> Result<CacheOutcome, Error> {
        let p = &plan.nodes[node];
        let inputs = match self.resolve(plan, state, p.scope, &p.node.inputs)? {
            Ok(m) => m,
            Err(msg) => return Ok(CacheOutcome::Failed(msg)),
        };
        self.c.blob.put(
            &layout::node_inputs(self.wdir, &p.id),
            &inputs.encode_to_vec(),
        )?;
        let Some(task) = plan.task(node) else {
            return Ok(CacheOutcome::Failed("not a task".into()));
        };
        let key = match catalog_key(task, &inputs) {
            Ok(k) => k,
            Err(e) => return Ok(CacheOutcome::Failed(e)),
        };
        let now = self.c.clock.now();
        if let Some(a) = self.c.store.get_artifact(&key)? {
            let from = self.c.blob.key_of(&a.outputs_uri)?.to_string();
            if let Err(f) = self.copy_map(&from, &self.outputs_key(plan, node, 0))? {
                return Ok(CacheOutcome::Failed(f.message));
            }
            self.c.store.record_use(&ArtifactUse {
                artifact_id: a.artifact_id.clone(),
                exec: self.k.clone(),
                node_id: p.id.clone(),
                at: now,
            })?;
            return Ok(CacheOutcome::Hit(Self::catalog_ref(&key, Some(&a))));
        }
        if p.cache == Some(true) {
            let owner = self.owner(plan, node);
            let holder = self
                .c
                .store
                .reserve(&key, &owner, now, now + RESERVATION_LEASE)?;
            if holder != owner {
                return Ok(CacheOutcome::Wait);
            }
        }
        Ok(CacheOutcome::Miss(Self::catalog_ref(&key, None)))
    }

    pub(super) fn item_lookup(
        &self,
        plan: &Plan,
        node: usize,
        item: u32,
    ) -> Result<CacheOutcome, Error> {
        let key = match self.item_key(plan, node, item)? {
            Ok(k) => k,
            Err(e) => return Ok(CacheOutcome::Failed(e)),
        };
        let Some(a) = self.c.store.get_artifact(&key)? else {
            return Ok(CacheOutcome::Miss(Self::catalog_ref(&key, None)));
        };
        let from = self.c.blob.key_of(&a.outputs_uri)?.to_string();
        let to = layout::outputs_in(&self.item_dir(plan, node, item, 0));
        if let Err(f) = self.copy_map(&from, &to)? {
            return Ok(CacheOutcome::Failed(f.message));
        }
        self.c.store.record_use(&ArtifactUse {
            artifact_id: a.artifact_id.clone(),
            exec: self.k.clone(),
            node_id: format!("{}[{item}]", plan.nodes[node].id),
            at: self.c.clock.now(),
        })?;
        Ok(CacheOutcome::Hit(Self::catalog_ref(&key, Some(&a))))
    }

    pub(super) fn item_put(
        &self,
        plan: &Plan,
        node: usize,
        item: u32,
        attempt: u32,
    ) -> Result<Result<(), String>, Error> {
        let key = match self.item_key(plan, node, item)? {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let p = &plan.nodes[node];
        let artifact_id = ids::fixed_length_unique_id(
            50,
            &[&self.k.name, &p.id, &item.to_string(), &attempt.to_string()],
        );
        let outputs = layout::outputs_in(&self.item_dir(plan, node, item, attempt));
        let outputs_uri = match self.file_outputs(&key, &artifact_id, &outputs)? {
            Ok(uri) => uri,
            Err(message) => return Ok(Err(message)),
        };
        let overwrite = self.exec.spec.as_ref().is_some_and(|s| s.overwrite_cache);
        self.c.store.put_artifact(
            &ArtifactRecord {
                key,
                artifact_id,
                outputs_uri,
                source: self.k.clone(),
                source_node: format!("{}[{item}]", p.id),
                source_attempt: attempt,
                created_at: self.c.clock.now(),
            },
            overwrite,
        )?;
        Ok(Ok(()))
    }

    /// Copies outputs to where the catalog files them; returns their URI.
    pub(super) fn file_outputs(
        &self,
        key: &CatalogKey,
        artifact_id: &str,
        outputs: &str,
    ) -> Result<Result<String, String>, Error> {
        let filed = layout::catalog_outputs(
            &key.project,
            &key.domain,
            &key.name,
            &key.version,
            artifact_id,
        );
        Ok(match self.copy_map(outputs, &filed)? {
            Ok(()) => Ok(self.c.blob.uri(&filed)),
            Err(f) => Err(f.message),
        })
    }

    /// Files a succeeded cacheable node's outputs under its key.
    pub(super) fn cache_put(
        &self,
        plan: &Plan,
        state: &ExecState,
        node: usize,
    ) -> Result<Result<CatalogRef, String>, Error> {
        let Some(key) = self.cache_key(plan, state, node)? else {
            return Ok(Err("no cache key".into()));
        };
        let p = &plan.nodes[node];
        let attempt = state.nodes[node].attempt;
        let artifact_id =
            ids::fixed_length_unique_id(50, &[&self.k.name, &p.id, &attempt.to_string()]);
        let outputs = self.outputs_key(plan, node, attempt);
        let outputs_uri = match self.file_outputs(&key, &artifact_id, &outputs)? {
            Ok(uri) => uri,
            Err(message) => return Ok(Err(message)),
        };
        let rec = ArtifactRecord {
            key: key.clone(),
            artifact_id,
            outputs_uri,
            source: self.k.clone(),
            source_node: p.id.clone(),
            source_attempt: attempt,
            created_at: self.c.clock.now(),
        };
        let overwrite = self.exec.spec.as_ref().is_some_and(|s| s.overwrite_cache);
        self.c.store.put_artifact(&rec, overwrite)?;
        if p.cache == Some(true) {
            self.c.store.release(&key, &self.owner(plan, node))?;
        }
        let filed = self.c.store.get_artifact(&key)?;
        Ok(Ok(Self::catalog_ref(&key, filed.as_ref().or(Some(&rec)))))
    }

    /// Keeps the lease of a serialized cache entry alive while its holder runs.
    pub(super) fn keep_reservation(
        &self,
        plan: &Plan,
        state: &ExecState,
        node: usize,
    ) -> Result<(), Error> {
        // Keeps the lease of a serialized cache entry alive while its holder runs.
        if let Some(key) = self.cache_key(plan, state, node)? {
            let now = self.c.clock.now();
            self.c
                .store
                .reserve(&key, &self.owner(plan, node), now, now + RESERVATION_LEASE)?;
        }
        Ok(())
    }

    /// Performs one of the cache effects.
    pub(super) fn perform_cache(
        &self,
        plan: &Plan,
        state: &ExecState,
        e: &Effect,
    ) -> Result<Option<Observation>, Error> {
        let k = self.k;
        match e {
            Effect::CacheLookup { node } => {
                let outcome = self.cache_lookup(plan, state, *node)?;
                telemetry::cache_lookup(&outcome);
                Ok(Some(Observation::Cache {
                    node: *node,
                    outcome,
                }))
            }
            Effect::CachePut { node } => {
                let result = self.cache_put(plan, state, *node)?;
                telemetry::cache_put(result.is_ok());
                Ok(Some(Observation::CachePut {
                    node: *node,
                    result,
                }))
            }
            Effect::CacheRelease { node } => {
                if let Some(key) = self.cache_key(plan, state, *node)? {
                    self.c.store.release(&key, &self.owner(plan, *node))?;
                }
                Ok(Some(Observation::CacheReleased { node: *node }))
            }
            Effect::CacheLookupItem { node, item } => {
                let outcome = self.item_lookup(plan, *node, *item)?;
                telemetry::cache_lookup(&outcome);
                Ok(Some(Observation::CacheItem {
                    node: *node,
                    item: *item,
                    outcome,
                }))
            }
            Effect::CachePutItem {
                node,
                item,
                attempt,
            } => {
                let put = self.item_put(plan, *node, *item, *attempt)?;
                telemetry::cache_put(put.is_ok());
                if let Err(e) = put {
                    tracing::warn!(execution = %k, node = %plan.nodes[*node].id, item, "cannot cache the item: {e}");
                }
                Ok(Some(Observation::CachePutItem {
                    node: *node,
                    item: *item,
                }))
            }
            _ => Ok(None),
        }
    }
}
