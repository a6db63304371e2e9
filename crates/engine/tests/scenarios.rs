//! Data-driven engine tests: a workflow, a sequence of (observations, now) rounds, and the
//! effects and phases each round must produce.

mod common;

use contrail_engine::{
    Config, Effect, ErrorKind, ExecState, Failure, NodePhase, Observation, Plan, TaskStatus,
    WorkflowPhase, step,
};

const S: i64 = 1_000_000_000;

struct Run {
    plan: Plan,
    cfg: Config,
    state: ExecState,
}

impl Run {
    fn new(edges: &[Vec<usize>], retries: &[u32], timeouts: &[u64], fail_after: bool) -> Run {
        let plan = Plan::new(&common::closure(edges, retries, timeouts, fail_after)).unwrap();
        let state = ExecState::new(plan.nodes.len());
        Run {
            plan,
            cfg: Config {
                max_parallelism: 0,
                ..Config::default()
            },
            state,
        }
    }

    fn idx(&self, id: &str) -> usize {
        self.plan.index[id]
    }

    fn task(&self, id: &str, attempt: u32, status: TaskStatus) -> Observation {
        Observation::Task {
            node: self.idx(id),
            item: None,
            attempt,
            status,
        }
    }

    fn launch(&self, id: &str, attempt: u32) -> Effect {
        Effect::Launch {
            node: self.idx(id),
            item: None,
            attempt,
        }
    }

    fn abort(&self, id: &str, attempt: u32) -> Effect {
        Effect::Abort {
            node: self.idx(id),
            item: None,
            attempt,
        }
    }

    /// One round; returns its effects.
    fn round(&mut self, obs: &[Observation], now: i64) -> Vec<Effect> {
        let s = step(&self.plan, &self.cfg, &self.state, obs, now);
        self.state = s.state;
        s.effects
    }

    fn phase(&self, id: &str) -> NodePhase {
        self.state.nodes[self.idx(id)].phase
    }
}

fn running() -> TaskStatus {
    TaskStatus::Running { started_at: None }
}

fn recoverable(msg: &str) -> TaskStatus {
    TaskStatus::Failed(Failure::user("USER:Recoverable", msg, true))
}

#[test]
fn a_chain_runs_node_after_node_and_publishes_outputs() {
    let mut r = Run::new(&[vec![], vec![0]], &[], &[], false);
    assert_eq!(
        r.round(&[], 0),
        vec![Effect::PublishStart, r.launch("n0", 0)]
    );
    assert_eq!(r.state.phase, WorkflowPhase::Running);
    assert_eq!(r.round(&[r.task("n0", 0, running())], S), vec![]);
    assert_eq!(r.phase("n0"), NodePhase::Running);
    // The same observation again changes nothing.
    let before = r.state.clone();
    assert_eq!(r.round(&[r.task("n0", 0, running())], S), vec![]);
    assert_eq!(r.state, before);
    assert_eq!(
        r.round(&[r.task("n0", 0, TaskStatus::Succeeded)], 2 * S),
        vec![r.launch("n1", 0)]
    );
    assert_eq!(
        r.round(&[r.task("n1", 0, TaskStatus::Succeeded)], 3 * S),
        vec![Effect::PublishOutputs]
    );
    assert_eq!(r.state.phase, WorkflowPhase::Succeeding);
    // Until the outputs are confirmed, every round asks again (a crash lost the result).
    assert_eq!(r.round(&[], 3 * S), vec![Effect::PublishOutputs]);
    assert_eq!(r.round(&[Observation::OutputsPublished], 4 * S), vec![]);
    assert_eq!(r.state.phase, WorkflowPhase::Succeeded);
    assert!(
        r.state
            .nodes
            .iter()
            .all(|n| n.phase == NodePhase::Succeeded)
    );
}

