//! Where execution data lives, as Flyte lays it out (keys inside the bucket).
//!
//! - execution inputs (admin): `metadata/<project>/<domain>/<exec>/inputs`
//! - workflow data dir: `metadata/propeller/<project>-<domain>-<exec>`
//! - node data dir: `<workflow dir>/<node>/data`, with `inputs.pb`
//! - attempt output dir: `<node data dir>/<attempt>` with `outputs.pb`, `error.pb`,
//!   `futures.pb`, `deck.html`
//! - raw outputs: `<raw base>/<2-char shard>/<unique id>`

pub fn execution_inputs(project: &str, domain: &str, exec: &str) -> String {
    format!("metadata/{project}/{domain}/{exec}/inputs")
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
    }
}
