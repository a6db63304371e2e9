//! The scheduler: launch plans with a schedule fire while they are ACTIVE.
//!
//! Level-triggered like the controller. Each round reads every active scheduled launch
//! plan with the scheduled time of its latest fire (`ScheduleStore`), computes the fires
//! due since then (or since its activation), creates one execution per fire through the
//! API's own validation, and records the fire. Nothing lives only in memory: a crash
//! between creating an execution and recording its fire is repaired by the next round,
//! which creates the same execution again and is told it exists, because an execution's
//! name is a function of the launch plan and the scheduled time (Flyte's rule). Two
//! replicas running rounds at once cannot double a fire for the same reason.
//!
//! Catch-up follows Flyte: after downtime, every fire missed since the later of the
//! activation and the latest fire is created, oldest first, but at most `max_catch_up` of
//! them (the most recent); older ones are skipped and logged.

use crate::Api;
use crate::error::{ApiError, ApiResult};
use contrail_idl::admin as a;
use contrail_idl::core as c;
use contrail_store::{EntityKey, ScheduleRecord};
use prost::Message;
use std::time::Duration;

const NANOS: i64 = 1_000_000_000;

/// How often a schedule fires.
#[derive(Debug, Clone)]
pub enum Cadence {
    /// A 5-field cron expression or an `@` descriptor, evaluated in UTC.
    Cron(Box<croner::Cron>),
    /// A constant period in whole seconds (`FixedRate`, `@every <duration>`), counted from
    /// the activation or the latest fire.
    Every(i64),
}

impl Cadence {
    /// The cadence of a launch plan's schedule; the error says what is wrong with it.
    // `cron_expression` is deprecated in the schema, and still what old clients send.
    #[allow(deprecated)]
    pub fn of(schedule: &a::Schedule) -> Result<Cadence, String> {
        use a::schedule::ScheduleExpression as E;
        match &schedule.schedule_expression {
            None => Err("set cron_expression, cron_schedule or rate".into()),
            Some(E::CronExpression(expr)) => Cadence::cron(expr),
            Some(E::CronSchedule(cs)) => Cadence::cron(&cs.schedule),
            Some(E::Rate(rate)) => {
                let unit = match a::FixedRateUnit::try_from(rate.unit) {
                    Ok(a::FixedRateUnit::Minute) => 60,
                    Ok(a::FixedRateUnit::Hour) => 3_600,
                    Ok(a::FixedRateUnit::Day) => 86_400,
                    Err(_) => return Err(format!("rate.unit {} is not a unit", rate.unit)),
                };
                if rate.value == 0 {
                    return Err("rate.value must be positive".into());
                }
                Ok(Cadence::Every(i64::from(rate.value) * unit))
            }
        }
    }

    /// Cron syntax as Flyte's scheduler takes it: five fields, `@yearly`, `@annually`,
    /// `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`, or `@every <duration>`
    /// (whole seconds, at least one).
    pub fn cron(expr: &str) -> Result<Cadence, String> {
        let expr = expr.trim();
        if expr.len() > 256 {
            return Err("longer than 256 characters".into());
        }
        if let Some(period) = expr.strip_prefix("@every") {
            let period = period.trim();
            let d = humantime::parse_duration(period)
                .map_err(|e| format!("'{period}' is not a duration: {e}"))?;
            return Ok(Cadence::Every(d.as_secs().clamp(1, i64::MAX as u64) as i64));
        }
        let expr = if expr == "@midnight" { "@daily" } else { expr };
        if expr.starts_with("TZ=") || expr.starts_with("CRON_TZ=") {
            return Err("time zones are not supported: schedules run in UTC".into());
        }
        if !expr.starts_with('@') && expr.split_whitespace().count() != 5 {
            return Err(format!("'{expr}' does not have exactly 5 fields"));
        }
        expr.parse::<croner::Cron>()
            .map(|c| Cadence::Cron(Box::new(c)))
            .map_err(|e| format!("'{expr}' is not a cron expression: {e}"))
    }