#[test]
fn an_attempt_the_world_forgot_is_launched_again_with_the_same_id() {
    let mut r = Run::new(&[vec![]], &[], &[], false);
    r.round(&[], 0);
    assert_eq!(
        r.round(&[r.task("n0", 0, TaskStatus::Unknown)], S),
        vec![r.launch("n0", 0)]
    );
    assert_eq!(r.state.nodes[r.idx("n0")].attempt, 0);
}

#[test]
fn a_running_attempt_the_world_forgot_is_lost_and_retried_as_a_system_failure() {
    // Seen running, then unknown to the executor: it ran on a machine this controller
    // cannot look at (a dead replica's). Not relaunched under its id: a new attempt, from
    // the system retry budget.
    let mut r = Run::new(&[vec![]], &[0], &[], false);
    r.round(&[], 0);
    r.round(&[r.task("n0", 0, running())], S);
    assert_eq!(
        r.round(&[r.task("n0", 0, TaskStatus::Unknown)], 2 * S),
        vec![]
    );
    let n = &r.state.nodes[r.idx("n0")];
    assert_eq!((n.phase, n.system_failures), (NodePhase::RetryWait, 1));
    assert_eq!(
        n.error.as_ref().map(|e| e.code.as_str()),
        Some("AttemptLost")
    );
    assert_eq!(r.round(&[], 120 * S), vec![r.launch("n0", 1)]);
}

#[test]
fn recoverable_user_errors_retry_after_a_growing_backoff_then_fail_with_retries_exhausted() {
    let mut r = Run::new(&[vec![]], &[2], &[], false);
    r.round(&[], 0);
    assert_eq!(r.round(&[r.task("n0", 0, recoverable("a"))], S), vec![]);
    let n = &r.state.nodes[r.idx("n0")];
    assert_eq!(
        (n.phase, n.retry_at),
        (NodePhase::RetryWait, Some(S + S / 2))
    );
    let wake = step(&r.plan, &r.cfg, &r.state, &[], S).wake_at;
    assert_eq!(wake, Some(S + S / 2));
    assert_eq!(r.round(&[], S + S / 4), vec![], "not before the backoff");
    assert_eq!(r.round(&[], S + S / 2), vec![r.launch("n0", 1)]);
    r.round(&[r.task("n0", 1, recoverable("b"))], 2 * S);
    assert_eq!(
        r.state.nodes[r.idx("n0")].retry_at,
        Some(3 * S),
        "backoff doubles"
    );
    assert_eq!(r.round(&[], 3 * S), vec![r.launch("n0", 2)]);
    r.round(&[r.task("n0", 2, recoverable("c"))], 4 * S);
    assert_eq!(r.phase("n0"), NodePhase::Failed);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
    let err = r.state.error.clone().unwrap();
    assert_eq!(err.code, "RetriesExhausted|USER:Recoverable");
    assert!(err.message.ends_with("Last Error: c"), "{}", err.message);
}

#[test]
fn non_recoverable_user_errors_fail_at_once_despite_retries() {
    let mut r = Run::new(&[vec![]], &[5], &[], false);
    r.round(&[], 0);
    let f = Failure::user("USER:RuntimeError", "the user's message", false);
    r.round(&[r.task("n0", 0, TaskStatus::Failed(f.clone()))], S);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
    assert_eq!(r.state.error, Some(f));
}

#[test]
fn system_errors_use_their_own_budget() {
    let mut r = Run::new(&[vec![]], &[0], &[], false);
    r.round(&[], 0);
    let sys = TaskStatus::Failed(Failure::system("Interrupted", "killed", true));
    let mut now = S;
    for attempt in 0..3 {
        r.round(&[r.task("n0", attempt, sys.clone())], now);
        assert_eq!(
            r.phase("n0"),
            NodePhase::RetryWait,
            "system failure {attempt}"
        );
        now += 60 * S;
        assert_eq!(r.round(&[], now), vec![r.launch("n0", attempt + 1)]);
    }
    r.round(&[r.task("n0", 3, sys)], now + S);
    assert_eq!(r.phase("n0"), NodePhase::Failed);
    assert_eq!(r.state.error.as_ref().unwrap().kind, ErrorKind::System);
}

