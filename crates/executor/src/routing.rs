//! Which executor runs an attempt. An execution's cluster label (Flyte's
//! `ExecutionClusterLabel`) names an executor outright; otherwise the first rule matching
//! the attempt's project, domain and task type decides, and the default takes the rest.
//! Pure: the choice depends on the attempt's description only, so every round (and every
//! replica) routes an attempt the same way.

use crate::{AttemptSpec, Executor, Result};
use contrail_engine::{Failure, TaskStatus};
use contrail_idl::core::TaskLog;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One override. Unset fields match anything; all set fields must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub project: Option<String>,
    pub domain: Option<String>,
    pub task_type: Option<String>,
    pub executor: String,
}

impl Rule {
    fn matches(&self, spec: &AttemptSpec) -> bool {
        let field = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        field(&self.project, &spec.project)
            && field(&self.domain, &spec.domain)
            && field(&self.task_type, &spec.task.r#type)
    }
}

/// Where attempts go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// The executor of attempts no label or rule sends elsewhere.
    pub default: String,
    /// Tried in order; the first match wins.
    pub rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoutingError {
    #[error("{place} names executor '{name}', which is not configured (configured: {known})")]
    UnknownExecutor {
        place: String,
        name: String,
        known: String,
    },
}

/// Sends each call to the executor the routes pick.
pub struct Router {
    routes: Routes,
    executors: BTreeMap<String, Arc<dyn Executor>>,
}

impl Router {
    /// Checks that every executor the routes name exists.
    pub fn new(
        routes: Routes,
        executors: BTreeMap<String, Arc<dyn Executor>>,
    ) -> Result<Self, RoutingError> {
        let known = executors.keys().cloned().collect::<Vec<_>>().join(", ");
        let check = |place: String, name: &str| {
            if executors.contains_key(name) {
                Ok(())
            } else {
                Err(RoutingError::UnknownExecutor {
                    place,
                    name: name.to_string(),
                    known: known.clone(),
                })
            }
        };
        check("routing.default".into(), &routes.default)?;
        for (i, rule) in routes.rules.iter().enumerate() {
            check(format!("routing.rules[{i}]"), &rule.executor)?;
        }
        Ok(Router { routes, executors })
    }

    /// The configured executors' names: the cluster labels an execution may carry.
    pub fn names(&self) -> Vec<String> {
        self.executors.keys().cloned().collect()
    }

    /// The name of the executor for an attempt; `Err` names an unknown cluster label.
    pub fn route<'a>(&'a self, spec: &'a AttemptSpec) -> Result<&'a str, String> {
        if !spec.cluster_label.is_empty() {
            return if self.executors.contains_key(&spec.cluster_label) {
                Ok(&spec.cluster_label)
            } else {
                Err(unknown_label(&spec.cluster_label, &self.names()))
            };
        }
        Ok(self
            .routes
            .rules
            .iter()
            .find(|r| r.matches(spec))
            .map_or(&self.routes.default, |r| &r.executor))
    }

    fn pick(&self, spec: &AttemptSpec) -> Result<&dyn Executor, String> {
        let name = self.route(spec)?;
        Ok(self.executors[name].as_ref())
    }
}

/// The message for a cluster label no executor answers to.
pub fn unknown_label(label: &str, known: &[String]) -> String {
    format!(
        "execution_cluster_label '{label}' names no configured executor (configured: {})",
        known.join(", ")
    )
}

impl Executor for Router {
    fn launch(&self, spec: &AttemptSpec, on_change: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        let Ok(name) = self.route(spec) else {
            // Reported by `status`: the attempt cannot run anywhere.
            metrics::counter!("contrail_task_launches_total", "executor" => "none", "outcome" => "unroutable")
                .increment(1);
            return Ok(());
        };
        let result = self.executors[name].launch(spec, on_change);
        let outcome = if result.is_ok() { "launched" } else { "error" };
        metrics::counter!("contrail_task_launches_total", "executor" => name.to_string(), "outcome" => outcome)
            .increment(1);
        result
    }

    fn status(&self, spec: &AttemptSpec) -> Result<TaskStatus> {
        match self.pick(spec) {
            Ok(e) => e.status(spec),
            Err(message) => Ok(TaskStatus::Failed(Failure::user(
                "UnknownClusterLabel",
                message,
                false,
            ))),
        }
    }

