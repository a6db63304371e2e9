//! Property tests: random DAGs, random task outcomes, lost launches, controller restarts
//! (lost effect results) and observations in any order, against a simulated world.

mod common;

use contrail_engine::{
    Config, Effect, ExecState, Failure, NodePhase, Observation, Plan, TaskStatus, Watch,
    WorkflowPhase, step, watches,
};
use proptest::prelude::*;
use std::collections::HashMap;

const S: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Succeed,
    Recoverable,
    Fatal,
    System,
    Hang,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Succeed),
        2 => Just(Outcome::Recoverable),
        1 => Just(Outcome::Fatal),
        1 => Just(Outcome::System),
        1 => Just(Outcome::Hang),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    edges: Vec<Vec<usize>>,
    retries: Vec<u32>,
    timeouts: Vec<u64>,
    /// Outcome of attempt k of node i (beyond the list: success).
    outcomes: Vec<Vec<Outcome>>,
    fail_after: bool,
    max_parallelism: u32,
    /// Node i is an array node of (items, parallelism) when set.
    arrays: Vec<Option<(usize, u32)>>,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..12).prop_flat_map(|n| {
        (
            (0..n)
                .map(|i| proptest::collection::vec(0..i.max(1), 0..3.min(i + 1)))
                .collect::<Vec<_>>(),
            proptest::collection::vec(0u32..3, n),
            proptest::collection::vec(prop_oneof![3 => Just(0u64), 1 => Just(5u64)], n),
            proptest::collection::vec(proptest::collection::vec(outcome(), 0..4), n),
            any::<bool>(),
            0u32..4,
            proptest::collection::vec(
                prop_oneof![3 => Just(None), 1 => (0usize..6, 1u32..3).prop_map(Some)],
                n,
            ),
            any::<u64>(),
        )
            .prop_map(
                |(edges, retries, timeouts, outcomes, fail_after, mp, arrays, seed)| {
                    // Node 0 has no upstream; others depend only on earlier nodes.
                    let edges = edges
                        .into_iter()
                        .enumerate()
                        .map(|(i, mut e)| {
                            if i == 0 {
                                e.clear();
                            }
                            e.sort();
                            e.dedup();
                            e
                        })
                        .collect();
                    Case {
                        edges,
                        retries,
                        timeouts,
                        outcomes,
                        fail_after,
                        max_parallelism: mp,
                        arrays,
                        seed,
                    }
                },
            )
    })
}

/// A tiny deterministic PRNG for the world's choices.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

struct Attempt {
    rounds_left: u32,
    outcome: Outcome,
    aborted: bool,
}

fn status(a: &Attempt) -> TaskStatus {
    if a.aborted {
        return TaskStatus::Failed(Failure::system("Aborted", "aborted", false));
    }
    if a.rounds_left > 0 {
        return TaskStatus::Running { started_at: None };
    }
    match a.outcome {
        Outcome::Succeed => TaskStatus::Succeeded,
        Outcome::Recoverable => {
            TaskStatus::Failed(Failure::user("USER:Recoverable", "try again", true))
        }
        Outcome::Fatal => TaskStatus::Failed(Failure::user("USER:RuntimeError", "no", false)),
        Outcome::System => TaskStatus::Failed(Failure::system("Interrupted", "lost", true)),
        Outcome::Hang => TaskStatus::Running { started_at: None },
    }
}

fn active(plan: &Plan, s: &ExecState) -> usize {
    plan.nodes
        .iter()
        .zip(&s.nodes)
        .filter(|(p, n)| {
            matches!(p.kind, contrail_engine::NodeKind::Task(_)) && n.phase.is_active()
        })
        .count()
}

/// The workflow of a case: task nodes, some of them turned into array nodes over the same
/// task.
fn closure(c: &Case) -> contrail_idl::core::CompiledWorkflowClosure {
    use contrail_idl::core::{self, node::Target};
    let mut cl = common::closure(&c.edges, &c.retries, &c.timeouts, c.fail_after);
    let t = cl.primary.as_mut().unwrap().template.as_mut().unwrap();
    for (i, a) in c.arrays.iter().enumerate() {
        let Some((_, parallelism)) = a else { continue };
        let n = t
            .nodes
            .iter_mut()
            .find(|n| n.id == format!("n{i}"))
            .unwrap();
        let sub = n.clone();
        n.target = Some(Target::ArrayNode(Box::new(core::ArrayNode {
            node: Some(Box::new(sub)),
            parallelism_option: Some(core::array_node::ParallelismOption::Parallelism(
                *parallelism,
            )),
            ..Default::default()
        })));
    }
    cl
}

/// The inputs an array node of `size` items resolves to.
fn array_inputs(size: usize) -> contrail_idl::core::LiteralMap {
    use contrail_idl::core::{self, literal};
    let item = contrail_engine::resolve::primitive_literal(core::primitive::Value::Integer(1));
    core::LiteralMap {
        literals: [(
            "x".to_string(),
            core::Literal {
                value: Some(literal::Value::Collection(core::LiteralCollection {
                    literals: vec![item; size],
                })),
                ..Default::default()
            },
        )]
        .into_iter()
        .collect(),
    }
}

