//! Scenario tests of the real controller and engine through the in-process harness: each
//! test drives rounds and the fake executor, and asserts what the store and blobs hold.

mod common;

use common::*;
use contrail_controller::Config;
use contrail_engine::{Failure, TaskStatus};
use contrail_idl::{admin, core};
use contrail_testkit::{CommitFault, RunState};

use core::node_execution::Phase as NodePhase;
use core::workflow_execution::Phase;

/// A workflow of one task node `n0`.
fn one_task() -> core::CompiledWorkflowClosure {
    workflow(vec![task_node("n0", &[], 0, false)], false)
}

/// A workflow of `n0` then `n1`, which takes `n0`'s output.
fn chain() -> core::CompiledWorkflowClosure {
    workflow(
        vec![
            task_node("n0", &[], 0, false),
            task_node("n1", &["n0".into()], 0, false),
        ],
        false,
    )
}

#[test]
fn a_chain_of_tasks_passes_data_along_and_publishes_the_outputs() {
    let h = Harness::new(cfg());
    let wf = chain();
    let k = h.create("e1", &wf, &inputs(10), admin::ExecutionSpec::default());
    run_to_end(&h, &k);
    assert_eq!(h.phase(&k), Phase::Succeeded);
    let out = h.outputs(&k).unwrap();
    // n0 = 10 + 1; n1 = 11 + 1.
    assert_eq!(as_int(&out.literals["o_n0"]), Some(11));
    assert_eq!(as_int(&out.literals["o_n1"]), Some(12));
}

#[test]
fn a_user_failure_is_retried_under_a_new_attempt_within_the_budget() {
    let h = Harness::new(cfg());
    let wf = workflow(vec![task_node("n0", &[], 1, false)], false);
    let k = h.create("e1", &wf, &inputs(1), admin::ExecutionSpec::default());
    h.round(&k);
    let first = live_ids(&h);
    assert_eq!(first.len(), 1);
    let fail = || TaskStatus::Failed(Failure::user("Boom", "boom", true));
    h.executor.finish(&first[0], fail(), None);
    h.round(&k);
    assert_eq!(h.node_phase(&k, "n0"), Some(NodePhase::Running));
    h.clock.advance(10 * S);
    h.round(&k);
    let second = live_ids(&h);
    assert_eq!(second.len(), 1);
    assert_ne!(second, first, "a retry is a new attempt id");
    h.executor.finish(&second[0], fail(), None);
    h.round(&k);
    assert_eq!(h.phase(&k), Phase::Failed);
    let e = h.error(&k).unwrap();
    assert!(e.code.contains("Boom"), "{e:?}");
}

#[test]
fn a_queued_attempt_the_executor_lost_is_launched_again_under_its_id() {
    let h = Harness::new(cfg());
    let wf = one_task();
    let k = h.create("e1", &wf, &inputs(1), admin::ExecutionSpec::default());
    h.round(&k);
    let id = live_ids(&h).remove(0);
    h.executor.vanish(&id);
    h.round(&k);
    assert_eq!(
        live_ids(&h),
        vec![id.clone()],
        "relaunched under the same id"
    );
    assert_eq!(
        h.executor.runs()[&id].starts,
        2,
        "a second run of the same id"
    );
    run_to_end(&h, &k);
    assert_eq!(h.phase(&k), Phase::Succeeded);
}

#[test]
fn a_running_attempt_that_vanished_is_retried_under_a_new_id_as_a_system_failure() {
    let h = Harness::new(cfg());
    let wf = one_task();
    let k = h.create("e1", &wf, &inputs(1), admin::ExecutionSpec::default());
    h.round(&k);
    let id = live_ids(&h).remove(0);
    h.executor.start(&id);
    h.round(&k);
    h.executor.vanish(&id);
    h.round(&k);
    h.clock.advance(10 * S);
    h.round(&k);
    let now = live_ids(&h);
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], id);
    run_to_end(&h, &k);
    assert_eq!(h.phase(&k), Phase::Succeeded);
}