    fn abort(&self, spec: &AttemptSpec) -> Result<()> {
        match self.pick(spec) {
            Ok(e) => e.abort(spec),
            Err(_) => Ok(()),
        }
    }

    fn logs(&self, spec: &AttemptSpec) -> Vec<TaskLog> {
        self.pick(spec).map(|e| e.logs(spec)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records which attempts it was asked about.
    #[derive(Default)]
    struct Named(Mutex<Vec<String>>);

    impl Executor for Named {
        fn launch(&self, spec: &AttemptSpec, _: Box<dyn Fn() + Send + Sync>) -> Result<()> {
            self.0.lock().unwrap().push(spec.id.clone());
            Ok(())
        }
        fn status(&self, _: &AttemptSpec) -> Result<TaskStatus> {
            Ok(TaskStatus::Queued)
        }
        fn abort(&self, _: &AttemptSpec) -> Result<()> {
            Ok(())
        }
        fn logs(&self, _: &AttemptSpec) -> Vec<TaskLog> {
            vec![]
        }
    }

    fn attempt(id: &str, project: &str, task_type: &str, label: &str) -> AttemptSpec {
        let mut spec = AttemptSpec {
            id: id.into(),
            project: project.into(),
            domain: "development".into(),
            cluster_label: label.into(),
            ..Default::default()
        };
        spec.task.r#type = task_type.into();
        spec
    }

    #[test]
    fn labels_then_rules_then_the_default() {
        let (local, slurm, k8s) = (
            Arc::new(Named::default()),
            Arc::new(Named::default()),
            Arc::new(Named::default()),
        );
        let executors: BTreeMap<String, Arc<dyn Executor>> = [
            ("local".to_string(), local.clone() as Arc<dyn Executor>),
            ("hpc".to_string(), slurm.clone()),
            ("gpu".to_string(), k8s.clone()),
        ]
        .into();
        let routes = Routes {
            default: "local".into(),
            rules: vec![
                Rule {
                    project: Some("ml".into()),
                    task_type: Some("python-task".into()),
                    executor: "hpc".into(),
                    ..Default::default()
                },
                Rule {
                    domain: Some("development".into()),
                    task_type: Some("raw-container".into()),
                    executor: "gpu".into(),
                    ..Default::default()
                },
            ],
        };
        let router = Router::new(routes, executors).unwrap();
        let cases = [
            (attempt("a", "ml", "python-task", ""), "hpc"),
            (attempt("b", "web", "python-task", ""), "local"),
            (attempt("c", "web", "raw-container", ""), "gpu"),
            (attempt("d", "ml", "python-task", "gpu"), "gpu"),
            (attempt("e", "ml", "python-task", "local"), "local"),
        ];
        for (spec, want) in &cases {
            assert_eq!(router.route(spec), Ok(*want), "{}", spec.id);
            router.launch(spec, Box::new(|| {})).unwrap();
        }
        let seen = |e: &Named| e.0.lock().unwrap().join(",");
        assert_eq!(seen(&local), "b,e");
        assert_eq!(seen(&slurm), "a");
        assert_eq!(seen(&k8s), "c,d");
        // A label that names nothing fails the attempt, naming what exists.
        let lost = attempt("f", "ml", "python-task", "nowhere");
        router.launch(&lost, Box::new(|| {})).unwrap();
        let TaskStatus::Failed(f) = router.status(&lost).unwrap() else {
            panic!("an unknown label must fail the attempt")
        };
        assert!(f.message.contains("'nowhere'") && f.message.contains("gpu, hpc, local"));
    }

    #[test]
    fn routes_naming_missing_executors_are_refused() {
        let executors: BTreeMap<String, Arc<dyn Executor>> = [(
            "local".to_string(),
            Arc::new(Named::default()) as Arc<dyn Executor>,
        )]
        .into();
        let routes = Routes {
            default: "local".into(),
            rules: vec![Rule {
                executor: "slurm".into(),
                ..Default::default()
            }],
        };
        let err = Router::new(routes, executors).err().unwrap();
        assert_eq!(
            err.to_string(),
            "routing.rules[0] names executor 'slurm', which is not configured (configured: local)"
        );
    }
}
