//! The level-triggered reconciler. A round loads an execution's committed state, asks the
//! executor what every live attempt looks like, lets the pure engine decide, performs the
//! effects (each safe to repeat), and commits the new state, the API records and the
//! events in one conditional transaction. Wake-ups (task exits, API writes) only make
//! this happen sooner; the periodic resync alone is enough for correctness.

mod queue;
pub mod render;

use contrail_blob::{BlobStore, layout};
use contrail_engine::{
    Config as EngineConfig, Effect, ExecState, Failure, Observation, Plan, WorkflowPhase, ids,
    resolve,
};
use contrail_executor::{AttemptPaths, AttemptSpec, Executor};
use contrail_idl::{admin, core};
use contrail_store::{
    CommitOutcome, EventRecord, ExecKey, NodeRecord, RoundCommit, Store, TaskRecord,
};
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            engine: EngineConfig::default(),
            resync: Duration::from_secs(1),
            workers: 4,
            max_streak: 64,
            max_round_failures: 10,
        }
    }
}

/// Promises on this node id (or `""`) read the workflow inputs.
const START_NODE: &str = "start-node";

/// Flyte's unique id of an attempt (`<exec>-<node>-<attempt>`, hashed beyond 50 chars): it
/// names the attempt for the executor and its raw-output prefix.
fn attempt_id(k: &ExecKey, node_id: &str, attempt: u32) -> String {
    ids::fixed_length_unique_id(50, &[&k.name, node_id, &attempt.to_string()])
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// An execution's committed state as this process last saw it.
struct Live {
    revision: i64,
    state: ExecState,
    exec: admin::Execution,
}

/// What one execution needs besides its state, decoded once and cached.
struct Loaded {
    plan: Plan,
    exec: admin::Execution,
}

pub struct Controller {
    store: Arc<dyn Store>,
    blob: BlobStore,
    executor: Arc<dyn Executor>,
    cfg: Config,
    queue: Queue,
    cache: Mutex<HashMap<ExecKey, Arc<Loaded>>>,
    live: Mutex<HashMap<ExecKey, Live>>,
    failures: Mutex<HashMap<ExecKey, u32>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Controller {
    pub fn new(
        store: Arc<dyn Store>,
        blob: BlobStore,
        executor: Arc<dyn Executor>,
        cfg: Config,
    ) -> Arc<Self> {
        Arc::new(Controller {
            store,
            blob,
            executor,
            cfg,
            queue: Queue::default(),
            cache: Mutex::default(),
            live: Mutex::default(),
            failures: Mutex::default(),
        })
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
        let me = self.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(me.cfg.resync);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let store = me.store.clone();
                match tokio::task::spawn_blocking(move || store.list_active_executions()).await {
                    Ok(Ok(keys)) => keys.into_iter().for_each(|k| me.queue.add(k)),
                    Ok(Err(e)) => tracing::warn!("resync: {e}"),
                    Err(e) => tracing::warn!("resync: {e}"),
                }
            }
        });
        stop.await;
        tasks.abort_all();
    }

    /// One reconcile pass (a streak of rounds) over one execution.
    pub fn reconcile(self: &Arc<Self>, k: &ExecKey) {
        match self.try_reconcile(k) {
            Ok(()) => {
                lock(&self.failures).remove(k);
            }
            Err(e) => {
                let n = {
                    let mut f = lock(&self.failures);
                    let n = f.entry(k.clone()).or_default();
                    *n += 1;
                    *n
                };
                tracing::warn!(execution = %k, attempt = n, "round failed: {e}");
                if n >= self.cfg.max_round_failures {
                    let msg = format!("{n} rounds in a row failed; last error: {e}");
                    if let Err(e2) = self.fail_outright(k, &msg) {
                        tracing::error!(execution = %k, "cannot fail poisoned execution: {e2}");
                    }
                    lock(&self.failures).remove(k);
                } else {
                    let backoff = Duration::from_millis(100u64 << n.min(7));
                    self.queue
                        .add_at(k.clone(), tokio::time::Instant::now() + backoff);
                }
            }
        }
    }

    fn load(&self, k: &ExecKey, exec: &admin::Execution) -> Result<Arc<Loaded>, Error> {
        if let Some(l) = lock(&self.cache).get(k) {
            return Ok(l.clone());
        }
        let bytes = self.store.get_workflow_closure(k)?.unwrap_or_default();
        let closure = core::CompiledWorkflowClosure::decode(bytes.as_slice())
            .map_err(|e| Error::Corrupt("workflow closure", e.to_string()))?;
        let plan = Plan::new(&closure).map_err(|e| Error::Corrupt("workflow", e.to_string()))?;
        let l = Arc::new(Loaded {
            plan,
            exec: exec.clone(),
        });
        lock(&self.cache).insert(k.clone(), l.clone());
        Ok(l)
    }

    fn forget(&self, k: &ExecKey) {
        lock(&self.cache).remove(k);
        lock(&self.live).remove(k);
    }

    /// The committed state of an execution: from memory when this process made the last
    /// commit (same revision), else from the store.
    fn live_state(&self, k: &ExecKey, revision: i64) -> Result<Option<(Live, Arc<Loaded>)>, Error> {
        let cached = lock(&self.live)
            .remove(k)
            .filter(|l| l.revision == revision);
        let live = match cached {
            Some(l) => l,
            None => {
                let Some(rec) = self.store.get_execution(k)? else {
                    return Ok(None);
                };
                let exec = admin::Execution::decode(rec.record.as_slice())
                    .map_err(|e| Error::Corrupt("execution record", e.to_string()))?;
                let loaded = self.load(k, &exec)?;
                let plan = &loaded.plan;
                let nodes = self
                    .store
                    .list_node_states(k)?
                    .into_iter()
                    .filter_map(|(id, st)| plan.index.get(&id).map(|&i| (i, st)));
                let state = ExecState::decode(&rec.state, plan.nodes.len(), nodes)
                    .map_err(|e| Error::Corrupt("state", e.to_string()))?;
                Live {
                    revision: rec.revision,
                    state,
                    exec,
                }
            }
        };
        let loaded = self.load(k, &live.exec)?;
        Ok(Some((live, loaded)))
    }

    fn fail_outright(&self, k: &ExecKey, msg: &str) -> Result<(), Error> {
        let Some(rec) = self.store.get_execution(k)? else {
            return Ok(());
        };
        if rec.is_terminal() {
            return Ok(());
        }
        let mut st = ExecState::decode(&rec.state, 0, []).unwrap_or_default();
        let now = now_nanos();
        st.phase = WorkflowPhase::Failed;
        st.finished_at = Some(now);
        st.started_at.get_or_insert(now);
        st.error = Some(Failure::system("MaxRoundFailures", msg, false));
        let exec = admin::Execution::decode(rec.record.as_slice()).unwrap_or_default();
        let exec = render::execution(exec, &st, false, "", now);
        self.store.commit_round(&RoundCommit {
            key: k.clone(),
            revision: rec.revision,
            phase: core::workflow_execution::Phase::Failed as i32,
            record: exec.encode_to_vec(),
            state: st.encode_header(),
            now,
            ..Default::default()
        })?;
        self.forget(k);
        Ok(())
    }

    fn try_reconcile(self: &Arc<Self>, k: &ExecKey) -> Result<(), Error> {
        let Some(head) = self.store.get_execution_head(k)? else {
            self.forget(k);
            return Ok(());
        };
        if head.is_terminal() {
            self.forget(k);
            return Ok(());
        }
        let (mut live, loaded) = match self.live_state(k, head.revision) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(()),
            Err(Error::Corrupt(what, msg)) => {
                return self.fail_outright(k, &format!("cannot run this execution: {what}: {msg}"));
            }
            Err(e) => return Err(e),
        };
        let plan = &loaded.plan;
        let mut engine_cfg = self.cfg.engine.clone();
        if let Some(n) = loaded
            .exec
            .spec
            .as_ref()
            .map(|s| s.max_parallelism)
            .filter(|n| *n > 0)
        {
            engine_cfg.max_parallelism = n as u32;
        }
        let wdir = layout::workflow_dir(&k.project, &k.domain, &k.name);
        let outputs_uri = self
            .blob
            .uri(&layout::attempt_outputs(&wdir, "end-node", 0));
        let mut carry: Vec<Observation> = Vec::new();
        let mut settled = false;
        for _ in 0..self.cfg.max_streak {
            let now = now_nanos();
            let mut obs = std::mem::take(&mut carry);
            if let Some(cause) = &head.abort_cause {
                obs.push(Observation::AbortRequested {
                    cause: cause.clone(),
                });
            }
            for (node, attempt) in live.state.live_attempts().collect::<Vec<_>>() {
                let spec = self.attempt_spec(k, &loaded, node, attempt, &wdir)?;
                let status = self.executor.status(&spec)?;
                obs.push(Observation::Task {
                    node,
                    attempt,
                    status,
                });
            }
            let step = contrail_engine::step(plan, &engine_cfg, &live.state, &obs, now);
            if step.is_noop(&live.state) {
                if let Some(at) = step.wake_at {
                    self.schedule(k, at, now);
                }
                settled = true;
                break;
            }
            for e in &step.effects {
                if let Some(o) = self.perform(k, &loaded, &step.state, e, &wdir)? {
                    carry.push(o);
                }
            }
            let commit = self.render(
                k,
                &loaded,
                head.abort_cause.is_some(),
                &live.state,
                &step,
                &mut live.exec,
                live.revision,
                &outputs_uri,
                &wdir,
                now,
            );
            match self.store.commit_round(&commit)? {
                CommitOutcome::Committed => live.revision += 1,
                CommitOutcome::Conflict => {
                    // Someone else moved this execution on; look again from the store.
                    self.forget(k);
                    self.queue.add(k.clone());
                    return Ok(());
                }
            }
            live.state = step.state;
            if live.state.phase.is_terminal() {
                self.forget(k);
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

    fn schedule(&self, k: &ExecKey, at: i64, now: i64) {
        let delay = Duration::from_nanos((at - now).max(0) as u64);
        self.queue
            .add_at(k.clone(), tokio::time::Instant::now() + delay);
    }

    fn attempt_spec(
        &self,
        k: &ExecKey,
        l: &Loaded,
        node: usize,
        attempt: u32,
        wdir: &str,
    ) -> Result<AttemptSpec, Error> {
        let p = &l.plan.nodes[node];
        let task = l.plan.task(node).cloned().unwrap_or_default();
        let spec = l.exec.spec.as_ref();
        let raw_base = spec
            .and_then(|s| s.raw_output_data_config.as_ref())
            .map(|r| r.output_location_prefix.trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.blob.uri(layout::RAW_DATA));
        let raw_for = |a: u32| {
            let unique = attempt_id(k, &p.id, a);
            format!("{raw_base}/{}/{unique}", ids::shard(&unique))
        };
        let raw = raw_for(attempt);
        let envs = spec
            .and_then(|s| s.envs.as_ref())
            .map(|e| {
                e.values
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let closure = l.exec.closure.as_ref();
        Ok(AttemptSpec {
            id: attempt_id(k, &p.id, attempt),
            project: k.project.clone(),
            domain: k.domain.clone(),
            execution: k.name.clone(),
            workflow: closure
                .and_then(|c| c.workflow_id.as_ref())
                .map(|w| w.name.clone())
                .unwrap_or_default(),
            launch_plan: spec
                .and_then(|s| s.launch_plan.as_ref())
                .map(|lp| lp.name.clone())
                .unwrap_or_default(),
            node_id: p.id.clone(),
            attempt,
            task,
            paths: AttemptPaths {
                inputs: self.blob.uri(&layout::node_inputs(wdir, &p.id)),
                output_prefix: self.blob.uri(&layout::attempt_dir(wdir, &p.id, attempt)),
                checkpoint_prefix: format!("{raw}/_flytecheckpoints"),
                prev_checkpoint_prefix: (attempt > 0)
                    .then(|| format!("{}/_flytecheckpoints", raw_for(attempt - 1))),
                raw_output_prefix: raw,
            },
            inputs: core::LiteralMap::default(),
            envs,
        })
    }

    fn read_map(&self, key: &str) -> Result<core::LiteralMap, Error> {
        let bytes = self.blob.get(key)?;
        core::LiteralMap::decode(bytes.as_slice())
            .map_err(|e| Error::Corrupt("literal map", format!("{key}: {e}")))
    }

    /// The outputs of every node the bindings read from.
    fn upstream_outputs(
        &self,
        k: &ExecKey,
        l: &Loaded,
        state: &ExecState,
        bindings: &[core::Binding],
        wdir: &str,
    ) -> Result<BTreeMap<String, core::LiteralMap>, Error> {
        fn sources(b: &core::BindingData, out: &mut Vec<String>) {
            use core::binding_data::Value;
            match &b.value {
                Some(Value::Promise(p)) => out.push(p.node_id.clone()),
                Some(Value::Collection(c)) => c.bindings.iter().for_each(|x| sources(x, out)),
                Some(Value::Map(m)) => m.bindings.values().for_each(|x| sources(x, out)),
                _ => {}
            }
        }
        let mut ids = Vec::new();
        for b in bindings.iter().filter_map(|b| b.binding.as_ref()) {
            sources(b, &mut ids);
        }
        let mut out = BTreeMap::new();
        for id in ids {
            if out.contains_key(&id) {
                continue;
            }
            let key = if id.is_empty() || id == START_NODE {
                layout::execution_inputs(&k.project, &k.domain, &k.name)
            } else if let Some(&i) = l.plan.index.get(&id) {
                layout::attempt_outputs(wdir, &id, state.nodes[i].attempt)
            } else {
                continue;
            };
            out.insert(id, self.read_map(&key)?);
        }
        Ok(out)
    }

    /// Performs one effect. Data problems come back as observations; IO problems as errors
    /// (the round is retried).
    fn perform(
        self: &Arc<Self>,
        k: &ExecKey,
        l: &Loaded,
        state: &ExecState,
        e: &Effect,
        wdir: &str,
    ) -> Result<Option<Observation>, Error> {
        match e {
            Effect::PublishStart => {
                let inputs = self
                    .blob
                    .get(&layout::execution_inputs(&k.project, &k.domain, &k.name))?;
                self.blob
                    .put(&layout::attempt_outputs(wdir, "start-node", 0), &inputs)?;
                Ok(None)
            }
            Effect::Launch { node, attempt } => {
                let p = &l.plan.nodes[*node];
                let ups = self.upstream_outputs(k, l, state, &p.node.inputs, wdir)?;
                let inputs = match resolve::resolve_bindings(&p.node.inputs, &|id| ups.get(id)) {
                    Ok(m) => m,
                    Err(err) => {
                        return Ok(Some(Observation::LaunchRejected {
                            node: *node,
                            attempt: *attempt,
                            failure: Failure::system("BindingResolutionFailure", err.0, false),
                        }));
                    }
                };
                self.blob
                    .put(&layout::node_inputs(wdir, &p.id), &inputs.encode_to_vec())?;
                let mut spec = self.attempt_spec(k, l, *node, *attempt, wdir)?;
                spec.inputs = inputs;
                let me = Arc::downgrade(self);
                let key = k.clone();
                self.executor.launch(
                    &spec,
                    Box::new(move || {
                        if let Some(c) = me.upgrade() {
                            c.wake(key.clone());
                        }
                    }),
                )?;
                Ok(None)
            }
            Effect::Abort { node, attempt } => {
                let spec = self.attempt_spec(k, l, *node, *attempt, wdir)?;
                self.executor.abort(&spec)?;
                Ok(None)
            }
            Effect::PublishOutputs => {
                let ups = self.upstream_outputs(k, l, state, &l.plan.outputs, wdir)?;
                match resolve::resolve_bindings(&l.plan.outputs, &|id| ups.get(id)) {
                    Ok(m) => {
                        self.blob.put(
                            &layout::attempt_outputs(wdir, "end-node", 0),
                            &m.encode_to_vec(),
                        )?;
                        Ok(Some(Observation::OutputsPublished))
                    }
                    Err(err) => Ok(Some(Observation::OutputsRejected(Failure::system(
                        "OutputResolutionFailure",
                        err.0,
                        false,
                    )))),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn render(
        &self,
        k: &ExecKey,
        l: &Loaded,
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
        let node_inputs = |i: usize| {
            self.blob
                .uri(&layout::node_inputs(wdir, &l.plan.nodes[i].id))
        };
        let attempt_outputs = |i: usize, a: u32| {
            self.blob
                .uri(&layout::attempt_outputs(wdir, &l.plan.nodes[i].id, a))
        };
        // Logs need only the attempt's identity, not a whole launch description.
        let logs = |i: usize, a: u32| {
            self.executor.logs(&AttemptSpec {
                id: attempt_id(k, &l.plan.nodes[i].id, a),
                project: k.project.clone(),
                domain: k.domain.clone(),
                ..Default::default()
            })
        };
        let ids = render::Ids {
            exec: exec_id,
            plan: &l.plan,
            node_inputs: &node_inputs,
            attempt_outputs: &attempt_outputs,
            logs: &logs,
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
            c.events.push(EventRecord {
                kind: "workflow",
                payload: render::workflow_event(&ids, new, outputs_uri, now).encode_to_vec(),
            });
        }
        for &i in &step.changed {
            let (o, n) = (&old.nodes[i], &new.nodes[i]);
            if n.phase == contrail_engine::NodePhase::NotYetStarted {
                continue;
            }
            let created = n.queued_at.or(n.started_at).unwrap_or(now);
            if o.phase != n.phase {
                c.events.push(EventRecord {
                    kind: "node",
                    payload: render::node_event(&ids, i, n, now).encode_to_vec(),
                });
            }
            c.nodes.push(NodeRecord {
                exec: k.clone(),
                node_id: l.plan.nodes[i].id.clone(),
                parent_id: String::new(),
                phase: contrail_engine::node_phase(n.phase) as i32,
                record: render::node(&ids, i, n, created, now).encode_to_vec(),
                state: n.encode(),
                created_at: created,
                updated_at: now,
            });
            if let Some(t) = &n.task
                && o.task.as_ref() != Some(t)
            {
                if o.task.as_ref().map(|x| (x.attempt, x.phase)) != Some((t.attempt, t.phase)) {
                    c.events.push(EventRecord {
                        kind: "task",
                        payload: render::task_event(&ids, i, t, now).encode_to_vec(),
                    });
                }
                c.tasks.push(TaskRecord {
                    exec: k.clone(),
                    node_id: l.plan.nodes[i].id.clone(),
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
