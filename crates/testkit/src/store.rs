//! The controller's store in memory, with the same conditional-commit semantics as the
//! SQL adapters (revision check, lease fencing, lease dropped at a terminal phase).

use crate::lock;
use contrail_store::{
    AbortOutcome, ArtifactRecord, ArtifactUse, CatalogKey, CommitOutcome, EntityKey, EntityKind,
    EntityRecord, Error, EventRecord, ExecHead, ExecKey, ExecutionRecord, LeaseGrant, LeaseStore,
    MemoStore, NodeRecord, NotificationRecord, RegistryStore, ReplicaRecord, Result, RoundCommit,
    RoundStore, SignalRecord, SignalStore, TaskRecord, is_terminal_phase,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// How the next commit misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFault {
    /// Someone else committed first: `Conflict`, nothing applied.
    Conflict,
    /// The database failed: an error, nothing applied.
    Error,
    /// Applied, but the acknowledgement was lost: an error although it committed.
    Unacknowledged,
}

#[derive(Debug, Clone)]
struct Lease {
    owner: String,
    epoch: i64,
    expires_at: i64,
}

#[derive(Default)]
struct Inner {
    executions: BTreeMap<ExecKey, ExecutionRecord>,
    nodes: BTreeMap<(ExecKey, String), NodeRecord>,
    tasks: BTreeMap<(ExecKey, String, u32), TaskRecord>,
    events: BTreeMap<ExecKey, Vec<EventRecord>>,
    signals: BTreeMap<(ExecKey, String), SignalRecord>,
    entities: BTreeMap<(EntityKind, EntityKey), EntityRecord>,
    artifacts: BTreeMap<CatalogKey, ArtifactRecord>,
    uses: Vec<ArtifactUse>,
    reservations: BTreeMap<CatalogKey, (String, i64)>,
    leases: BTreeMap<ExecKey, Lease>,
    replicas: BTreeMap<String, ReplicaRecord>,
    faults: VecDeque<CommitFault>,
    /// The outbox, by message id (a replayed id is kept once).
    notifications: BTreeMap<String, NotificationRecord>,
}

