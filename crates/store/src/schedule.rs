//! Table `schedules`: the launch-plan versions that carry a schedule, and the scheduled
//! time of each one's latest fire. Whether a schedule runs is the launch plan's own state
//! (ACTIVE), so activating and deactivating need nothing here beyond the first mark.

use crate::{EntityKey, Result};

/// An active launch plan with a schedule, as the scheduler reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    pub key: EntityKey,
    /// The launch plan's spec (`admin.LaunchPlanSpec`), which holds the schedule.
    pub spec: Vec<u8>,
    /// When the launch plan was last activated (its `updated_at`), in nanoseconds.
    pub activated_at: i64,
    /// The scheduled time of its latest fire, in nanoseconds (None: never fired).
    pub last_fire: Option<i64>,
}

pub trait ScheduleStore: Send + Sync + 'static {
    /// Marks a launch-plan version as scheduled (idempotent).
    fn add_schedule(&self, key: &EntityKey) -> Result<()>;
    /// Every scheduled launch-plan version whose launch plan is ACTIVE.
    fn active_schedules(&self) -> Result<Vec<ScheduleRecord>>;
    /// Records a fire at the scheduled time `at` (nanoseconds) unless a later one is
    /// recorded already.
    fn record_fire(&self, key: &EntityKey, at: i64) -> Result<()>;
}
