//! The level-triggered reconciler. A round loads an execution's committed state, asks the
//! executor what every live attempt looks like, lets the pure engine decide, performs the
//! effects (each safe to repeat), and commits the new state, the API records and the
//! events in one conditional transaction. Wake-ups (task exits, API writes) only make
//! this happen sooner; the periodic resync alone is enough for correctness.

mod effects;
mod leases;
pub mod notify;
mod plugins;
pub mod policy;
mod queue;
pub mod render;
mod telemetry;

use contrail_blob::{BlobStore, layout};
use contrail_engine::{
    Config as EngineConfig, DynamicPhase, Effect, ExecState, Failure, NodeState, Observation, Plan,
    WorkflowPhase, ids,
};
use contrail_executor::{AttemptSpec, Executor};
use contrail_idl::{admin, core};
use contrail_store::{
    CommitOutcome, ControllerStore, EventRecord, ExecKey, Fence, NodeRecord, RoundCommit,
    TaskRecord,
};
use policy::ErrorClass;
use prost::Message;
use queue::Queue;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] contrail_store::Error),
    #[error(transparent)]
    Blob(#[from] contrail_blob::Error),
    #[error(transparent)]
    Executor(#[from] contrail_executor::Error),
    #[error("corrupt {0}: {1}")]
    Corrupt(&'static str, String),
    #[error("cannot create a child execution: {0}")]
    Launch(String),
    /// A round panicked: our bug. It counts as a failed round like any other.
    #[error("the round panicked: {0}")]
    Panicked(String),
}

/// A request to start the child execution of a launch-plan node.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildRequest {
    pub child: ExecKey,
    pub spec: admin::ExecutionSpec,
    pub inputs: core::LiteralMap,
}

/// Why a child execution could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// The request itself is wrong (unknown launch plan, bad inputs): the node fails.
    #[error("{0}")]
    Invalid(String),
    /// Something to retry.
    #[error("{0}")]
    Unavailable(String),
}

/// Creates child executions for launch-plan nodes; the API layer implements it, so that a
/// child is validated and recorded exactly like an execution a user creates.
pub trait Launcher: Send + Sync + 'static {
    /// Creates the execution; one that already exists under that name counts as created.
    fn launch_child(&self, req: ChildRequest) -> Result<(), LaunchError>;
}

#[derive(Debug, Clone)]
pub struct Config {
    pub engine: EngineConfig,
    /// Every non-terminal execution gets a round at least this often.
    pub resync: Duration,
    pub workers: usize,
    /// Rounds in a row on one execution while each still changes something.
    pub max_streak: usize,
    /// Consecutive failed rounds before an execution is failed as a poison pill.
    pub max_round_failures: u32,
    /// This replica's name in lease rows and the replica list.
    pub replica: String,
    /// "all" or "controller": how the replica list shows it.
    pub role: String,
    /// How long a lease lasts without renewal; renewed every third of it.
    pub lease_ttl: Duration,
    /// Executions claimed per resync pass at most.
    pub claim_batch: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            engine: EngineConfig::default(),
            resync: Duration::from_secs(1),
            workers: 4,
            max_streak: 64,
            max_round_failures: 10,
            replica: "local".into(),
            role: "all".into(),
            lease_ttl: Duration::from_secs(10),
            claim_batch: 256,
        }
    }
}

/// Flyte's unique id of an attempt (`<exec>-<node>-<attempt>`, hashed beyond 50 chars): it
/// names the attempt for the executor and its raw-output prefix.
fn attempt_id(k: &ExecKey, node_id: &str, item: Option<u32>, attempt: u32) -> String {
    match item {
        None => ids::fixed_length_unique_id(50, &[&k.name, node_id, &attempt.to_string()]),
        Some(i) => ids::fixed_length_unique_id(
            50,
            &[&k.name, node_id, &i.to_string(), &attempt.to_string()],
        ),
    }
}

/// An attempt named but not described: enough for an executor to find it (abort it, name
/// its logs), not to launch it.
fn attempt_identity(
    k: &ExecKey,
    node_id: &str,
    item: Option<u32>,
    attempt: u32,
    cluster_label: &str,
) -> AttemptSpec {
    AttemptSpec {
        id: attempt_id(k, node_id, item, attempt),
        project: k.project.clone(),
        domain: k.domain.clone(),
        execution: k.name.clone(),
        node_id: node_id.to_string(),
        attempt,
        cluster_label: cluster_label.to_string(),
        ..Default::default()
    }
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// Where the controller reads the time: the one clock of its rounds, leases and records,
/// so a simulation can run it on virtual time.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        now_nanos()
    }
}