#[test]
fn a_round_whose_commit_fails_starts_nothing() {
    let mut h = Harness::new(cfg());
    let wf = one_task();
    let k = h.create("e1", &wf, &inputs(1), admin::ExecutionSpec::default());
    // The round decides to launch n0, then its commit fails: as if the process died there.
    h.store.inject(CommitFault::Error);
    h.round(&k);
    assert_eq!(h.executor.launches(), 0, "launched before the commit");
    h.restart();
    h.round(&k);
    let runs = h.executor.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(h.executor.launches(), 1);
    run_to_end(&h, &k);
    assert_eq!(h.phase(&k), Phase::Succeeded);
    assert!(h.executor.violations().is_empty());
}

#[test]
fn a_crash_between_the_commit_and_the_launch_launches_on_restart() {
    let mut h = Harness::new(cfg());
    let wf = one_task();
    let k = h.create("e1", &wf, &inputs(1), admin::ExecutionSpec::default());
    h.executor.refuse_next_launches(1);
    h.round(&k);
    assert!(h.executor.runs().is_empty());
    assert_eq!(
        h.node_phase(&k, "n0"),
        Some(NodePhase::Queued),
        "the launch was committed"
    );
    h.restart();
    h.round(&k);
    let runs = h.executor.runs();
    assert_eq!(
        runs.len(),
        1,
        "the recorded attempt, launched under its own id"
    );
    assert!(runs.values().all(|r| r.starts == 1));
    run_to_end(&h, &k);
    assert_eq!(h.phase(&k), Phase::Succeeded);
}

fn notify(phases: &[Phase], to: &str) -> admin::ExecutionSpec {
    admin::ExecutionSpec {
        notification_overrides: Some(admin::execution_spec::NotificationOverrides::Notifications(
            admin::NotificationList {
                notifications: vec![admin::Notification {
                    phases: phases.iter().map(|p| *p as i32).collect(),
                    r#type: Some(admin::notification::Type::Email(admin::EmailNotification {
                        recipients_email: vec![to.into()],
                        ..Default::default()
                    })),
                }],
            },
        )),
        ..Default::default()
    }
}

#[test]
fn a_terminal_phase_writes_its_notification_with_the_commit_once_across_a_crash() {
    let mut h = Harness::new(cfg());
    let wf = one_task();
    let k = h.create(
        "e1",
        &wf,
        &inputs(1),
        notify(&[Phase::Succeeded], "team@example.com"),
    );
    let quiet = h.create(
        "e2",
        &wf,
        &inputs(1),
        notify(&[Phase::Failed], "team@example.com"),
    );
    h.round(&k);
    h.round(&quiet);
    assert!(
        h.store.notifications().is_empty(),
        "nothing before a listed phase"
    );
    succeed_all(&h);
    // The round that succeeds the execution loses its acknowledgement (it committed), and
    // the controller restarts: the phase is reported once.
    h.store.inject(CommitFault::Unacknowledged);
    h.round(&k);
    h.restart();
    run_to_end(&h, &k);
    run_to_end(&h, &quiet);
    assert_eq!(h.phase(&k), Phase::Succeeded);
    assert_eq!(h.phase(&quiet), Phase::Succeeded);
    let sent = h.store.notifications();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].exec, k);
    assert_eq!(sent[0].phase, Phase::Succeeded as i32);
    assert_eq!(
        (sent[0].channel.as_str(), sent[0].recipients.clone()),
        ("email", vec!["team@example.com".to_string()])
    );
}

#[test]
fn a_commit_whose_acknowledgement_was_lost_is_not_applied_twice() {
    let h = Harness::new(cfg());
    let wf = one_task();
    let k = h.create("e1", &wf, &inputs(1), admin::ExecutionSpec::default());
    h.store.inject(CommitFault::Unacknowledged);
    h.round(&k);
    h.store.inject(CommitFault::Conflict);
    h.round(&k);
    run_to_end(&h, &k);
    assert_eq!(h.phase(&k), Phase::Succeeded);
    assert_eq!(h.executor.runs().len(), 1);
}

