//! Where execution data lives, as Flyte lays it out (keys inside the bucket).
//!
//! - execution inputs (admin): `metadata/<project>/<domain>/<exec>/inputs-<digest>` (named
//!   by content, so racing creators never overwrite each other's; the execution row names
//!   the winner's), or `.../inputs` for executions made before that
//! - workflow data dir: `metadata/propeller/<project>-<domain>-<exec>`
//! - node data dir: `<workflow dir>/<node>/data`, with `inputs.pb`
//! - attempt output dir: `<node data dir>/<attempt>` with `outputs.pb`, `error.pb`,
//!   `futures.pb`, `deck.html`
//! - map item dirs: `<node data dir>/<item>/<attempt>` (inputs of an item with its own
//!   inputs file: `<node data dir>/<item>/inputs.pb`)
//! - a dynamic node's compiled workflow: `<attempt output dir>/dynamic_compiled.pb`
//! - cached outputs: `catalog/<project>/<domain>/<dataset name>/<dataset version>/<artifact>/outputs.pb`
//! - raw outputs: `<raw base>/<2-char shard>/<unique id>`

/// The legacy inputs key (executions whose row names no inputs URI).
pub fn execution_inputs(project: &str, domain: &str, exec: &str) -> String {
    format!("metadata/{project}/{domain}/{exec}/inputs")
}

/// The inputs key of a new execution, named by the digest of its inputs.
pub fn execution_inputs_named(project: &str, domain: &str, exec: &str, digest: &str) -> String {
    format!("metadata/{project}/{domain}/{exec}/inputs-{digest}")
}

/// The key of an execution's inputs: the one its row names, else the legacy key.
pub fn execution_inputs_of(
    blob: &crate::BlobStore,
    inputs_uri: &str,
    project: &str,
    domain: &str,
    exec: &str,
) -> Result<String, crate::Error> {
    if inputs_uri.is_empty() {
        Ok(execution_inputs(project, domain, exec))
    } else {
        blob.key_of(inputs_uri).map(str::to_string)
    }
}

pub fn workflow_dir(project: &str, domain: &str, exec: &str) -> String {
    format!("metadata/propeller/{project}-{domain}-{exec}")
}

pub fn node_data_dir(workflow_dir: &str, node: &str) -> String {
    format!("{workflow_dir}/{node}/data")
}

pub fn node_inputs(workflow_dir: &str, node: &str) -> String {
    format!("{}/inputs.pb", node_data_dir(workflow_dir, node))
}

pub fn attempt_dir(workflow_dir: &str, node: &str, attempt: u32) -> String {
    format!("{}/{attempt}", node_data_dir(workflow_dir, node))
}

pub fn attempt_outputs(workflow_dir: &str, node: &str, attempt: u32) -> String {
    format!("{}/outputs.pb", attempt_dir(workflow_dir, node, attempt))
}

/// `outputs.pb` in an output directory (an attempt's, an item's).
pub fn outputs_in(dir: &str) -> String {
    format!("{dir}/outputs.pb")
}

/// The `futures.pb` a dynamic task wrote in its output directory.
pub fn futures_in(dir: &str) -> String {
    format!("{dir}/futures.pb")
}

/// The workflow compiled from a dynamic node's `futures.pb`, beside it.
pub fn dynamic_compiled_in(dir: &str) -> String {
    format!("{dir}/dynamic_compiled.pb")
}

/// The deck a task wrote in its output directory.
pub fn deck_in(dir: &str) -> String {
    format!("{dir}/deck.html")
}

/// The output directory of one attempt of one map item.
pub fn item_dir(workflow_dir: &str, node: &str, item: u32, attempt: u32) -> String {
    format!("{}/{item}/{attempt}", attempt_dir(workflow_dir, node, 0))
}

/// The inputs of a map item that has its own inputs file.
pub fn item_inputs(workflow_dir: &str, node: &str, item: u32) -> String {
    format!("{}/{item}/inputs.pb", attempt_dir(workflow_dir, node, 0))
}

/// Where the catalog files the outputs of one artifact (the engine's cache puts and the
/// DataCatalog service alike; readers follow the artifact record's URI).
pub fn catalog_outputs(
    project: &str,
    domain: &str,
    dataset: &str,
    version: &str,
    artifact_id: &str,
) -> String {
    format!("catalog/{project}/{domain}/{dataset}/{version}/{artifact_id}/outputs.pb")
}

/// The default raw-output base inside the bucket.
pub const RAW_DATA: &str = "data";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_flyte() {
        let w = workflow_dir("p", "d", "e1");
        assert_eq!(w, "metadata/propeller/p-d-e1");
        assert_eq!(
            node_inputs(&w, "n0"),
            "metadata/propeller/p-d-e1/n0/data/inputs.pb"
        );
        assert_eq!(
            attempt_outputs(&w, "n0", 2),
            "metadata/propeller/p-d-e1/n0/data/2/outputs.pb"
        );
        assert_eq!(execution_inputs("p", "d", "e1"), "metadata/p/d/e1/inputs");
        assert_eq!(
            item_dir(&w, "n1", 7, 2),
            "metadata/propeller/p-d-e1/n1/data/0/7/2"
        );
        assert_eq!(
            item_inputs(&w, "n1", 7),
            "metadata/propeller/p-d-e1/n1/data/0/7/inputs.pb"
        );
        let dir = attempt_dir(&w, "n0", 0);
        assert_eq!(
            deck_in(&dir),
            "metadata/propeller/p-d-e1/n0/data/0/deck.html"
        );
        assert_eq!(
            catalog_outputs("p", "d", "flyte_task-t", "v-a-b", "id"),
            "catalog/p/d/flyte_task-t/v-a-b/id/outputs.pb"
        );
    }
}