    /// The fires in `(from, now]` (unix seconds), oldest first, at most `limit` of them
    /// (the latest), and whether older ones were left out.
    pub fn due(&self, from: i64, now: i64, limit: usize) -> Due {
        let mut fires = Vec::new();
        let mut skipped = false;
        match self {
            Cadence::Every(period) => {
                let count = if now > from { (now - from) / period } else { 0 };
                let kept = count.min(limit as i64);
                skipped = count > kept;
                fires.extend((count - kept + 1..=count).map(|k| from + k * period));
            }
            Cadence::Cron(cron) => {
                // Walk back from now, so a long outage costs `limit` steps, not one per
                // missed fire.
                let mut at = utc(now + 1);
                while let Some(prev) =
                    at.and_then(|t| cron.find_previous_occurrence(&t, false).ok())
                {
                    let secs = prev.timestamp();
                    if secs <= from {
                        break;
                    }
                    if fires.len() == limit {
                        skipped = true;
                        break;
                    }
                    fires.push(secs);
                    at = Some(prev);
                }
                fires.reverse();
            }
        }
        Due { fires, skipped }
    }

    /// The first fire after `after` (unix seconds), counting a period from `anchor`.
    pub fn next_after(&self, anchor: i64, after: i64) -> Option<i64> {
        match self {
            Cadence::Every(period) => {
                let k = if after >= anchor {
                    (after - anchor) / period + 1
                } else {
                    1
                };
                anchor.checked_add(k.checked_mul(*period)?)
            }
            Cadence::Cron(cron) => cron
                .find_next_occurrence(&utc(after)?, false)
                .ok()
                .map(|t| t.timestamp()),
        }
    }
}

fn utc(secs: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(secs, 0)
}

/// What a schedule owes: the fires to create now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub fires: Vec<i64>,
    /// Fires older than the catch-up limit were left out.
    pub skipped: bool,
}

/// The name of the execution a fire creates, as Flyte's scheduler names it: `f`, then the
/// FNV-1 (64-bit) hash of `project:domain:name:version:<unix seconds>` as little-endian
/// bytes in hex, then `000`.
pub fn execution_name(key: &EntityKey, at: i64) -> String {
    let text = format!(
        "{}:{}:{}:{}:{at}",
        key.project, key.domain, key.name, key.version
    );
    let mut name = String::with_capacity(20);
    name.push('f');
    for byte in fnv1_64(text.as_bytes()).to_le_bytes() {
        name.push_str(&format!("{byte:02x}"));
    }
    name.push_str("000");
    name
}

/// FNV-1 (multiply, then xor), which Flyte's scheduler hashes with; the `fnv` crate has
/// only FNV-1a.
fn fnv1_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash: u64, b| {
        hash.wrapping_mul(0x0000_0100_0000_01b3) ^ u64::from(*b)
    })
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Executions created (or found created by an earlier attempt), in order.
    pub fired: Vec<String>,
    /// When the next fire of any active schedule is due (unix nanoseconds).
    pub next_due: Option<i64>,
}

/// Creates the executions active schedules owe.
#[derive(Clone)]
pub struct Scheduler {
    api: Api,
    max_catch_up: usize,
}

impl Scheduler {
    pub fn new(api: Api, max_catch_up: usize) -> Self {
        Scheduler {
            api,
            max_catch_up: max_catch_up.max(1),
        }
    }

    /// One round at `now` (unix nanoseconds). A store failure ends the round early; what
    /// it fired is recorded, the rest is fired by the next round.
    pub fn round(&self, now: i64) -> ApiResult<Round> {
        let mut round = Round::default();
        for rec in self.api.store.active_schedules()? {
            let Some((cadence, spec)) = Self::cadence_of(&rec) else {
                continue;
            };
            let activated = rec.activated_at.div_euclid(NANOS);
            let from = rec
                .last_fire
                .map_or(activated, |f| f.div_euclid(NANOS).max(activated));
            let now_secs = now.div_euclid(NANOS);
            let due = cadence.due(from, now_secs, self.max_catch_up);
            if due.skipped {
                tracing::warn!(
                    launch_plan = %rec.key,
                    limit = self.max_catch_up,
                    "schedule missed more fires than the catch-up limit; the oldest are skipped"
                );
            }
            let mut last = from;
            for at in due.fires {
                round.fired.push(self.fire(&rec.key, &spec, at)?);
                self.api
                    .store
                    .record_fire(&rec.key, at.saturating_mul(NANOS))?;
                last = at;
            }
            // A fixed period counts from the latest fire, or from the activation.
            if let Some(next) = cadence.next_after(last, now_secs) {
                let next = next.saturating_mul(NANOS);
                round.next_due = Some(round.next_due.map_or(next, |n| n.min(next)));
            }
        }
        Ok(round)
    }

