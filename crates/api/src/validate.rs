//! Request validation: every message names the offending field.

use crate::error::{ApiResult, invalid};
use contrail_idl::core::{Identifier, ResourceType};

pub const MAX_NAME: usize = 512;

/// A non-empty printable string of bounded length.
pub fn text(field: &str, v: &str) -> ApiResult<()> {
    if v.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if v.len() > MAX_NAME {
        return Err(invalid(format!("{field} is longer than {MAX_NAME} bytes")));
    }
    if v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(format!(
            "{field} '{}' contains whitespace or control characters",
            v.escape_debug()
        )));
    }
    Ok(())
}

/// A fully specified identifier of the given resource type.
pub fn identifier(
    field: &str,
    id: Option<&Identifier>,
    kind: ResourceType,
) -> ApiResult<Identifier> {
    let id = id.ok_or_else(|| invalid(format!("{field} is missing")))?;
    if id.resource_type != kind as i32 && id.resource_type != ResourceType::Unspecified as i32 {
        return Err(invalid(format!(
            "{field}.resource_type must be {}, got {}",
            kind.as_str_name(),
            ResourceType::try_from(id.resource_type)
                .map(|r| r.as_str_name())
                .unwrap_or("an unknown value")
        )));
    }
    text(&format!("{field}.project"), &id.project)?;
    text(&format!("{field}.domain"), &id.domain)?;
    text(&format!("{field}.name"), &id.name)?;
    text(&format!("{field}.version"), &id.version)?;
    let mut id = id.clone();
    id.resource_type = kind as i32;
    Ok(id)
}

/// A project id: lowercase letters, digits and dashes, 1..=63, starting with a letter or digit.
pub fn project_id(field: &str, v: &str) -> ApiResult<()> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} '{}' must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'",
            v.escape_debug()
        )))
    }
}

/// A launch plan's schedule: a cron expression (5 fields or an `@` descriptor), a cron
/// schedule with an optional ISO 8601 offset, or a positive fixed rate.
// `cron_expression` is deprecated in the schema, and still what old clients send.
#[allow(deprecated)]
pub fn schedule(s: Option<&contrail_idl::admin::Schedule>) -> ApiResult<()> {
    use contrail_idl::admin::schedule::ScheduleExpression as E;
    let Some(s) = s else { return Ok(()) };
    let cron = |field: &str, expr: &str| -> ApiResult<()> {
        crate::schedule::Cadence::cron(expr)
            .map(|_| ())
            .map_err(|e| invalid(format!("{field}: {e}")))
    };
    match &s.schedule_expression {
        None => Err(invalid(
            "spec.entity_metadata.schedule: set cron_expression, cron_schedule or rate",
        )),
        Some(E::CronExpression(expr)) => {
            cron("spec.entity_metadata.schedule.cron_expression", expr)
        }
        Some(E::CronSchedule(cs)) => {
            cron(
                "spec.entity_metadata.schedule.cron_schedule.schedule",
                &cs.schedule,
            )?;
            let offset = &cs.offset;
            let iso_duration = offset.starts_with('P')
                && offset.len() <= 64
                && offset[1..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"YMWDTHS.".contains(&b));
            if !offset.is_empty() && !iso_duration {
                return Err(invalid(format!(
                    "spec.entity_metadata.schedule.cron_schedule.offset: '{offset}' is not an ISO 8601 duration"
                )));
            }
            Ok(())
        }
        Some(E::Rate(r)) => {
            if r.value == 0 {
                return Err(invalid(
                    "spec.entity_metadata.schedule.rate.value: must be positive",
                ));
            }
            if contrail_idl::admin::FixedRateUnit::try_from(r.unit).is_err() {
                return Err(invalid(format!(
                    "spec.entity_metadata.schedule.rate.unit: {} is not a unit",
                    r.unit
                )));
            }
            Ok(())
        }
    }
}

/// Notifications as flyteadmin accepts them: terminal phases only (SUCCEEDED, FAILED,
/// TIMED_OUT, ABORTED), a type, at least one recipient; bounded in number and length.
pub fn notifications(field: &str, list: &[contrail_idl::admin::Notification]) -> ApiResult<()> {
    use contrail_idl::admin::notification::Type;
    use contrail_idl::core::workflow_execution::Phase;
    const MAX: usize = 100;
    if list.len() > MAX {
        return Err(invalid(format!("{field}: more than {MAX} notifications")));
    }
    for (i, n) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if n.phases.is_empty() {
            return Err(invalid(format!("{at}.phases: name at least one phase")));
        }
        for p in &n.phases {
            let terminal = matches!(
                Phase::try_from(*p),
                Ok(Phase::Succeeded | Phase::Failed | Phase::TimedOut | Phase::Aborted)
            );
            if !terminal {
                return Err(invalid(format!(
                    "{at}.phases: {p} is not SUCCEEDED, FAILED, TIMED_OUT or ABORTED"
                )));
            }
        }
        let recipients = match &n.r#type {
            None => return Err(invalid(format!("{at}: set email, slack or pager_duty"))),
            Some(Type::Email(e)) => &e.recipients_email,
            Some(Type::Slack(s)) => &s.recipients_email,
            Some(Type::PagerDuty(p)) => &p.recipients_email,
        };
        if recipients.is_empty() || recipients.len() > MAX {
            return Err(invalid(format!(
                "{at}.recipients_email: between 1 and {MAX} recipients"
            )));
        }
        for r in recipients {
            if r.is_empty() || r.len() > 320 || r.contains(['\n', '\r']) || !r.contains('@') {
                return Err(invalid(format!(
                    "{at}.recipients_email: '{}' is not an email address",
                    r.escape_debug()
                )));
            }
        }
    }
    Ok(())
}