/// A store in memory.
#[derive(Default)]
pub struct MemStore(Mutex<Inner>);

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts an execution (as the API creates one); false when the name is taken.
    pub fn create_execution(&self, rec: &ExecutionRecord) -> bool {
        let mut inner = lock(&self.0);
        if inner.executions.contains_key(&rec.key) {
            return false;
        }
        inner.executions.insert(rec.key.clone(), rec.clone());
        true
    }

    /// The outbox: every notification message committed, by id.
    pub fn notifications(&self) -> Vec<NotificationRecord> {
        lock(&self.0).notifications.values().cloned().collect()
    }

    /// Registers an entity (a launch plan a dynamic workflow calls).
    pub fn put_entity(&self, rec: EntityRecord) {
        lock(&self.0)
            .entities
            .insert((rec.kind, rec.key.clone()), rec);
    }

    /// Sets a signal's value once, as `SetSignal` does; false without such a signal.
    pub fn set_signal(&self, key: &ExecKey, signal_id: &str, value: &[u8], now: i64) -> bool {
        let mut inner = lock(&self.0);
        match inner.signals.get_mut(&(key.clone(), signal_id.to_string())) {
            Some(s) if s.value.is_none() => {
                s.value = Some(value.to_vec());
                s.updated_at = now;
                true
            }
            _ => false,
        }
    }

    /// The event log of an execution, oldest first.
    pub fn events(&self, key: &ExecKey) -> Vec<EventRecord> {
        lock(&self.0).events.get(key).cloned().unwrap_or_default()
    }

    /// Every task attempt row of an execution.
    pub fn task_records(&self, key: &ExecKey) -> Vec<TaskRecord> {
        lock(&self.0)
            .tasks
            .iter()
            .filter(|((k, _, _), _)| k == key)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Every node row of an execution.
    pub fn node_records(&self, key: &ExecKey) -> Vec<NodeRecord> {
        lock(&self.0)
            .nodes
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The next commits misbehave in this order.
    pub fn inject(&self, fault: CommitFault) {
        lock(&self.0).faults.push_back(fault);
    }
}

impl RoundStore for MemStore {
    fn get_execution(&self, key: &ExecKey) -> Result<Option<ExecutionRecord>> {
        Ok(lock(&self.0).executions.get(key).map(|r| ExecutionRecord {
            workflow_closure: Vec::new(),
            ..r.clone()
        }))
    }

    fn get_execution_head(&self, key: &ExecKey) -> Result<Option<ExecHead>> {
        Ok(lock(&self.0).executions.get(key).map(|r| ExecHead {
            phase: r.phase,
            revision: r.revision,
            abort_cause: r.abort_cause.clone(),
        }))
    }

    fn get_workflow_closure(&self, key: &ExecKey) -> Result<Option<Vec<u8>>> {
        Ok(lock(&self.0)
            .executions
            .get(key)
            .map(|r| r.workflow_closure.clone()))
    }

    fn list_node_states(&self, key: &ExecKey) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(lock(&self.0)
            .nodes
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|((_, id), n)| (id.clone(), n.state.clone()))
            .collect())
    }

    fn get_node_execution(&self, key: &ExecKey, node_id: &str) -> Result<Option<NodeRecord>> {
        Ok(lock(&self.0)
            .nodes
            .get(&(key.clone(), node_id.to_string()))
            .cloned())
    }

    fn get_task_execution(
        &self,
        key: &ExecKey,
        node_id: &str,
        attempt: u32,
    ) -> Result<Option<TaskRecord>> {
        Ok(lock(&self.0)
            .tasks
            .get(&(key.clone(), node_id.to_string(), attempt))
            .cloned())
    }

    fn request_abort(&self, key: &ExecKey, cause: &str, now: i64) -> Result<Option<AbortOutcome>> {
        let mut inner = lock(&self.0);
        let Some(r) = inner.executions.get_mut(key) else {
            return Ok(None);
        };
        if is_terminal_phase(r.phase) {
            return Ok(Some(AbortOutcome::AlreadyTerminal));
        }
        if r.abort_cause.is_some() {
            return Ok(Some(AbortOutcome::AlreadyRequested));
        }
        r.abort_cause = Some(cause.to_string());
        r.updated_at = now;
        Ok(Some(AbortOutcome::Requested))
    }

    fn commit_round(&self, c: &RoundCommit) -> Result<CommitOutcome> {
        let mut inner = lock(&self.0);
        let fault = inner.faults.pop_front();
        match fault {
            Some(CommitFault::Conflict) => return Ok(CommitOutcome::Conflict),
            Some(CommitFault::Error) => return Err(Error::Backend("injected commit error".into())),
            _ => {}
        }
        let k = &c.key;
        if let Some(fence) = &c.fence {
            let held = inner.leases.get(k).map(|l| (l.owner.clone(), l.epoch));
            if held != Some((fence.owner.clone(), fence.epoch)) {
                return Ok(CommitOutcome::Fenced);
            }
        }
        let Some(r) = inner
            .executions
            .get_mut(k)
            .filter(|r| r.revision == c.revision)
        else {
            return Ok(CommitOutcome::Conflict);
        };
        r.phase = c.phase;
        r.record = c.record.clone();
        r.state = c.state.clone();
        r.revision += 1;
        r.updated_at = c.now;
        for n in &c.nodes {
            let slot = inner
                .nodes
                .entry((k.clone(), n.node_id.clone()))
                .or_insert_with(|| n.clone());
            let created_at = slot.created_at;
            *slot = NodeRecord {
                created_at,
                ..n.clone()
            };
        }
        for t in &c.tasks {
            let slot = inner
                .tasks
                .entry((k.clone(), t.node_id.clone(), t.attempt))
                .or_insert_with(|| t.clone());
            let created_at = slot.created_at;
            *slot = TaskRecord {
                created_at,
                ..t.clone()
            };
        }
        let owner = c
            .fence
            .as_ref()
            .map(|f| f.owner.clone())
            .unwrap_or_default();
        inner
            .events
            .entry(k.clone())
            .or_default()
            .extend(c.events.iter().map(|e| EventRecord {
                owner: owner.clone(),
                ..e.clone()
            }));
        for m in &c.notifications {
            inner
                .notifications
                .entry(m.id.clone())
                .or_insert_with(|| m.clone());
        }
        if is_terminal_phase(c.phase)
            && let Some(l) = inner.leases.get_mut(k)
        {
            l.owner.clear();
            l.expires_at = 0;
        }
        if fault == Some(CommitFault::Unacknowledged) {
            return Err(Error::Backend(
                "injected lost commit acknowledgement".into(),
            ));
        }
        Ok(CommitOutcome::Committed)
    }
}

impl SignalStore for MemStore {
    fn get_or_create_signal(
        &self,
        key: &ExecKey,
        signal_id: &str,
        ty: &[u8],
        now: i64,
    ) -> Result<SignalRecord> {
        let mut inner = lock(&self.0);
        Ok(inner
            .signals
            .entry((key.clone(), signal_id.to_string()))
            .or_insert_with(|| SignalRecord {
                exec: key.clone(),
                signal_id: signal_id.to_string(),
                ty: ty.to_vec(),
                value: None,
                created_at: now,
                updated_at: now,
            })
            .clone())
    }

    fn get_signal(&self, key: &ExecKey, signal_id: &str) -> Result<Option<SignalRecord>> {
        Ok(lock(&self.0)
            .signals
            .get(&(key.clone(), signal_id.to_string()))
            .cloned())
    }
}