#[test]
fn fail_immediately_aborts_the_running_siblings() {
    let mut r = Run::new(&[vec![], vec![], vec![0, 1]], &[], &[], false);
    let fx = r.round(&[], 0);
    assert_eq!(fx[1..], [r.launch("n0", 0), r.launch("n1", 0)]);
    let f = Failure::user("USER:RuntimeError", "boom", false);
    let fx = r.round(
        &[
            r.task("n0", 0, TaskStatus::Failed(f)),
            r.task("n1", 0, running()),
        ],
        S,
    );
    assert_eq!(fx, vec![r.abort("n1", 0)]);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
    assert_eq!(r.phase("n1"), NodePhase::Aborted);
    assert_eq!(r.phase("n2"), NodePhase::NotYetStarted);
}

#[test]
fn stopping_aborts_a_launch_whose_round_never_committed() {
    // n2 waits for n1; n0 is independent.
    let mut r = Run::new(&[vec![], vec![], vec![1]], &[], &[], false);
    r.round(&[], 0);
    let committed = r.state.clone();
    // This round launches n2, and then its commit is lost (a crash).
    let fx = r.round(&[r.task("n1", 0, TaskStatus::Succeeded)], S);
    assert!(fx.contains(&r.launch("n2", 0)));
    r.state = committed;
    // The next round sees n1 succeed and n0 fail at once: the execution fails before n2
    // starts again, so the n2 attempt the lost round launched must be stopped.
    let f = Failure::user("USER:RuntimeError", "boom", false);
    let fx = r.round(
        &[
            r.task("n1", 0, TaskStatus::Succeeded),
            r.task("n0", 0, TaskStatus::Failed(f)),
        ],
        2 * S,
    );
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
    assert_eq!(fx, vec![r.abort("n2", 0)]);
}

#[test]
fn a_round_that_fails_the_execution_does_not_start_the_retry_it_made_due() {
    // n0 and n1 are independent; n1 may retry once.
    let mut r = Run::new(&[vec![], vec![]], &[0, 1], &[], false);
    r.round(&[], 0);
    r.round(&[r.task("n1", 0, recoverable("flaky"))], S);
    assert_eq!(r.phase("n1"), NodePhase::RetryWait);
    // Long after n1's backoff, n0 fails for good in the same round n1's retry falls due:
    // the retry is stopped, and never started (starts happen after the commit, so a
    // start left beside its own abort would run after it).
    let f = Failure::user("USER:RuntimeError", "boom", false);
    let fx = r.round(&[r.task("n0", 0, TaskStatus::Failed(f))], 600 * S);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
    assert!(!fx.contains(&r.launch("n1", 1)), "{fx:?}");
}

#[test]
fn failing_after_complete_still_starts_a_node_made_ready_in_the_same_round() {
    // n2 waits for n1; n0 is independent and fails in the round n1 succeeds.
    let mut r = Run::new(&[vec![], vec![], vec![1]], &[], &[], true);
    r.round(&[], 0);
    let f = Failure::user("USER:RuntimeError", "boom", false);
    let fx = r.round(
        &[
            r.task("n0", 0, TaskStatus::Failed(f)),
            r.task("n1", 0, TaskStatus::Succeeded),
        ],
        S,
    );
    assert_eq!(fx, vec![r.launch("n2", 0)]);
    assert_eq!(r.state.phase, WorkflowPhase::Running);
    r.round(&[r.task("n2", 0, TaskStatus::Succeeded)], 2 * S);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
}

