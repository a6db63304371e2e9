//! Roles, granted per project, and the action a request needs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Reads: gets, lists, data and download links.
    View,
    /// Registers entities, creates, terminates and signals executions, uploads.
    Edit,
    /// Registers and updates projects, changes attributes.
    Admin,
}

/// A role; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::View => true,
            Action::Edit => self >= Role::Editor,
            Action::Admin => self == Role::Admin,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected viewer, editor or admin"
            )),
        }
    }
}

/// The key that grants a role in every project.
pub const EVERY_PROJECT: &str = "*";

/// Roles by project; `*` covers every project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Grants(pub BTreeMap<String, Role>);

impl Grants {
    /// One role in every project.
    pub fn everywhere(role: Role) -> Self {
        Grants(BTreeMap::from([(EVERY_PROJECT.to_string(), role)]))
    }

    /// The strongest role that applies in `project`.
    pub fn role_in(&self, project: &str) -> Option<Role> {
        let own = self.0.get(project).copied();
        let every = self.0.get(EVERY_PROJECT).copied();
        own.max(every)
    }

    /// Whether `action` is allowed in `project`.
    pub fn allows(&self, action: Action, project: &str) -> bool {
        self.role_in(project).is_some_and(|r| r.allows(action))
    }

    /// Whether `action` is allowed in every project (needed where a request names none).
    pub fn allows_everywhere(&self, action: Action) -> bool {
        self.0.get(EVERY_PROJECT).is_some_and(|r| r.allows(action))
    }

    /// Whether the project is visible at all.
    pub fn sees(&self, project: &str) -> bool {
        self.role_in(project).is_some()
    }

    /// Parses `ROLE` (every project) or `ROLE:PROJECT`, as the CLI takes them.
    pub fn parse(specs: &[String]) -> Result<Self, String> {
        let mut grants = BTreeMap::new();
        for spec in specs {
            let (role, project) = match spec.split_once(':') {
                Some((r, p)) if !p.is_empty() => (r, p),
                Some(_) => return Err(format!("{spec:?}: the project after ':' is empty")),
                None => (spec.as_str(), EVERY_PROJECT),
            };
            let role: Role = role.parse()?;
            let slot = grants.entry(project.to_string()).or_insert(role);
            *slot = (*slot).max(role);
        }
        Ok(Grants(grants))
    }
}

impl std::fmt::Display for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(p, r)| format!("{}:{p}", format!("{r:?}").to_lowercase()))
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// What callers without admin rights may run: task types and container images (a
/// pattern ending in `*` matches a prefix). An empty list allows everything of its kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPolicy {
    #[serde(default)]
    pub task_types: Vec<String>,
    #[serde(default)]
    pub images: Vec<String>,
}

fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

impl TaskPolicy {
    /// Why a task of this type (and container image) may not run, if it may not.
    pub fn check(&self, task_type: &str, image: Option<&str>) -> Result<(), String> {
        if !self.task_types.is_empty() && !self.task_types.iter().any(|p| matches(p, task_type)) {
            return Err(format!(
                "task type {task_type:?} is not one of {}",
                self.task_types.join(", ")
            ));
        }
        if let Some(image) = image
            && !self.images.is_empty()
            && !self.images.iter().any(|p| matches(p, image))
        {
            return Err(format!(
                "image {image:?} is not one of {}",
                self.images.join(", ")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_policy_matches_types_and_image_prefixes() {
        let p = TaskPolicy {
            task_types: vec!["python-task".into(), "container_array".into()],
            images: vec!["ghcr.io/flyteorg/*".into()],
        };
        assert!(
            p.check("python-task", Some("ghcr.io/flyteorg/flytekit:py3.11"))
                .is_ok()
        );
        assert!(
            p.check("raw-container", Some("ghcr.io/flyteorg/x"))
                .unwrap_err()
                .contains("raw-container")
        );
        assert!(
            p.check("python-task", Some("alpine"))
                .unwrap_err()
                .contains("alpine")
        );
        assert!(p.check("python-task", None).is_ok());
        assert!(TaskPolicy::default().check("anything", Some("any")).is_ok());
    }

    #[test]
    fn roles_nest_and_the_wildcard_covers_every_project() {
        let g = Grants::parse(&["viewer".into(), "editor:ml".into()]).unwrap();
        assert!(g.allows(Action::View, "other"));
        assert!(!g.allows(Action::Edit, "other"));
        assert!(g.allows(Action::Edit, "ml"));
        assert!(!g.allows(Action::Admin, "ml"));
        assert!(!g.allows_everywhere(Action::Edit));
        let a = Grants::parse(&["admin:ml".into()]).unwrap();
        assert!(a.allows(Action::Admin, "ml"));
        assert!(!a.sees("other"));
        assert!(
            Grants::parse(&["boss".into()])
                .unwrap_err()
                .contains("boss")
        );
        assert!(Grants::parse(&["viewer:".into()]).is_err());
        assert_eq!(g.to_string(), "viewer:*,editor:ml");
    }
}
