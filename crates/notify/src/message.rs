//! What a notification says, for each channel. Pure: the texts and JSON bodies are built
//! from the execution and the console link, so they are tested without sending anything.

use contrail_idl::admin;
use contrail_idl::core::workflow_execution::Phase;
use contrail_store::NotificationRecord;
use serde_json::{Value, json};

/// The facts a message reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub project: String,
    pub domain: String,
    pub name: String,
    /// `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED`.
    pub phase: String,
    /// The launch plan (or task) that ran.
    pub launch_plan: String,
    /// Why it failed or was aborted (empty otherwise).
    pub reason: String,
    /// The execution's page in the console.
    pub link: String,
}

impl Report {
    pub fn new(m: &NotificationRecord, exec: Option<&admin::Execution>, console: &str) -> Report {
        let phase = Phase::try_from(m.phase)
            .map(|p| p.as_str_name().to_string())
            .unwrap_or_else(|_| m.phase.to_string());
        let launch_plan = exec
            .and_then(|e| e.spec.as_ref())
            .and_then(|s| s.launch_plan.as_ref())
            .map(|id| format!("{}:{}", id.name, id.version))
            .unwrap_or_default();
        use admin::execution_closure::OutputResult;
        let reason = match exec
            .and_then(|e| e.closure.as_ref())
            .and_then(|c| c.output_result.as_ref())
        {
            Some(OutputResult::Error(e)) => format!("{}: {}", e.code, e.message),
            Some(OutputResult::AbortMetadata(a)) => a.cause.clone(),
            _ => String::new(),
        };
        let k = &m.exec;
        Report {
            link: format!(
                "{}/projects/{}/domains/{}/executions/{}",
                console.trim_end_matches('/'),
                k.project,
                k.domain,
                k.name
            ),
            project: k.project.clone(),
            domain: k.domain.clone(),
            name: k.name.clone(),
            phase,
            launch_plan,
            reason,
        }
    }

    pub fn subject(&self) -> String {
        format!(
            "Contrail: execution {} of {} in {}/{} {}",
            self.name, self.launch_plan, self.project, self.domain, self.phase
        )
    }

    pub fn body(&self) -> String {
        let mut text = format!(
            "Execution {} ({}) in project {}, domain {} is {}.\n",
            self.name, self.launch_plan, self.project, self.domain, self.phase
        );
        if !self.reason.is_empty() {
            text.push_str(&format!("Reason: {}\n", self.reason));
        }
        text.push_str(&format!("Details: {}\n", self.link));
        text
    }

    /// A Slack incoming webhook's body.
    pub fn slack(&self) -> Value {
        json!({ "text": format!("{}\n{}", self.subject(), self.link) })
    }

    /// A PagerDuty Events API v2 `trigger` event; its dedup key is the message's id, so a
    /// message delivered twice (at-least-once) opens one incident.
    pub fn pagerduty(&self, routing_key: &str, dedup_key: &str) -> Value {
        let severity = if self.phase == "SUCCEEDED" {
            "info"
        } else {
            "error"
        };
        json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": self.subject(),
                "source": "contrail",
                "severity": severity,
                "custom_details": self.facts(),
            },
            "links": [{ "href": self.link, "text": "Execution" }],
        })
    }

    /// The generic webhook's body (email notifications when no SMTP server is set).
    pub fn webhook(&self, id: &str, channel: &str, recipients: &[String]) -> Value {
        let mut body = self.facts();
        for (key, value) in [
            ("id", json!(id)),
            ("channel", json!(channel)),
            ("recipients", json!(recipients)),
            ("subject", json!(self.subject())),
            ("body", json!(self.body())),
            ("link", json!(self.link)),
        ] {
            body.insert(key.into(), value);
        }
        Value::Object(body)
    }

    /// What every structured body reports about the execution.
    fn facts(&self) -> serde_json::Map<String, Value> {
        [
            ("project", &self.project),
            ("domain", &self.domain),
            ("execution", &self.name),
            ("launch_plan", &self.launch_plan),
            ("phase", &self.phase),
            ("reason", &self.reason),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), json!(value)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_store::ExecKey;

    #[test]
    fn a_failed_execution_reports_its_phase_reason_and_link() {
        let m = NotificationRecord {
            id: "p/d/e/6/0".into(),
            exec: ExecKey {
                project: "p".into(),
                domain: "d".into(),
                name: "e".into(),
            },
            phase: Phase::Failed as i32,
            channel: "pagerduty".into(),
            recipients: vec!["oncall@example.com".into()],
            ..Default::default()
        };
        let exec = admin::Execution {
            spec: Some(admin::ExecutionSpec {
                launch_plan: Some(contrail_idl::core::Identifier {
                    name: "wf.lp".into(),
                    version: "v1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            closure: Some(admin::ExecutionClosure {
                output_result: Some(admin::execution_closure::OutputResult::Error(
                    contrail_idl::core::ExecutionError {
                        code: "USER:Boom".into(),
                        message: "division by zero".into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = Report::new(&m, Some(&exec), "http://127.0.0.1:8089/console/");
        assert_eq!(r.phase, "FAILED");
        assert_eq!(
            r.link,
            "http://127.0.0.1:8089/console/projects/p/domains/d/executions/e"
        );
        assert!(r.body().contains("Reason: USER:Boom: division by zero"));
        assert_eq!(
            r.subject(),
            "Contrail: execution e of wf.lp:v1 in p/d FAILED"
        );
        let pd = r.pagerduty("key", &m.id);
        assert_eq!(pd["event_action"], "trigger");
        assert_eq!(pd["dedup_key"], "p/d/e/6/0");
        assert_eq!(pd["payload"]["severity"], "error");
        assert!(r.slack()["text"].as_str().unwrap().contains(&r.link));
    }
}
