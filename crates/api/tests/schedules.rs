//! The scheduler in process, over the real API and a SQLite store, with the rounds' clock
//! in the test's hands: cron and fixed-rate fires, kickoff inputs, catch-up and its limit,
//! a crash between creating a fire's execution and recording it, and deactivation.

mod common;

use common::*;
use contrail_api::Api;
use contrail_api::schedule::{Scheduler, execution_name};
use contrail_idl::admin as a;
use contrail_idl::core as c;
use contrail_idl::service::admin_service_server::AdminService;
use contrail_store::ScheduleStore;
use tonic::{Code, Request};

fn cron(expr: &str, kickoff: &str) -> a::Schedule {
    a::Schedule {
        schedule_expression: Some(a::schedule::ScheduleExpression::CronSchedule(
            a::CronSchedule {
                schedule: expr.into(),
                offset: String::new(),
            },
        )),
        kickoff_time_input_arg: kickoff.into(),
    }
}

fn fixed_rate(minutes: u32) -> a::Schedule {
    a::Schedule {
        schedule_expression: Some(a::schedule::ScheduleExpression::Rate(a::FixedRate {
            value: minutes,
            unit: a::FixedRateUnit::Minute as i32,
        })),
        kickoff_time_input_arg: String::new(),
    }
}

async fn create_launch_plan(
    api: &Api,
    name: &str,
    schedule: a::Schedule,
) -> Result<(), tonic::Status> {
    api.create_launch_plan(Request::new(a::LaunchPlanCreateRequest {
        id: Some(id(c::ResourceType::LaunchPlan, name)),
        spec: Some(a::LaunchPlanSpec {
            workflow_id: Some(id(c::ResourceType::Workflow, name)),
            entity_metadata: Some(a::LaunchPlanMetadata {
                schedule: Some(schedule),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }))
    .await
    .map(|_| ())
}

async fn set_state(api: &Api, name: &str, state: a::LaunchPlanState) {
    api.update_launch_plan(Request::new(a::LaunchPlanUpdateRequest {
        id: Some(id(c::ResourceType::LaunchPlan, name)),
        state: state as i32,
    }))
    .await
    .unwrap();
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// Registers a workflow of no inputs with a launch plan on `schedule`, activates it and
/// returns its activation time (whole seconds).
async fn active_schedule(w: &World, name: &str, schedule: a::Schedule) -> i64 {
    register_workflow(&w.api, name, &[]).await;
    create_launch_plan(&w.api, name, schedule).await.unwrap();
    set_state(&w.api, name, a::LaunchPlanState::Active).await;
    w.activated(name)
}

#[tokio::test]
async fn a_cron_schedule_fires_each_matching_minute_once_with_its_kickoff_time() {
    let w = world();
    register_workflow(&w.api, "daily", &[("kickoff", c::SimpleType::Datetime)]).await;
    create_launch_plan(&w.api, "daily", cron("* * * * *", "kickoff"))
        .await
        .unwrap();
    let scheduler = Scheduler::new(w.api.clone(), 100);
    assert!(
        scheduler.round(i64::MAX / 2).unwrap().fired.is_empty(),
        "inactive"
    );
    set_state(&w.api, "daily", a::LaunchPlanState::Active).await;
    let start = w.activated("daily");
    let minute = |k: i64| (start / 60 + k) * 60;

    // Three minutes later: the three minute marks since the activation.
    let now = (start + 180) * NANOS;
    let round = scheduler.round(now).unwrap();
    let key = entity("daily");
    let expected: Vec<String> = (1..=3).map(|k| execution_name(&key, minute(k))).collect();
    assert_eq!(round.fired, expected);
    assert_eq!(round.next_due, Some(minute(4) * NANOS));
    for (k, name) in (1..=3).zip(&expected) {
        let ex = w.execution(name).await.expect("created");
        let meta = ex.spec.unwrap().metadata.unwrap();
        assert_eq!(
            meta.mode,
            a::execution_metadata::ExecutionMode::Scheduled as i32
        );
        assert_eq!(meta.scheduled_at.unwrap().seconds, minute(k));
    }
    // The kickoff input is the scheduled time, not the time of the round.
    let data = w
        .api
        .get_execution_data(Request::new(a::WorkflowExecutionGetDataRequest {
            id: Some(c::WorkflowExecutionIdentifier {
                project: "flytesnacks".into(),
                domain: "development".into(),
                name: expected[0].clone(),
                org: String::new(),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let kickoff = &data.full_inputs.unwrap().literals["kickoff"];
    let Some(c::literal::Value::Scalar(scalar)) = &kickoff.value else {
        panic!("kickoff is not a scalar: {kickoff:?}")
    };
    let Some(c::scalar::Value::Primitive(c::Primitive {
        value: Some(c::primitive::Value::Datetime(at)),
    })) = &scalar.value
    else {
        panic!("kickoff is not a datetime: {scalar:?}")
    };
    assert_eq!(at.seconds, minute(1));

    // The same round again, or a restarted scheduler, fires nothing new.
    assert!(scheduler.round(now).unwrap().fired.is_empty());
    let restarted = Scheduler::new(w.api.clone(), 100);
    assert!(
        restarted
            .round(minute(4) * NANOS - 1)
            .unwrap()
            .fired
            .is_empty()
    );
    assert_eq!(w.executions().await, sorted(expected));
}

#[tokio::test]
async fn a_fixed_rate_fires_once_per_period_counted_from_the_activation() {
    let w = world();
    let start = active_schedule(&w, "rate", fixed_rate(1)).await;
    let scheduler = Scheduler::new(w.api.clone(), 100);
    let key = entity("rate");
    let mut fired = Vec::new();
    for k in 1..=3 {
        // Just before the period ends nothing fires; at its end, one.
        let early = scheduler.round((start + 60 * k - 1) * NANOS).unwrap();
        assert!(early.fired.is_empty(), "period {k} fired early");
        assert_eq!(early.next_due, Some((start + 60 * k) * NANOS));
        let round = scheduler.round((start + 60 * k) * NANOS).unwrap();
        assert_eq!(round.fired, vec![execution_name(&key, start + 60 * k)]);
        fired.extend(round.fired);
    }
    assert_eq!(w.executions().await, sorted(fired));
}

#[tokio::test]
async fn downtime_is_caught_up_to_the_limit_and_a_fire_created_before_a_crash_is_not_doubled() {
    let w = world();
    let start = active_schedule(&w, "catchup", cron("* * * * *", "")).await;
    let minute = |k: i64| (start / 60 + k) * 60;
    let key = entity("catchup");
    let scheduler = Scheduler::new(w.api.clone(), 3);
    assert_eq!(
        scheduler.round(minute(1) * NANOS).unwrap().fired,
        vec![execution_name(&key, minute(1))]
    );

    // Ten minutes down, a catch-up limit of three: the three latest fires, oldest first.
    let round = scheduler.round(minute(11) * NANOS).unwrap();
    let caught_up: Vec<String> = (9..=11).map(|k| execution_name(&key, minute(k))).collect();
    assert_eq!(round.fired, caught_up);

    // A crash after a round created the next fire's execution and before it recorded the
    // fire: the restarted scheduler creates the same name, is told it exists, and moves on.
    let next = execution_name(&key, minute(12));
    w.api
        .create_execution(Request::new(a::ExecutionCreateRequest {
            project: "flytesnacks".into(),
            domain: "development".into(),
            name: next.clone(),
            spec: Some(a::ExecutionSpec {
                launch_plan: Some(id(c::ResourceType::LaunchPlan, "catchup")),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let restarted = Scheduler::new(w.api.clone(), 3);
    assert_eq!(
        restarted.round(minute(12) * NANOS).unwrap().fired,
        vec![next.clone()]
    );
    assert!(
        restarted
            .round(minute(12) * NANOS)
            .unwrap()
            .fired
            .is_empty()
    );
    // A stale fire record never moves the schedule back.
    w.store.record_fire(&key, 0).unwrap();
    assert!(
        restarted
            .round(minute(12) * NANOS)
            .unwrap()
            .fired
            .is_empty()
    );

    let mut all = vec![execution_name(&key, minute(1))];
    all.extend(caught_up);
    all.push(next);
    assert_eq!(w.executions().await, sorted(all));
}

#[tokio::test]
async fn a_deactivated_schedule_stops_and_a_reactivated_one_starts_from_its_activation() {
    let w = world();
    let start = active_schedule(&w, "paused", cron("* * * * *", "")).await;
    let scheduler = Scheduler::new(w.api.clone(), 100);
    assert_eq!(
        scheduler.round((start + 60) * NANOS).unwrap().fired.len(),
        1
    );
    set_state(&w.api, "paused", a::LaunchPlanState::Inactive).await;
    let round = scheduler.round((start + 3_600) * NANOS).unwrap();
    assert!(round.fired.is_empty());
    assert_eq!(round.next_due, None);
    assert_eq!(w.executions().await.len(), 1);
    // Reactivated: no backfill of the hour it was inactive.
    set_state(&w.api, "paused", a::LaunchPlanState::Active).await;
    let again = w.activated("paused");
    assert!(scheduler.round(again * NANOS).unwrap().fired.is_empty());
}

#[tokio::test]
async fn a_schedule_the_launch_plan_cannot_satisfy_is_refused_naming_the_field() {
    let w = world();
    register_workflow(
        &w.api,
        "needs",
        &[
            ("kickoff", c::SimpleType::Datetime),
            ("n", c::SimpleType::Integer),
        ],
    )
    .await;
    let e = create_launch_plan(&w.api, "needs", cron("@hourly", "kickoff"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("'n'"), "{}", e.message());
    let e = create_launch_plan(&w.api, "needs", cron("@hourly", "n"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("kickoff_time_input_arg"),
        "{}",
        e.message()
    );
    let e = create_launch_plan(&w.api, "needs", cron("@every soon", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("cron_schedule.schedule"),
        "{}",
        e.message()
    );
}
