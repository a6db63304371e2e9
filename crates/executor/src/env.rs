//! The environment every task attempt gets, whichever executor runs it: Flyte's
//! `FLYTE_INTERNAL_*` identity variables, the container's own `env`, then the execution's
//! `envs` (later entries win, as with a shell's `export`).

use crate::AttemptSpec;
use std::collections::HashSet;

/// The attempt's own variables, in order; an executor puts its base environment first
/// and its storage settings wherever it needs them.
pub fn task_env(spec: &AttemptSpec) -> Vec<(String, String)> {
    let task_id = spec.task.id.clone().unwrap_or_default();
    let attempt = spec.attempt.to_string();
    let mut env: Vec<(String, String)> = [
        ("FLYTE_INTERNAL_EXECUTION_ID", spec.execution.as_str()),
        ("FLYTE_INTERNAL_EXECUTION_PROJECT", &spec.project),
        ("FLYTE_INTERNAL_EXECUTION_DOMAIN", &spec.domain),
        ("FLYTE_INTERNAL_EXECUTION_WORKFLOW", &spec.workflow),
        ("FLYTE_INTERNAL_EXECUTION_LAUNCHPLAN", &spec.launch_plan),
        ("FLYTE_INTERNAL_TASK_PROJECT", &task_id.project),
        ("FLYTE_INTERNAL_TASK_DOMAIN", &task_id.domain),
        ("FLYTE_INTERNAL_TASK_NAME", &task_id.name),
        ("FLYTE_INTERNAL_TASK_VERSION", &task_id.version),
        ("FLYTE_INTERNAL_PROJECT", &task_id.project),
        ("FLYTE_INTERNAL_DOMAIN", &task_id.domain),
        ("FLYTE_INTERNAL_NAME", &task_id.name),
        ("FLYTE_INTERNAL_VERSION", &task_id.version),
        ("FLYTE_ATTEMPT_NUMBER", &attempt),
        ("FLYTE_INTERNAL_NODE_ID", &spec.node_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(c) = crate::container(&spec.task) {
        env.extend(c.env.iter().map(|kv| (kv.key.clone(), kv.value.clone())));
    }
    env.extend(spec.envs.iter().cloned());
    env
}

/// Keeps the last value of each name, in the order the names were last set.
pub fn last_wins(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    let mut kept: Vec<(String, String)> = env
        .into_iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect();
    kept.reverse();
    kept
}

/// The name flytekit looks a secret up under (`_FSEC_<GROUP>[_<VERSION>]_<KEY>`, upper case).
pub fn secret_env_name(group: &str, group_version: &str, key: &str) -> String {
    let mut name = format!("_FSEC_{group}");
    if !group_version.is_empty() {
        name = format!("{name}_{group_version}");
    }
    format!("{name}_{key}").to_uppercase()
}

/// The first Python environment configured for an image: exact names, or prefixes ending
/// in `*`.
pub fn image_match<'a, T>(images: &'a [(String, T)], image: &str) -> Option<&'a T> {
    images
        .iter()
        .find(|(pattern, _)| match pattern.strip_suffix('*') {
            Some(prefix) => image.starts_with(prefix),
            None => image == pattern,
        })
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_envs_win_over_the_container_and_identity() {
        let spec = AttemptSpec {
            execution: "e1".into(),
            attempt: 2,
            envs: vec![("FLYTE_ATTEMPT_NUMBER".into(), "x".into())],
            ..Default::default()
        };
        let env = last_wins(task_env(&spec));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("FLYTE_INTERNAL_EXECUTION_ID"), Some("e1"));
        assert_eq!(get("FLYTE_ATTEMPT_NUMBER"), Some("x"));
        assert_eq!(
            env.iter()
                .filter(|(k, _)| k == "FLYTE_ATTEMPT_NUMBER")
                .count(),
            1
        );
        assert_eq!(secret_env_name("grp", "", "Key"), "_FSEC_GRP_KEY");
        assert_eq!(secret_env_name("g", "v1", "k"), "_FSEC_G_V1_K");
        let images = vec![("a:1".to_string(), 1), ("b*".to_string(), 2)];
        assert_eq!(image_match(&images, "a:1"), Some(&1));
        assert_eq!(image_match(&images, "a:2"), None);
        assert_eq!(image_match(&images, "bx"), Some(&2));
    }
}