fn simulate(c: &Case) -> Result<(), TestCaseError> {
    let plan = Plan::new(&closure(c)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let cfg = Config {
        max_parallelism: c.max_parallelism,
        backoff_base: S / 2,
        backoff_max: 4 * S,
        // A hanging task without its own timeout ends only by the workflow timeout.
        workflow_timeout: Some(1_000 * S),
        ..Config::default()
    };
    let mut rng = Rng(c.seed | 1);
    let mut world: HashMap<(usize, Option<u32>, u32), Attempt> = HashMap::new();
    let mut state = ExecState::new(plan.nodes.len());
    let mut carry: Vec<Observation> = Vec::new();
    let mut now = 0i64;
    for _round in 0..5_000 {
        let mut obs = std::mem::take(&mut carry);
        obs.extend(look(&plan, &state, &world));
        // The controller may see the world in any order.
        for k in (1..obs.len()).rev() {
            let j = (rng.next() % (k as u64 + 1)) as usize;
            obs.swap(k, j);
        }
        let s = step(&plan, &cfg, &state, &obs, now);
        // Max parallelism holds after every round.
        if c.max_parallelism > 0 {
            prop_assert!(active(&plan, &s.state) <= c.max_parallelism as usize);
        }
        // No array runs more items at once than its parallelism.
        for (i, a) in c.arrays.iter().enumerate() {
            if let (Some((_, par)), Some(st)) =
                (a, s.state.nodes[plan.index[&format!("n{i}")]].array())
            {
                let live = st
                    .items
                    .bytes()
                    .filter(|b| matches!(b, b'q' | b'r' | b'w'))
                    .count();
                prop_assert!(live <= *par as usize, "{} live items > {}", live, par);
            }
        }
        // A workflow never succeeds while a node is unfinished.
        if s.state.phase == WorkflowPhase::Succeeded {
            prop_assert!(s.state.nodes.iter().all(|n| n.phase.is_terminal()));
            prop_assert!(
                s.state
                    .nodes
                    .iter()
                    .all(|n| n.phase == NodePhase::Succeeded)
            );
        }
        // Perform effects (some launches are lost, as if the process died first).
        let mut results = Vec::new();
        for e in &s.effects {
            match e {
                Effect::Launch {
                    node,
                    item,
                    attempt,
                } => {
                    if rng.chance(10) {
                        continue;
                    }
                    let i = *node - 1;
                    let outcome = c
                        .outcomes
                        .get(i)
                        .and_then(|o| o.get(*attempt as usize))
                        .copied()
                        .unwrap_or(Outcome::Succeed);
                    world.entry((*node, *item, *attempt)).or_insert(Attempt {
                        rounds_left: (rng.next() % 3) as u32,
                        outcome,
                        aborted: false,
                    });
                }
                Effect::Abort {
                    node,
                    item,
                    attempt,
                } => {
                    if let Some(a) = world.get_mut(&(*node, *item, *attempt)) {
                        a.aborted = true;
                    }
                }
                Effect::PublishOutputs => results.push(Observation::OutputsPublished),
                Effect::ResolveInputs { node } => {
                    let i = plan.nodes[*node].spec_id[1..].parse::<usize>().unwrap_or(0);
                    let size = c.arrays.get(i).copied().flatten().map_or(0, |a| a.0);
                    results.push(Observation::Inputs {
                        node: *node,
                        result: Ok(array_inputs(size)),
                    });
                }
                Effect::PublishNode { node } => results.push(Observation::NodeOutputs {
                    node: *node,
                    result: Ok(()),
                }),
                _ => {}
            }
        }
        // No new observations, no new effects: observing the same world twice is a no-op.
        if !s.state.phase.is_terminal() {
            let mut again = results.clone();
            again.extend(look(&plan, &s.state, &world));
            let once = step(&plan, &cfg, &s.state, &again, now);
            let twice = step(&plan, &cfg, &once.state, &again, now);
            // Seeing the same world again asks for nothing new: at most a repeat of
            // requests whose results were not observed yet, and nothing if none were made.
            prop_assert!(
                twice.effects.iter().all(|e| once.effects.contains(e)),
                "new effects {:?} after {:?}",
                twice.effects,
                once.effects
            );
            if once.effects.is_empty() {
                prop_assert!(twice.effects.is_empty());
                prop_assert_eq!(&twice.state, &once.state);
            }
        }
        state = s.state;
        if state.phase.is_terminal() {
            // Only a task that never ends may run the clock out; a lost effect result
            // must never leave a node waiting for an answer nobody will send.
            let hangs = c.outcomes.iter().flatten().any(|o| *o == Outcome::Hang);
            prop_assert!(
                hangs || state.phase != WorkflowPhase::TimedOut,
                "timed out with no hanging task: nodes {:?}",
                state.nodes.iter().map(|n| n.phase).collect::<Vec<_>>()
            );
            return Ok(());
        }
        // A restart loses the effect results of this round; the world persists.
        if !rng.chance(15) {
            carry = results;
        }
        for a in world.values_mut() {
            a.rounds_left = a.rounds_left.saturating_sub(1);
        }
        now += (rng.next() % (2 * S as u64)) as i64;
    }
    Err(TestCaseError::fail(format!(
        "did not terminate: phase {:?} nodes {:?}",
        state.phase,
        state.nodes.iter().map(|n| n.phase).collect::<Vec<_>>()
    )))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_execution_terminates_and_the_invariants_hold(c in case()) {
        simulate(&c)?;
    }
}

/// What the controller would see of every task attempt (and array item) it watches.
fn look(
    plan: &Plan,
    s: &ExecState,
    world: &HashMap<(usize, Option<u32>, u32), Attempt>,
) -> Vec<Observation> {
    watches(plan, s)
        .into_iter()
        .filter_map(|w| match w {
            Watch::Attempt {
                node,
                item,
                attempt,
            } => Some(Observation::Task {
                node,
                item,
                attempt,
                status: world
                    .get(&(node, item, attempt))
                    .map_or(TaskStatus::Unknown, status),
            }),
            _ => None,
        })
        .collect()
}