/// A clock that moves only when told (tests and the simulator).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(at: i64) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(at))
    }
    pub fn advance(&self, by: i64) {
        self.0.fetch_add(by, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An execution's committed state as this process last saw it.
struct Live {
    revision: i64,
    /// Where the execution's inputs are (from its row).
    inputs_key: String,
    state: ExecState,
    exec: admin::Execution,
    /// The plan including the workflows dynamic nodes added so far.
    plan: Arc<Plan>,
}

/// What one execution needs besides its state, decoded once and cached.
struct Loaded {
    plan: Arc<Plan>,
}

pub struct Controller {
    store: Arc<dyn ControllerStore>,
    clock: Arc<dyn Clock>,
    blob: BlobStore,
    executor: Arc<dyn Executor>,
    launcher: Mutex<Option<Arc<dyn Launcher>>>,
    cfg: Config,
    queue: Queue,
    cache: Mutex<HashMap<ExecKey, Arc<Loaded>>>,
    live: Mutex<HashMap<ExecKey, Live>>,
    /// Rounds in a row that failed with a bug, per execution (the poison pill's count).
    failures: Mutex<HashMap<ExecKey, u32>>,
    /// Rounds in a row that failed for any reason, per execution (the backoff's).
    streaks: Mutex<HashMap<ExecKey, u32>>,
    /// When each running array node's TaskExecution record was last rewritten.
    array_records: Mutex<HashMap<(ExecKey, String), i64>>,
    /// The executions this replica owns, by lease.
    leases: leases::Leases,
}

/// A running array node's TaskExecution record (every item) is rewritten at most this
/// often; its events carry each round's changes, and phase changes rewrite it at once.
const ARRAY_RECORD_INTERVAL: i64 = 1_000_000_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Controller {
    pub fn new(
        store: Arc<dyn ControllerStore>,
        blob: BlobStore,
        executor: Arc<dyn Executor>,
        cfg: Config,
    ) -> Arc<Self> {
        Self::with_clock(store, blob, executor, cfg, Arc::new(SystemClock))
    }

    /// A controller that reads the time from `clock` (a virtual one in simulations).
    pub fn with_clock(
        store: Arc<dyn ControllerStore>,
        blob: BlobStore,
        executor: Arc<dyn Executor>,
        cfg: Config,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(Controller {
            store,
            clock,
            executor: Arc::new(plugins::Plugins::new(executor, blob.clone())),
            blob,
            launcher: Mutex::default(),
            cfg,
            queue: Queue::default(),
            cache: Mutex::default(),
            live: Mutex::default(),
            failures: Mutex::default(),
            streaks: Mutex::default(),
            leases: leases::Leases::default(),
            array_records: Mutex::default(),
        })
    }

    /// Lets launch-plan nodes create child executions.
    pub fn set_launcher(&self, l: Arc<dyn Launcher>) {
        *lock(&self.launcher) = Some(l);
    }

    /// Asks for a round soon (a hint; safe to call for any key, any number of times).
    pub fn wake(&self, k: ExecKey) {
        self.queue.add(k);
    }

    /// Runs the workers and the resync loop until `stop` resolves.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.cfg.workers.max(1) {
            let me = self.clone();
            tasks.spawn(async move {
                loop {
                    let k = me.queue.next().await;
                    let me2 = me.clone();
                    let k2 = k.clone();
                    let _ = tokio::task::spawn_blocking(move || me2.reconcile(&k2)).await;
                    me.queue.done(&k);
                }
            });
        }
        {
            // Wake-ups from other processes (an API replica created or aborted an
            // execution, a child ended): a hint like any other.
            let me = Arc::downgrade(&self);
            self.store.subscribe(Box::new(move |k| {
                if let Some(me) = me.upgrade() {
                    me.wake(k)
                }
            }));
        }
        let me = self.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(me.cfg.resync);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut first = true;
            loop {
                tick.tick().await;
                let me2 = me.clone();
                let adopt = std::mem::take(&mut first);
                match tokio::task::spawn_blocking(move || me2.resync(adopt)).await {
                    Ok(Ok(keys)) => keys.into_iter().for_each(|k| me.queue.add(k)),
                    Ok(Err(e)) => tracing::warn!("resync: {e}"),
                    Err(e) => tracing::warn!("resync: {e}"),
                }
            }
        });
        stop.await;
        tasks.abort_all();
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.store.release_leases(&me.cfg.replica)).await {
            Ok(Ok(())) => tracing::info!(replica = %self.cfg.replica, "leases released"),
            Ok(Err(e)) => tracing::warn!("cannot release leases: {e}"),
            Err(e) => tracing::warn!("cannot release leases: {e}"),
        }
    }

    /// Executions this replica owns now.
    pub fn owned(&self) -> usize {
        self.leases.len()
    }

    /// Brings the gauges (queue depth, timers, executions owned) up to date; called just
    /// before metrics are scraped.
    pub fn report_gauges(&self) {
        telemetry::gauges(&self.queue, self.owned());
    }

    /// One reconcile pass (a streak of rounds) over one execution.
    pub fn reconcile(self: &Arc<Self>, k: &ExecKey) {
        let _span = tracing::info_span!("reconcile", execution = %k).entered();
        let fence = match self.fence(k) {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(execution = %k, "cannot claim: {e}");
                return;
            }
        };
        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.try_reconcile(k, &fence)
        }))
        .unwrap_or_else(|panic| {
            // What this process remembers of the execution may be half updated.
            self.forget(k);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".into());
            tracing::error!(execution = %k, "round panicked: {what}");
            Err(Error::Panicked(what))
        });
        match round {
            Ok(()) => {
                lock(&self.failures).remove(k);
                lock(&self.streaks).remove(k);
            }
            Err(e) => self.error_policy(k, &fence, e),
        }
    }

    /// Acts on a failed round by the class of its error (see [`policy`]); one policy for
    /// every path.
    fn error_policy(&self, k: &ExecKey, fence: &Fence, e: Error) {
        let streak = {
            let mut s = lock(&self.streaks);
            let n = s.entry(k.clone()).or_default();
            *n += 1;
            *n
        };
        let retry = |what: &str| {
            let backoff = policy::backoff(streak);
            tracing::debug!(execution = %k, ?backoff, "retrying after {what}");
            self.queue
                .add_at(k.clone(), tokio::time::Instant::now() + backoff);
        };
        match e.class() {
            ErrorClass::Transient => {
                tracing::warn!(execution = %k, attempt = streak, "round failed, will retry: {e}");
                retry("a transient error");
            }
            ErrorClass::Corrupt => {
                tracing::error!(execution = %k, "cannot run this execution: {e}");
                match self.fail_outright(k, &format!("cannot run this execution: {e}"), fence) {
                    Ok(()) => {
                        lock(&self.failures).remove(k);
                        lock(&self.streaks).remove(k);
                    }
                    Err(e2) => {
                        tracing::warn!(execution = %k, "cannot fail the corrupt execution yet: {e2}");
                        retry("a failed attempt to fail a corrupt execution");
                    }
                }
            }
            ErrorClass::Bug => {
                let n = {
                    let mut f = lock(&self.failures);
                    let n = f.entry(k.clone()).or_default();
                    *n += 1;
                    *n
                };
                tracing::error!(execution = %k, attempt = n, "round failed (a bug): {e}");
                if n >= self.cfg.max_round_failures {
                    let msg = format!("{n} rounds in a row failed; last error: {e}");
                    if let Err(e2) = self.fail_outright(k, &msg, fence) {
                        tracing::error!(execution = %k, "cannot fail poisoned execution: {e2}");
                    }
                    lock(&self.failures).remove(k);
                    lock(&self.streaks).remove(k);
                } else {
                    retry("a bug");
                }
            }
        }
    }

    fn load(&self, k: &ExecKey) -> Result<Arc<Loaded>, Error> {
        if let Some(l) = lock(&self.cache).get(k) {
            return Ok(l.clone());
        }
        let bytes = self.store.get_workflow_closure(k)?.unwrap_or_default();
        let closure = core::CompiledWorkflowClosure::decode(bytes.as_slice())
            .map_err(|e| Error::Corrupt("workflow closure", e.to_string()))?;
        let plan = Plan::new(&closure).map_err(|e| Error::Corrupt("workflow", e.to_string()))?;
        let l = Arc::new(Loaded {
            plan: Arc::new(plan),
        });
        lock(&self.cache).insert(k.clone(), l.clone());
        Ok(l)
    }

    fn forget(&self, k: &ExecKey) {
        lock(&self.cache).remove(k);
        lock(&self.live).remove(k);
    }

    /// Forgets an execution this replica no longer runs (finished, gone, or taken over).
    fn disown(&self, k: &ExecKey) {
        self.forget(k);
        self.leases.drop_key(k);
    }

    /// The committed state of an execution: from memory when this process made the last
    /// commit (same revision), else from the store.
    fn live_state(&self, k: &ExecKey, revision: i64) -> Result<Option<Live>, Error> {
        let cached = lock(&self.live)
            .remove(k)
            .filter(|l| l.revision == revision);
        if let Some(l) = cached {
            return Ok(Some(l));
        }
        let Some(rec) = self.store.get_execution(k)? else {
            return Ok(None);
        };
        let exec = admin::Execution::decode(rec.record.as_slice())
            .map_err(|e| Error::Corrupt("execution record", e.to_string()))?;
        let mut plan = self.load(k)?.plan.clone();
        let mut state = ExecState::decode(&rec.state, plan.nodes.len(), [])
            .map_err(|e| Error::Corrupt("state", e.to_string()))?;
        let mut rows: BTreeMap<String, Vec<u8>> =
            self.store.list_node_states(k)?.into_iter().collect();
        let wdir = layout::workflow_dir(&k.project, &k.domain, &k.name);
        // Dynamic nodes add their workflows to the plan; their nodes' rows can only be
        // placed once that happened, so place rows and extend in turns.
        loop {
            state.nodes.resize(plan.nodes.len(), NodeState::default());
            let known: Vec<String> = rows
                .keys()
                .filter(|id| plan.index.contains_key(*id))
                .cloned()
                .collect();
            for id in known {
                let bytes = rows.remove(&id).unwrap_or_default();
                state.nodes[plan.index[&id]] = NodeState::decode(&bytes)
                    .map_err(|e| Error::Corrupt("node state", e.to_string()))?;
            }
            let pending: Vec<usize> = (0..plan.nodes.len())
                .filter(|&i| {
                    state.nodes[i].dynamic() == Some(DynamicPhase::Executing)
                        && plan.scope_of(i).is_none()
                })
                .collect();
            if pending.is_empty() {
                break;
            }
            for i in pending {
                let attempt = state.nodes[i].attempt;
                let closure = self.read_dynamic(&wdir, &plan.nodes[i].id, attempt)?;
                Arc::make_mut(&mut plan)
                    .extend_dynamic(i, attempt, &closure)
                    .map_err(|e| Error::Corrupt("dynamic workflow", e.to_string()))?;
            }
        }
        let inputs_key = layout::execution_inputs_of(
            &self.blob,
            &rec.inputs_uri,
            &k.project,
            &k.domain,
            &k.name,
        )?;
        Ok(Some(Live {
            inputs_key,
            revision: rec.revision,
            state,
            exec,
            plan,
        }))
    }

    fn fail_outright(&self, k: &ExecKey, msg: &str, fence: &Fence) -> Result<(), Error> {
        let Some(rec) = self.store.get_execution(k)? else {
            return Ok(());
        };
        if rec.is_terminal() {
            return Ok(());
        }
        let exec = admin::Execution::decode(rec.record.as_slice()).unwrap_or_default();
        // Nothing it started may outlive it: what its rows say still runs is stopped first
        // (an error here leaves the execution unfailed, and the next round tries again).
        self.abort_recorded(k, &exec)?;
        let mut st = ExecState::decode(&rec.state, 0, []).unwrap_or_default();
        let now = self.clock.now();
        st.phase = WorkflowPhase::Failed;
        st.finished_at = Some(now);
        st.started_at.get_or_insert(now);
        st.error = Some(Failure::system("MaxRoundFailures", msg, false));
        let exec = render::execution(exec, &st, false, "", now);
        let phase = core::workflow_execution::Phase::Failed as i32;
        self.store.commit_round(&RoundCommit {
            key: k.clone(),
            revision: rec.revision,
            phase,
            record: exec.encode_to_vec(),
            state: st.encode_header(),
            now,
            fence: Some(fence.clone()),
            notifications: notify::messages(k, &exec, phase, now),
            ..Default::default()
        })?;
        self.disown(k);
        Ok(())
    }

    /// Stops every attempt and child execution an execution's node rows say still run,
    /// without its plan: used when the execution fails because its plan or state cannot be
    /// read (a corrupt dynamic workflow) or it is a poison pill. A row names its node and
    /// attempt; the attempt's record names its task type, which routes the abort.
    fn abort_recorded(&self, k: &ExecKey, exec: &admin::Execution) -> Result<(), Error> {
        use admin::node_execution_closure::TargetMetadata;
        let cluster_label = effects::cluster_label(exec.spec.as_ref());
        for (node_id, bytes) in self.store.list_node_states(k)? {
            let Ok(n) = NodeState::decode(&bytes) else {
                continue;
            };
            if !n.phase.is_active() {
                continue;
            }
            let task_type = |attempt: u32| -> Result<String, Error> {
                let rec = self.store.get_task_execution(k, &node_id, attempt)?;
                Ok(rec
                    .and_then(|r| admin::TaskExecution::decode(r.record.as_slice()).ok())
                    .and_then(|t| t.closure)
                    .map(|c| c.task_type)
                    .unwrap_or_default())
            };
            let spec = |item: Option<u32>, attempt: u32, task_type: String| {
                let mut spec = attempt_identity(k, &node_id, item, attempt, &cluster_label);
                spec.task.r#type = task_type;
                spec
            };
            if let Some(t) = n.task().filter(|t| !t.phase.is_terminal()) {
                self.executor
                    .abort(&spec(None, t.attempt, task_type(t.attempt)?))?;
            }
            if let Some(a) = n.array() {
                for (item, attempt) in a.live() {
                    self.executor
                        .abort(&spec(Some(item), attempt, String::new()))?;
                }
            }
            let child = self
                .store
                .get_node_execution(k, &node_id)?
                .and_then(|r| admin::NodeExecution::decode(r.record.as_slice()).ok())
                .and_then(|r| r.closure)
                .and_then(|c| c.target_metadata)
                .and_then(|m| match m {
                    TargetMetadata::WorkflowNodeMetadata(w) => w.execution_id,
                    _ => None,
                });
            if let Some(child) = child {
                let child = ExecKey {
                    project: child.project,
                    domain: child.domain,
                    name: child.name,
                };
                let cause = format!("cascading abort: parent execution {} failed", k.name);
                self.store.request_abort(&child, &cause, self.clock.now())?;
                self.wake(child);
            }
        }
        Ok(())
    }

    fn try_reconcile(self: &Arc<Self>, k: &ExecKey, fence: &Fence) -> Result<(), Error> {
        let Some(head) = self.store.get_execution_head(k)? else {
            self.disown(k);
            return Ok(());
        };
        if head.is_terminal() {
            self.disown(k);
            return Ok(());
        }
        let mut live = match self.live_state(k, head.revision) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut engine_cfg = self.cfg.engine.clone();
        let spec = live.exec.spec.clone().unwrap_or_default();
        if spec.max_parallelism > 0 {
            engine_cfg.max_parallelism = spec.max_parallelism as u32;
        }
        engine_cfg.overwrite_cache = spec.overwrite_cache;
        engine_cfg.recover = spec.metadata.as_ref().is_some_and(|m| {
            m.mode == admin::execution_metadata::ExecutionMode::Recovered as i32
                && m.reference_execution.is_some()
        });
        let wdir = layout::workflow_dir(&k.project, &k.domain, &k.name);
        let outputs_uri = self
            .blob
            .uri(&layout::attempt_outputs(&wdir, "end-node", 0));
        let mut carry: Vec<Observation> = Vec::new();
        let mut settled = false;
        for _ in 0..self.cfg.max_streak {
            let began = std::time::Instant::now();
            let now = self.clock.now();
            let mut obs = std::mem::take(&mut carry);
            if let Some(cause) = &head.abort_cause {
                obs.push(Observation::AbortRequested {
                    cause: cause.clone(),
                });
            }
            let cx = effects::Cx::new(self, k, &live.exec, &live.inputs_key, &wdir);
            for w in contrail_engine::watches(&live.plan, &live.state) {
                obs.extend(cx.observe(&live.plan, &live.state, w)?);
            }
            let step = contrail_engine::step(&live.plan, &engine_cfg, &live.state, &obs, now);
            if step.is_noop(&live.state) {
                if let Some(at) = step.wake_at {
                    self.schedule(k, at, now);
                }
                settled = true;
                break;
            }
            let mut plan = live.plan.clone();
            // Work is started only once the round that decided it is committed (see
            // `Effect::starts_work`); everything else is done first, so the commit records
            // what it observed.
            let (starts, rest): (Vec<&Effect>, Vec<&Effect>) =
                step.effects.iter().partition(|e| e.starts_work());
            for e in rest {
                if let Some(o) = cx.perform(&mut plan, &step.state, e)? {
                    carry.push(o);
                }
            }
            let commit = self.render(
                k,
                &plan,
                head.abort_cause.is_some(),
                &live.state,
                &step,
                &mut live.exec,
                live.revision,
                &outputs_uri,
                &wdir,
                now,
            );
            let commit = RoundCommit {
                fence: Some(fence.clone()),
                ..commit
            };
            let committing = std::time::Instant::now();
            let outcome = self.store.commit_round(&commit)?;
            telemetry::commit(committing.elapsed());
            telemetry::round(began.elapsed());
            match outcome {
                CommitOutcome::Committed => {
                    live.revision += 1;
                    if step.state.phase != live.state.phase {
                        telemetry::execution_entered(step.state.phase);
                    }
                }
                CommitOutcome::Fenced => {
                    // Another replica took this execution over: it is theirs now.
                    tracing::warn!(execution = %k, epoch = fence.epoch, "lease lost; dropping");
                    self.disown(k);
                    return Ok(());
                }
                CommitOutcome::Conflict => {
                    // Someone else moved this execution on; look again from the store.
                    self.forget(k);
                    self.queue.add(k.clone());
                    return Ok(());
                }
            }
            let cx = effects::Cx::new(self, k, &live.exec, &live.inputs_key, &wdir);
            for e in starts {
                if let Some(o) = cx.perform(&mut plan, &step.state, e)? {
                    carry.push(o);
                }
            }
            live.state = step.state;
            live.plan = plan;
            if live.state.phase.is_terminal() {
                self.disown(k);
                self.wake_parent(&live.exec);
                return Ok(());
            }
            if let Some(at) = step.wake_at {
                self.schedule(k, at, now);
            }
            if carry.is_empty() {
                // Everything observed is applied and no effect result is pending: looking
                // again now would only see attempts just launched. Their ends wake us.
                settled = true;
                break;
            }
        }
        lock(&self.live).insert(k.clone(), live);
        if !settled {
            // The streak hit its limit while still changing: continue in a fresh pass.
            self.queue.add(k.clone());
        }
        Ok(())
    }

    /// A child execution ended: its parent's launch-plan node can move on now.
    fn wake_parent(&self, exec: &admin::Execution) {
        let parent = exec
            .spec
            .as_ref()
            .and_then(|s| s.metadata.as_ref())
            .and_then(|m| m.parent_node_execution.as_ref())
            .and_then(|p| p.execution_id.as_ref());
        if let Some(p) = parent {
            let parent = ExecKey {
                project: p.project.clone(),
                domain: p.domain.clone(),
                name: p.name.clone(),
            };
            // Another replica may own the parent.
            if let Err(e) = self.store.nudge(&parent) {
                tracing::debug!(execution = %parent, "cannot nudge: {e}");
            }
            self.wake(parent);
        }
    }

    fn schedule(&self, k: &ExecKey, at: i64, now: i64) {
        let delay = Duration::from_nanos((at - now).max(0) as u64);
        self.queue
            .add_at(k.clone(), tokio::time::Instant::now() + delay);
    }

    #[allow(clippy::too_many_arguments)]
    fn render(
        &self,
        k: &ExecKey,
        plan: &Plan,
        aborting: bool,
        old: &ExecState,
        step: &contrail_engine::Step,
        exec: &mut admin::Execution,
        revision: i64,
        outputs_uri: &str,
        wdir: &str,
        now: i64,
    ) -> RoundCommit {
        let exec_id = exec
            .id
            .clone()
            .unwrap_or(core::WorkflowExecutionIdentifier {
                project: k.project.clone(),
                domain: k.domain.clone(),
                name: k.name.clone(),
                ..Default::default()
            });
        let node_inputs = |i: usize| self.blob.uri(&layout::node_inputs(wdir, &plan.nodes[i].id));
        let attempt_outputs = |i: usize, a: u32| {
            self.blob
                .uri(&layout::attempt_outputs(wdir, &plan.nodes[i].id, a))
        };
        let futures = |i: usize, a: u32| {
            self.blob.uri(&layout::futures_in(&layout::attempt_dir(
                wdir,
                &plan.nodes[i].id,
                a,
            )))
        };
        // Logs need only the attempt's identity, not a whole launch description.
        let cluster_label = effects::cluster_label(exec.spec.as_ref());
        let logs = |i: usize, item: Option<u32>, a: u32| {
            let mut attempt = attempt_identity(k, &plan.nodes[i].id, item, a, &cluster_label);
            // The task type routes the attempt to its executor; its id fills log links.
            if let Some(t) = plan.task(i) {
                attempt.task.r#type = t.r#type.clone();
                attempt.task.id = t.id.clone();
            }
            self.executor.logs(&attempt)
        };
        // As propeller sets it: while running when the task says it generates a deck,
        // at the end when the deck is there.
        let deck = |i: usize, a: u32, terminal: bool| {
            let key = layout::deck_in(&layout::attempt_dir(wdir, &plan.nodes[i].id, a));
            let shown = if terminal {
                self.blob.exists(&key).unwrap_or(false)
            } else {
                plan.task(i)
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.generates_deck)
                    .unwrap_or(false)
            };
            if shown {
                self.blob.uri(&key)
            } else {
                String::new()
            }
        };
        let child = |i: usize| effects::child_id(k, plan, i);
        let ids = render::Ids {
            exec: exec_id,
            plan,
            node_inputs: &node_inputs,
            attempt_outputs: &attempt_outputs,
            futures: &futures,
            logs: &logs,
            deck: &deck,
            child: &child,
        };
        let new = &step.state;
        *exec = render::execution(exec.clone(), new, aborting, outputs_uri, now);
        let mut c = RoundCommit {
            key: k.clone(),
            revision,
            phase: contrail_engine::workflow_phase(new.phase, false) as i32,
            record: exec.encode_to_vec(),
            state: new.encode_header(),
            now,
            ..Default::default()
        };
        if old.phase != new.phase {
            c.events.push(EventRecord::new(
                "workflow",
                render::workflow_event(&ids, new, outputs_uri, now).encode_to_vec(),
            ));
            c.notifications = notify::messages(k, exec, c.phase, now);
        }
        let default = NodeState::default();
        for &i in &step.changed {
            let (o, n) = (old.nodes.get(i).unwrap_or(&default), &new.nodes[i]);
            if n.phase == contrail_engine::NodePhase::NotYetStarted && !n.not_recoverable {
                continue;
            }
            let created = n.queued_at.or(n.started_at).unwrap_or(now);
            if o.phase != n.phase {
                c.events.push(EventRecord::new(
                    "node",
                    render::node_event(&ids, i, n, now).encode_to_vec(),
                ));
            }
            let p = &plan.nodes[i];
            c.nodes.push(NodeRecord {
                exec: k.clone(),
                node_id: p.id.clone(),
                parent_id: p
                    .parent
                    .map(|x| plan.nodes[x].id.clone())
                    .unwrap_or_default(),
                phase: contrail_engine::node_phase(n.phase) as i32,
                record: render::node(&ids, i, n, created, now).encode_to_vec(),
                state: n.encode(),
                created_at: created,
                updated_at: now,
            });
            if let Some(a) = n.array()
                && plan.task(i).is_some()
            {
                self.array_task_records(&ids, &mut c, k, i, o, n, a, now);
            }
            if let Some(t) = n.task()
                && o.task() != Some(t)
            {
                if o.task().map(|x| (x.attempt, x.phase)) != Some((t.attempt, t.phase)) {
                    c.events.push(EventRecord::new(
                        "task",
                        render::task_event(&ids, i, t, now).encode_to_vec(),
                    ));
                }
                c.tasks.push(TaskRecord {
                    exec: k.clone(),
                    node_id: p.id.clone(),
                    attempt: t.attempt,
                    phase: contrail_engine::task_phase(t.phase) as i32,
                    record: render::task(&ids, i, t, now).encode_to_vec(),
                    created_at: t.created_at,
                    updated_at: now,
                });
            }
        }
        c
    }
}