impl MemoStore for MemStore {
    fn get_artifact(&self, key: &CatalogKey) -> Result<Option<ArtifactRecord>> {
        Ok(lock(&self.0).artifacts.get(key).cloned())
    }

    fn put_artifact(&self, rec: &ArtifactRecord, overwrite: bool) -> Result<bool> {
        let mut inner = lock(&self.0);
        let k = rec.key.clone();
        if inner.artifacts.contains_key(&k) && !overwrite {
            return Ok(false);
        }
        inner.artifacts.insert(k, rec.clone());
        Ok(true)
    }

    fn record_use(&self, u: &ArtifactUse) -> Result<()> {
        lock(&self.0).uses.push(u.clone());
        Ok(())
    }

    fn reserve(&self, key: &CatalogKey, owner: &str, now: i64, expires_at: i64) -> Result<String> {
        let mut inner = lock(&self.0);
        let free = match inner.reservations.get(key) {
            None => true,
            Some((holder, until)) => holder == owner || *until < now,
        };
        if free {
            inner
                .reservations
                .insert(key.clone(), (owner.to_string(), expires_at));
        }
        Ok(inner.reservations[key].0.clone())
    }

    fn release(&self, key: &CatalogKey, owner: &str) -> Result<()> {
        let mut inner = lock(&self.0);
        if inner.reservations.get(key).is_some_and(|(h, _)| h == owner) {
            inner.reservations.remove(key);
        }
        Ok(())
    }
}

impl RegistryStore for MemStore {
    fn get_entity(&self, kind: EntityKind, key: &EntityKey) -> Result<Option<EntityRecord>> {
        Ok(lock(&self.0).entities.get(&(kind, key.clone())).cloned())
    }
}

impl Inner {
    fn take(&mut self, key: &ExecKey, owner: &str, expires_at: i64) -> i64 {
        let lease = self.leases.entry(key.clone()).or_insert(Lease {
            owner: String::new(),
            epoch: 0,
            expires_at: 0,
        });
        lease.owner = owner.to_string();
        lease.epoch += 1;
        lease.expires_at = expires_at;
        lease.epoch
    }

    fn claimable(&self, key: &ExecKey, owner: &str, now: i64, adopt: bool) -> bool {
        let unfinished = self
            .executions
            .get(key)
            .is_some_and(|r| !is_terminal_phase(r.phase));
        unfinished
            && match self.leases.get(key) {
                None => true,
                Some(l) => l.owner.is_empty() || l.expires_at < now || (adopt && l.owner == owner),
            }
    }
}

impl LeaseStore for MemStore {
    fn claim_executions(
        &self,
        owner: &str,
        now: i64,
        expires_at: i64,
        limit: u32,
        adopt: bool,
    ) -> Result<Vec<LeaseGrant>> {
        let mut inner = lock(&self.0);
        let keys: Vec<ExecKey> = inner
            .executions
            .keys()
            .filter(|k| inner.claimable(k, owner, now, adopt))
            .take(limit as usize)
            .cloned()
            .collect();
        Ok(keys
            .into_iter()
            .map(|key| {
                let epoch = inner.take(&key, owner, expires_at);
                LeaseGrant { key, epoch }
            })
            .collect())
    }

    fn claim_execution(
        &self,
        key: &ExecKey,
        owner: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<i64>> {
        let mut inner = lock(&self.0);
        Ok(inner
            .claimable(key, owner, now, true)
            .then(|| inner.take(key, owner, expires_at)))
    }

    fn renew_leases(&self, owner: &str, expires_at: i64) -> Result<Vec<LeaseGrant>> {
        let mut inner = lock(&self.0);
        Ok(inner
            .leases
            .iter_mut()
            .filter(|(_, l)| l.owner == owner)
            .map(|(key, l)| {
                l.expires_at = expires_at;
                LeaseGrant {
                    key: key.clone(),
                    epoch: l.epoch,
                }
            })
            .collect())
    }

    fn release_leases(&self, owner: &str) -> Result<()> {
        let mut inner = lock(&self.0);
        for l in inner.leases.values_mut().filter(|l| l.owner == owner) {
            l.owner.clear();
            l.expires_at = 0;
        }
        inner.replicas.remove(owner);
        Ok(())
    }

    fn heartbeat(&self, replica: &ReplicaRecord) -> Result<()> {
        lock(&self.0)
            .replicas
            .insert(replica.id.clone(), replica.clone());
        Ok(())
    }

    fn list_replicas(&self, now: i64) -> Result<Vec<ReplicaRecord>> {
        let inner = lock(&self.0);
        Ok(inner
            .replicas
            .values()
            .filter(|r| r.expires_at >= now)
            .map(|r| ReplicaRecord {
                leases: inner
                    .leases
                    .values()
                    .filter(|l| l.owner == r.id && l.expires_at >= now)
                    .count() as u64,
                ..r.clone()
            })
            .collect())
    }
}