    fn cadence_of(rec: &ScheduleRecord) -> Option<(Cadence, a::LaunchPlanSpec)> {
        let spec = match a::LaunchPlanSpec::decode(rec.spec.as_slice()) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::error!(launch_plan = %rec.key, error = %e, "launch plan spec unreadable; not scheduled");
                return None;
            }
        };
        let schedule = spec.entity_metadata.as_ref()?.schedule.as_ref()?;
        match Cadence::of(schedule) {
            Ok(cadence) => Some((cadence, spec)),
            Err(why) => {
                tracing::error!(launch_plan = %rec.key, why, "schedule unusable; not scheduled");
                None
            }
        }
    }

    /// Creates the execution of the fire at `at` (unix seconds); its name either way.
    fn fire(&self, key: &EntityKey, spec: &a::LaunchPlanSpec, at: i64) -> ApiResult<String> {
        let name = execution_name(key, at);
        let scheduled_at = crate::admin_ts(at.saturating_mul(NANOS));
        let kickoff = spec
            .entity_metadata
            .as_ref()
            .and_then(|m| m.schedule.as_ref())
            .map(|s| s.kickoff_time_input_arg.clone())
            .filter(|arg| !arg.is_empty());
        let mut inputs = c::LiteralMap::default();
        if let Some(arg) = kickoff {
            inputs.literals.insert(arg, datetime(scheduled_at));
        }
        let request = a::ExecutionCreateRequest {
            project: key.project.clone(),
            domain: key.domain.clone(),
            name: name.clone(),
            spec: Some(a::ExecutionSpec {
                launch_plan: Some(c::Identifier {
                    resource_type: c::ResourceType::LaunchPlan as i32,
                    project: key.project.clone(),
                    domain: key.domain.clone(),
                    name: key.name.clone(),
                    version: key.version.clone(),
                    org: String::new(),
                }),
                metadata: Some(a::ExecutionMetadata {
                    mode: a::execution_metadata::ExecutionMode::Scheduled as i32,
                    scheduled_at: Some(scheduled_at),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            inputs: Some(inputs),
            org: String::new(),
        };
        match self.api.create_execution_impl(request, None) {
            Ok(_) => {
                tracing::info!(launch_plan = %key, execution = name, at, "schedule fired")
            }
            Err(ApiError::AlreadyExists(_)) => {}
            // The launch plan cannot run (its workflow is gone, an input is unbound, the
            // project is archived): this fire is skipped, as Flyte's scheduler skips it.
            Err(
                e
                @ (ApiError::Invalid(_) | ApiError::NotFound(_) | ApiError::FailedPrecondition(_)),
            ) => {
                tracing::warn!(launch_plan = %key, at, error = %e, "scheduled execution refused; fire skipped");
            }
            Err(e) => return Err(e),
        }
        Ok(name)
    }

    /// Runs rounds until `stop` resolves: at each due fire, and at least every `poll` (so
    /// a newly activated schedule is seen). `now` reads the clock (unix nanoseconds).
    pub async fn run(
        self,
        now: impl Fn() -> i64 + Send + 'static,
        poll: Duration,
        stop: impl std::future::Future<Output = ()> + Send,
    ) {
        tokio::pin!(stop);
        let mut backoff = Duration::from_millis(200);
        loop {
            let at = now();
            let this = self.clone();
            let wait = match tokio::task::spawn_blocking(move || this.round(at)).await {
                Ok(Ok(round)) => {
                    backoff = Duration::from_millis(200);
                    let until_due = round
                        .next_due
                        .map(|due| Duration::from_nanos(due.saturating_sub(now()).max(0) as u64));
                    until_due.map_or(poll, |d| d.min(poll))
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "scheduler round failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    backoff
                }
                Err(e) => {
                    tracing::error!(error = %e, "scheduler round panicked");
                    poll
                }
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn datetime(at: prost_types::Timestamp) -> c::Literal {
    c::Literal {
        value: Some(c::literal::Value::Scalar(Box::new(c::Scalar {
            value: Some(c::scalar::Value::Primitive(c::Primitive {
                value: Some(c::primitive::Value::Datetime(at)),
            })),
        }))),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(expr: &str) -> Cadence {
        Cadence::cron(expr).unwrap()
    }

    #[test]
    fn flytes_cron_syntax_and_descriptors_parse_and_the_rest_is_refused() {
        for ok in [
            "*/5 * * * *",
            "0 9 * * MON-FRI",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "@every 2s",
            "@every 1h30m",
        ] {
            assert!(Cadence::cron(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "* * * *",
            "0 0 * * * *",
            "@reboot",
            "@every soon",
            "CRON_TZ=Europe/Paris 0 9 * * *",
            "61 * * * *",
        ] {
            assert!(Cadence::cron(bad).is_err(), "{bad}");
        }
        assert!(matches!(cron("@every 90s"), Cadence::Every(90)));
        assert!(
            matches!(cron("@every 200ms"), Cadence::Every(1)),
            "at least a second"
        );
    }

    #[test]
    fn a_fixed_rate_counts_whole_periods_from_its_anchor() {
        let rate = |value, unit: a::FixedRateUnit| a::Schedule {
            schedule_expression: Some(a::schedule::ScheduleExpression::Rate(a::FixedRate {
                value,
                unit: unit as i32,
            })),
            kickoff_time_input_arg: String::new(),
        };
        let every = Cadence::of(&rate(2, a::FixedRateUnit::Minute)).unwrap();
        assert!(matches!(every, Cadence::Every(120)));
        assert_eq!(every.due(1_000, 1_000, 10).fires, Vec::<i64>::new());
        assert_eq!(every.due(1_000, 1_119, 10).fires, Vec::<i64>::new());
        assert_eq!(every.due(1_000, 1_120, 10).fires, vec![1_120]);
        assert_eq!(
            every.due(1_000, 1_500, 10).fires,
            vec![1_120, 1_240, 1_360, 1_480]
        );
        assert_eq!(every.next_after(1_000, 1_130), Some(1_240));
        assert!(Cadence::of(&rate(0, a::FixedRateUnit::Hour)).is_err());
    }

    #[test]
    fn cron_fires_are_the_matching_minutes_after_the_anchor_and_up_to_now() {
        // 2026-12-02T10:00:00Z
        let ten = 1_796_205_600;
        let every_15 = cron("*/15 * * * *");
        assert_eq!(
            every_15.due(ten, ten + 3_600, 10).fires,
            vec![ten + 900, ten + 1_800, ten + 2_700, ten + 3_600]
        );
        assert_eq!(
            every_15.due(ten + 1, ten + 899, 10).fires,
            Vec::<i64>::new()
        );
        assert_eq!(every_15.next_after(ten, ten + 60), Some(ten + 900));
        let hourly = cron("@hourly");
        assert_eq!(hourly.due(ten - 1, ten, 10).fires, vec![ten]);
    }

    #[test]
    fn catch_up_keeps_the_latest_fires_within_the_limit() {
        let minutely = cron("* * * * *");
        let ten = 1_796_205_600;
        let due = minutely.due(ten, ten + 10 * 60, 3);
        assert_eq!(due.fires, vec![ten + 480, ten + 540, ten + 600]);
        assert!(due.skipped);
        let due = minutely.due(ten, ten + 3 * 60, 3);
        assert!(!due.skipped);
        let every = Cadence::Every(60);
        let due = every.due(ten, ten + 10 * 60, 3);
        assert_eq!(due.fires, vec![ten + 480, ten + 540, ten + 600]);
        assert!(due.skipped);
    }

    #[test]
    fn execution_names_follow_flytes_scheduler() {
        // FNV-1 reference values.
        assert_eq!(fnv1_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1_64(b"a"), 0xaf63_bd4c_8601_b7be);
        let key = EntityKey {
            project: "p".into(),
            domain: "d".into(),
            name: "lp".into(),
            version: "v1".into(),
        };
        let name = execution_name(&key, 1_796_205_600);
        assert_eq!(name.len(), 20);
        assert!(name.starts_with('f') && name.ends_with("000"));
        let hash = fnv1_64(b"p:d:lp:v1:1796205600");
        assert_eq!(
            &name[1..17],
            hash.to_le_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        assert_ne!(name, execution_name(&key, 1_796_205_601));
    }
}