impl Controller {
    /// Flyte 1 reports an array node over a task as one TaskExecution: a task event each
    /// round some item changed (only those items, so a 10,000-item map never sends one
    /// event per item per round), and the record with every item, rewritten when the
    /// array's phase changes and at most once a second in between.
    #[allow(clippy::too_many_arguments)]
    fn array_task_records(
        &self,
        ids: &render::Ids<'_>,
        c: &mut RoundCommit,
        k: &ExecKey,
        i: usize,
        old: &NodeState,
        new: &NodeState,
        array: &contrail_engine::ArrayState,
        now: i64,
    ) {
        use contrail_engine::array_task_phase;
        let phase = array_task_phase(new.phase);
        let old_phase = old.array().map(|_| array_task_phase(old.phase));
        let phase_changed = old_phase != Some(phase);
        let changed = array.changed_since(old.array());
        if phase_changed || !changed.is_empty() {
            // The first and the last event list every item, as Flyte's do.
            let items: Vec<u32> =
                if phase_changed && (old_phase.is_none() || new.phase.is_terminal()) {
                    (0..array.len() as u32).collect()
                } else {
                    changed
                };
            let version = if phase_changed {
                0
            } else {
                u32::try_from(array.progress()).unwrap_or(u32::MAX)
            };
            c.events.push(EventRecord::new(
                "task",
                render::array_task_event(ids, i, new, array, &items, version, now).encode_to_vec(),
            ));
        }
        let node_id = &ids.plan.nodes[i].id;
        let key = (k.clone(), node_id.clone());
        let due = {
            let mut written = lock(&self.array_records);
            let due = phase_changed
                || written
                    .get(&key)
                    .is_none_or(|at| now.saturating_sub(*at) >= ARRAY_RECORD_INTERVAL);
            if new.phase.is_terminal() {
                written.remove(&key);
            } else if due {
                written.insert(key, now);
            }
            due
        };
        if due {
            c.tasks.push(TaskRecord {
                exec: k.clone(),
                node_id: node_id.clone(),
                attempt: 0,
                phase: phase as i32,
                record: render::array_task(ids, i, new, array, now).encode_to_vec(),
                created_at: new.queued_at.or(new.started_at).unwrap_or(now),
                updated_at: now,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_executor::Result as ExecResult;
    use contrail_idl::core::{self, node::Target, task_node::Reference};
    use contrail_store::Store;
    use contrail_store_sqlite::SqliteStore;

    /// An executor with a bug: it panics whenever it is asked to start an attempt (and
    /// knows none, so every round asks again).
    struct Panicking;

    impl Executor for Panicking {
        fn launch(&self, _: &AttemptSpec, _: Box<dyn Fn() + Send + Sync>) -> ExecResult<()> {
            panic!("injected launch panic");
        }
        fn status(&self, _: &AttemptSpec) -> ExecResult<contrail_engine::TaskStatus> {
            Ok(contrail_engine::TaskStatus::Unknown)
        }
        fn abort(&self, _: &AttemptSpec) -> ExecResult<()> {
            Ok(())
        }
        fn logs(&self, _: &AttemptSpec) -> Vec<core::TaskLog> {
            Vec::new()
        }
    }

    /// One execution of a one-task workflow, stored as the API stores it.
    fn one_task_execution(store: &dyn Store, blob: &BlobStore) -> ExecKey {
        let task_id = core::Identifier {
            resource_type: core::ResourceType::Task as i32,
            project: "p".into(),
            domain: "d".into(),
            name: "t".into(),
            version: "v".into(),
            org: String::new(),
        };
        let closure = core::CompiledWorkflowClosure {
            primary: Some(core::CompiledWorkflow {
                template: Some(core::WorkflowTemplate {
                    nodes: vec![
                        core::Node {
                            id: "start-node".into(),
                            ..Default::default()
                        },
                        core::Node {
                            id: "n0".into(),
                            target: Some(Target::TaskNode(core::TaskNode {
                                reference: Some(Reference::ReferenceId(task_id.clone())),
                                ..Default::default()
                            })),
                            ..Default::default()
                        },
                        core::Node {
                            id: "end-node".into(),
                            upstream_node_ids: vec!["n0".into()],
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }),
                connections: None,
            }),
            tasks: vec![core::CompiledTask {
                template: Some(core::TaskTemplate {
                    id: Some(task_id),
                    r#type: "python-task".into(),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        };
        let key = ExecKey {
            project: "p".into(),
            domain: "d".into(),
            name: "e1".into(),
        };
        let id = core::WorkflowExecutionIdentifier {
            project: "p".into(),
            domain: "d".into(),
            name: "e1".into(),
            org: String::new(),
        };
        let inputs = layout::execution_inputs_named("p", "d", "e1", "0");
        blob.put(&inputs, &core::LiteralMap::default().encode_to_vec())
            .unwrap();
        let record = admin::Execution {
            id: Some(id),
            spec: Some(admin::ExecutionSpec::default()),
            closure: Some(admin::ExecutionClosure::default()),
        };
        assert!(
            store
                .create_execution(&contrail_store::ExecutionRecord {
                    key: key.clone(),
                    phase: core::workflow_execution::Phase::Queued as i32,
                    launch_plan: "lp".into(),
                    workflow: "wf".into(),
                    record: record.encode_to_vec(),
                    workflow_closure: closure.encode_to_vec(),
                    state: Vec::new(),
                    abort_cause: None,
                    inputs_uri: blob.uri(&inputs),
                    revision: 0,
                    created_at: 1,
                    updated_at: 1,
                })
                .unwrap()
        );
        key
    }

    #[test]
    fn a_panicking_round_counts_toward_the_poison_pill_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("contrail.db")).unwrap());
        let blob = BlobStore::new(dir.path().join("blobs"), "contrail", vec![7; 32]);
        let k = one_task_execution(store.as_ref(), &blob);
        let cfg = Config {
            max_round_failures: 3,
            ..Config::default()
        };
        let c = Controller::new(store.clone(), blob, Arc::new(Panicking), cfg);
        for round in 1..=3 {
            c.reconcile(&k);
            let phase = store.get_execution(&k).unwrap().unwrap().phase;
            if round < 3 {
                assert_eq!(lock(&c.failures).get(&k), Some(&round), "round {round}");
                assert!(!contrail_store::is_terminal_phase(phase));
            }
        }
        let rec = store.get_execution(&k).unwrap().unwrap();
        assert_eq!(rec.phase, core::workflow_execution::Phase::Failed as i32);
        let exec = admin::Execution::decode(rec.record.as_slice()).unwrap();
        let message = match exec.closure.and_then(|c| c.output_result) {
            Some(admin::execution_closure::OutputResult::Error(e)) => e.message,
            other => panic!("{other:?}"),
        };
        assert!(message.contains("injected launch panic"), "{message}");
    }
}