#[test]
fn a_cached_task_runs_once_and_a_second_execution_reuses_its_outputs() {
    let h = Harness::new(cfg());
    let wf = workflow(vec![task_node("n0", &[], 0, true)], false);
    let first = h.create("e1", &wf, &inputs(5), admin::ExecutionSpec::default());
    run_to_end(&h, &first);
    assert_eq!(h.phase(&first), Phase::Succeeded);
    let second = h.create("e2", &wf, &inputs(5), admin::ExecutionSpec::default());
    run_to_end(&h, &second);
    assert_eq!(h.phase(&second), Phase::Succeeded);
    assert_eq!(
        h.executor.runs().len(),
        1,
        "the second execution hit the cache"
    );
    assert_eq!(
        as_int(&h.outputs(&second).unwrap().literals["o_n0"]),
        Some(7)
    );
}

#[test]
fn failing_fast_aborts_the_attempts_still_running() {
    let h = Harness::new(cfg());
    let wf = workflow(
        vec![
            task_node("n0", &[], 0, false),
            task_node("n1", &[], 0, false),
        ],
        false,
    );
    let k = h.create("e1", &wf, &inputs(1), admin::ExecutionSpec::default());
    h.round(&k);
    let ids = live_ids(&h);
    assert_eq!(ids.len(), 2);
    h.executor.finish(
        &ids[0],
        TaskStatus::Failed(Failure::user("Boom", "boom", false)),
        None,
    );
    h.round(&k);
    assert_eq!(h.phase(&k), Phase::Failed);
    let other = &h.executor.runs()[&ids[1]];
    assert!(other.aborted, "the other attempt was aborted");
    assert!(!matches!(other.state, RunState::Queued | RunState::Running));
}

#[test]
fn a_blob_write_failure_fails_the_round_and_the_next_round_converges() {
    let h = Harness::new(cfg());
    let wf = chain();
    let k = h.create("e1", &wf, &inputs(3), admin::ExecutionSpec::default());
    h.round(&k);
    succeed_all(&h);
    // n1's inputs are written when it launches: that write tears.
    h.objects.tear_next_writes(1);
    h.round(&k);
    run_to_end(&h, &k);
    assert_eq!(h.phase(&k), Phase::Succeeded);
    assert_eq!(
        as_int(&h.outputs(&k).unwrap().literals["o_n1"]),
        Some(3 + 1 + 1)
    );
}

/// A dynamic node's generated workflow: one task `c0` over the parent's input `x`.
#[test]
fn an_execution_failed_by_a_corrupt_dynamic_workflow_aborts_the_children_still_running() {
    use contrail_blob::layout;
    use prost::Message;
    let mut h = Harness::new(cfg());
    let wf = one_task();
    let k = h.create("e1", &wf, &inputs(2), admin::ExecutionSpec::default());
    h.round(&k);
    let parent = live_ids(&h).remove(0);
    let wdir = layout::workflow_dir("p", "d", "e1");
    let dir = layout::attempt_dir(&wdir, "n0", 0);
    h.blob
        .put(&layout::futures_in(&dir), &futures(0).encode_to_vec())
        .unwrap();
    h.executor.finish(&parent, TaskStatus::Dynamic, None);
    for _ in 0..3 {
        h.round(&k);
    }
    let child: Vec<String> = live_ids(&h);
    assert_eq!(child.len(), 1, "the dynamic workflow's task runs");
    h.executor.start(&child[0]);
    // Its compiled workflow is damaged; a restarted controller cannot rebuild the plan.
    h.blob
        .put(
            &layout::dynamic_compiled_in(&dir),
            b"\xff\xff not a closure",
        )
        .unwrap();
    h.restart();
    h.round(&k);
    assert_eq!(h.phase(&k), Phase::Failed);
    assert!(h.error(&k).unwrap().message.contains("dynamic workflow"));
    let run = &h.executor.runs()[&child[0]];
    assert!(run.aborted, "the child still running was aborted");
}

#[test]
fn an_outage_longer_than_the_poison_pill_limit_does_not_fail_the_execution() {
    let h = Harness::new(Config {
        max_round_failures: 2,
        ..cfg()
    });
    let k = h.create(
        "e1",
        &one_task(),
        &inputs(1),
        admin::ExecutionSpec::default(),
    );
    // The database refuses five commits in a row: transient, retried, never a poison pill.
    for _ in 0..5 {
        h.store.inject(CommitFault::Error);
        h.round(&k);
        assert_eq!(h.phase(&k), Phase::Queued);
    }
    run_to_end(&h, &k);
    assert_eq!(h.phase(&k), Phase::Succeeded);
}