#[test]
fn fail_after_executable_nodes_complete_lets_independent_nodes_finish() {
    let mut r = Run::new(&[vec![], vec![], vec![0]], &[], &[], true);
    r.round(&[], 0);
    let f = Failure::user("USER:RuntimeError", "boom", false);
    let fx = r.round(
        &[
            r.task("n0", 0, TaskStatus::Failed(f.clone())),
            r.task("n1", 0, running()),
        ],
        S,
    );
    assert_eq!(fx, vec![]);
    assert_eq!(r.state.phase, WorkflowPhase::Running);
    assert_eq!(r.phase("n2"), NodePhase::Skipped);
    r.round(&[r.task("n1", 0, TaskStatus::Succeeded)], 2 * S);
    assert_eq!(r.phase("n1"), NodePhase::Succeeded);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
    assert_eq!(r.state.error, Some(f));
}

#[test]
fn abort_stops_every_live_attempt() {
    let mut r = Run::new(&[vec![], vec![]], &[], &[], false);
    r.round(&[], 0);
    let fx = r.round(
        &[Observation::AbortRequested {
            cause: "user".into(),
        }],
        S,
    );
    assert_eq!(fx, vec![r.abort("n0", 0), r.abort("n1", 0)]);
    assert_eq!(r.state.phase, WorkflowPhase::Aborted);
    assert_eq!(r.state.abort_cause.as_deref(), Some("user"));
    assert_eq!(
        r.round(&[r.task("n0", 0, TaskStatus::Succeeded)], 2 * S),
        vec![]
    );
    assert_eq!(
        r.phase("n0"),
        NodePhase::Aborted,
        "terminal executions do not move"
    );
}

#[test]
fn an_attempt_past_its_timeout_is_aborted_and_retried() {
    let mut r = Run::new(&[vec![]], &[1], &[10], false);
    r.round(&[], 0);
    r.round(
        &[r.task(
            "n0",
            0,
            TaskStatus::Running {
                started_at: Some(S),
            },
        )],
        S,
    );
    assert_eq!(
        step(&r.plan, &r.cfg, &r.state, &[], 2 * S).wake_at,
        Some(11 * S)
    );
    assert_eq!(
        r.round(&[r.task("n0", 0, running())], 11 * S),
        vec![r.abort("n0", 0)]
    );
    let n = &r.state.nodes[r.idx("n0")];
    assert_eq!(n.phase, NodePhase::RetryWait);
    assert_eq!(n.error.as_ref().unwrap().code, "TimeoutExpired");
}

#[test]
fn max_parallelism_launches_in_plan_order() {
    let mut r = Run::new(&[vec![], vec![], vec![], vec![]], &[], &[], false);
    r.cfg.max_parallelism = 2;
    let fx = r.round(&[], 0);
    assert_eq!(fx[1..], [r.launch("n0", 0), r.launch("n1", 0)]);
    let fx = r.round(
        &[
            r.task("n0", 0, TaskStatus::Succeeded),
            r.task("n1", 0, running()),
        ],
        S,
    );
    assert_eq!(fx, vec![r.launch("n2", 0)]);
}

#[test]
fn the_workflow_timeout_ends_the_execution() {
    let mut r = Run::new(&[vec![]], &[], &[], false);
    r.cfg.workflow_timeout = Some(100 * S);
    r.round(&[], 0);
    assert_eq!(
        step(&r.plan, &r.cfg, &r.state, &[], S).wake_at,
        Some(100 * S)
    );
    let fx = r.round(&[r.task("n0", 0, running())], 100 * S);
    assert_eq!(fx, vec![r.abort("n0", 0)]);
    assert_eq!(r.state.phase, WorkflowPhase::TimedOut);
}

#[test]
fn a_binding_that_cannot_be_resolved_fails_the_node_without_retrying() {
    let mut r = Run::new(&[vec![]], &[3], &[], false);
    r.round(&[], 0);
    r.round(
        &[Observation::LaunchRejected {
            node: r.idx("n0"),
            item: None,
            attempt: 0,
            failure: Failure::system("BindingResolutionFailure", "no such output", false),
        }],
        S,
    );
    assert_eq!(r.phase("n0"), NodePhase::Failed);
    assert_eq!(r.state.phase, WorkflowPhase::Failed);
}
