//! The storage port's conformance suite. Every adapter runs the same checks through
//! [`conformance_tests!`], given an expression that opens a fresh, empty store:
//!
//! ```ignore
//! contrail_store_conformance::conformance_tests!(std::sync::Arc::new(MyStore::fresh()));
//! ```
//!
//! Each check is a plain function over `Arc<dyn Store>`, so a failure names the check and
//! the adapter's test module.

mod catalog;
mod entities;
mod executions;
mod leases;
mod outbox;

pub use catalog::*;
pub use entities::*;
pub use executions::*;
pub use leases::*;
pub use outbox::*;

use contrail_store::{ExecKey, ListQuery};

/// Generates one `#[test]` per check for the adapter `$fresh` opens.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:expr) => {
        $crate::conformance_tests!(@each $fresh;
            entities_are_immutable,
            concurrent_creates_create_once,
            entity_lists_filter_sort_and_page,
            activating_a_launch_plan_deactivates_the_others,
            schedules_follow_their_launch_plans_state_and_keep_the_latest_fire,
            projects_and_named_entity_metadata,
            matchable_attributes_are_kept_per_scope_and_resource,
            commits_are_conditional_and_atomic,
            abort_requests_are_recorded_once,
            execution_lists_filter_and_page,
            node_and_task_lists_filter_and_page,
            signals_are_created_once_and_set,
            first_artifact_writer_wins_and_uses_are_lineage,
            reservations_are_leases,
            datasets_and_tags,
            claims_take_free_and_expired_leases_once,
            fenced_commits_need_the_current_epoch,
            renewals_keep_only_leases_still_held,
            terminal_commits_drop_the_lease,
            replicas_are_listed_with_their_leases,
            concurrent_claims_grant_each_execution_once,
            notifications_are_written_with_their_round_and_claimed_until_delivered
        );
    };
    (@each $fresh:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                let store: std::sync::Arc<dyn contrail_store::Store> = $fresh;
                $crate::$check(store);
            }
        )*
    };
}

pub(crate) fn key(name: &str) -> ExecKey {
    ExecKey {
        project: "p".into(),
        domain: "d".into(),
        name: name.into(),
    }
}

pub(crate) fn query(limit: u32) -> ListQuery {
    ListQuery {
        project: "p".into(),
        domain: "d".into(),
        name: None,
        filters: vec![],
        sort: None,
        limit,
        offset: 0,
    }
}
