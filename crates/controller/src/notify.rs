//! Which notifications a phase change sends. The API settles an execution's notifications
//! when it creates it (its own, or else its launch plan's, unless it disabled them all) and
//! keeps them in the execution's closure, as flyteadmin does; a round that moves the
//! execution into a phase one of them lists writes its message to the outbox in the same
//! commit (`RoundCommit::notifications`), so a phase is never reported twice or lost.

use contrail_idl::admin::{self, notification::Type};
use contrail_store::{ExecKey, NotificationRecord};

/// The messages owed for entering `phase` (a `core.WorkflowExecution.Phase` number).
pub fn messages(
    k: &ExecKey,
    exec: &admin::Execution,
    phase: i32,
    now: i64,
) -> Vec<NotificationRecord> {
    let Some(closure) = &exec.closure else {
        return Vec::new();
    };
    closure
        .notifications
        .iter()
        .enumerate()
        .filter(|(_, n)| n.phases.contains(&phase))
        .filter_map(|(index, n)| {
            let (channel, recipients) = match n.r#type.as_ref()? {
                Type::Email(e) => ("email", &e.recipients_email),
                Type::Slack(s) => ("slack", &s.recipients_email),
                Type::PagerDuty(p) => ("pagerduty", &p.recipients_email),
            };
            Some(NotificationRecord {
                id: format!("{}/{}/{}/{phase}/{index}", k.project, k.domain, k.name),
                exec: k.clone(),
                phase,
                channel: channel.into(),
                recipients: recipients.clone(),
                created_at: now,
                ..Default::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_idl::core::workflow_execution::Phase;

    #[test]
    fn only_the_notifications_listing_the_phase_are_sent_one_id_each() {
        let email = |phases: &[Phase], to: &str| admin::Notification {
            phases: phases.iter().map(|p| *p as i32).collect(),
            r#type: Some(Type::Email(admin::EmailNotification {
                recipients_email: vec![to.into()],
                ..Default::default()
            })),
        };
        let exec = admin::Execution {
            closure: Some(admin::ExecutionClosure {
                notifications: vec![
                    email(&[Phase::Failed, Phase::TimedOut], "oncall@example.com"),
                    email(&[Phase::Succeeded], "team@example.com"),
                    admin::Notification {
                        phases: vec![Phase::Failed as i32],
                        r#type: Some(Type::Slack(admin::SlackNotification {
                            recipients_email: vec!["alerts@example.slack.com".into()],
                            ..Default::default()
                        })),
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let k = ExecKey {
            project: "p".into(),
            domain: "d".into(),
            name: "e".into(),
        };
        let failed = messages(&k, &exec, Phase::Failed as i32, 7);
        assert_eq!(
            failed
                .iter()
                .map(|m| (m.id.as_str(), m.channel.as_str(), m.recipients[0].as_str()))
                .collect::<Vec<_>>(),
            [
                ("p/d/e/6/0", "email", "oncall@example.com"),
                ("p/d/e/6/2", "slack", "alerts@example.slack.com")
            ]
        );
        assert_eq!(messages(&k, &exec, Phase::Succeeded as i32, 7).len(), 1);
        assert!(messages(&k, &exec, Phase::Running as i32, 7).is_empty());
    }
}
