//! `contrail lineage` and `contrail cache`: the catalog read (and pruned) straight from the
//! data directory's store, so they work whether or not a server runs.

use contrail_store::{ArtifactRecord, ExecKey};
use std::path::Path;

#[derive(clap::Subcommand, Debug)]
pub enum CacheCmd {
    /// List cached artifacts, newest first.
    Ls {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        /// Dataset name (`flyte_task-<task name>`) or task name.
        #[arg(long)]
        task: Option<String>,
    },
    /// Delete the cached artifacts of a task (all cache versions, or one).
    Rm {
        project: String,
        domain: String,
        /// Dataset name (`flyte_task-<task name>`) or task name.
        task: String,
        /// Only this dataset version (`<cache_version>-<in>-<out>`).
        #[arg(long)]
        version: Option<String>,
    },
}

fn dataset(task: &str) -> String {
    if task.starts_with("flyte_task-") {
        task.to_string()
    } else {
        format!("flyte_task-{task}")
    }
}

fn line(a: &ArtifactRecord) -> String {
    format!(
        "{}/{}/{}@{} {} artifact={} produced-by={}/{}/{}/{} attempt {}",
        a.key.project,
        a.key.domain,
        a.key.name,
        a.key.version,
        a.key.tag,
        a.artifact_id,
        a.source.project,
        a.source.domain,
        a.source.name,
        a.source_node,
        a.source_attempt
    )
}

pub fn cache(data_dir: &Path, database: Option<&str>, cmd: CacheCmd) -> Result<String, String> {
    let s = crate::open_existing_store(data_dir, database)?;
    let err = |e: contrail_store::Error| e.to_string();
    match cmd {
        CacheCmd::Ls {
            project,
            domain,
            task,
        } => {
            let name = task.as_deref().map(dataset);
            let rows = s
                .list_artifacts(project.as_deref(), domain.as_deref(), name.as_deref())
                .map_err(err)?;
            Ok(rows.iter().map(|a| line(a) + "\n").collect())
        }
        CacheCmd::Rm {
            project,
            domain,
            task,
            version,
        } => {
            let n = s
                .delete_artifacts(&project, &domain, &dataset(&task), version.as_deref())
                .map_err(err)?;
            Ok(format!("deleted {n} artifact(s)\n"))
        }
    }
}

/// What a node (or every node of an execution) produced into the catalog and who reused
/// it, and what it reused and who produced that. `target` is
/// `[<project>/<domain>/]<execution>[/<node>]`.
pub fn lineage(
    data_dir: &Path,
    database: Option<&str>,
    target: &str,
    project: &str,
    domain: &str,
) -> Result<String, String> {
    let s = crate::open_existing_store(data_dir, database)?;
    let err = |e: contrail_store::Error| e.to_string();
    let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty()).collect();
    let (exec, node) = match parts.as_slice() {
        [e] => (
            ExecKey {
                project: project.into(),
                domain: domain.into(),
                name: e.to_string(),
            },
            None,
        ),
        [e, n] => (
            ExecKey {
                project: project.into(),
                domain: domain.into(),
                name: e.to_string(),
            },
            Some(*n),
        ),
        [p, d, e] => (
            ExecKey {
                project: p.to_string(),
                domain: d.to_string(),
                name: e.to_string(),
            },
            None,
        ),
        [p, d, e, n] => (
            ExecKey {
                project: p.to_string(),
                domain: d.to_string(),
                name: e.to_string(),
            },
            Some(*n),
        ),
        _ => {
            return Err(format!(
                "'{target}': expected [<project>/<domain>/]<execution>[/<node>]"
            ));
        }
    };
    let mut out = String::new();
    for a in s.artifacts_produced_by(&exec, node).map_err(err)? {
        out.push_str(&format!("produced {}\n", line(&a)));
        for u in s.uses_of(&a.artifact_id).map_err(err)? {
            out.push_str(&format!(
                "  reused-by {}/{}/{}/{}\n",
                u.exec.project, u.exec.domain, u.exec.name, u.node_id
            ));
        }
    }
    for a in s.artifacts_used_by(&exec, node).map_err(err)? {
        out.push_str(&format!("reused {}\n", line(&a)));
    }
    if out.is_empty() {
        out = format!("no catalog entries for {target}\n");
    }
    Ok(out)
}
