//! Builds compiled workflow closures for engine tests: task nodes with explicit edges.

use contrail_idl::core::{self, node::Target, task_node::Reference};

pub fn task_id() -> core::Identifier {
    core::Identifier {
        resource_type: core::ResourceType::Task as i32,
        project: "p".into(),
        domain: "d".into(),
        name: "t".into(),
        version: "v".into(),
        org: String::new(),
    }
}

/// A workflow of task nodes `n0..`; `edges[i]` lists the nodes `n<i>` depends on.
/// `retries[i]` and `timeouts[i]` (seconds) are per node; the end node depends on every node.
pub fn closure(
    edges: &[Vec<usize>],
    retries: &[u32],
    timeouts: &[u64],
    fail_after_complete: bool,
) -> core::CompiledWorkflowClosure {
    let mut nodes = vec![core::Node {
        id: "start-node".into(),
        ..Default::default()
    }];
    for (i, ups) in edges.iter().enumerate() {
        nodes.push(core::Node {
            id: format!("n{i}"),
            upstream_node_ids: ups.iter().map(|u| format!("n{u}")).collect(),
            metadata: Some(core::NodeMetadata {
                retries: Some(core::RetryStrategy {
                    retries: retries.get(i).copied().unwrap_or(0),
                }),
                timeout: timeouts
                    .get(i)
                    .filter(|t| **t > 0)
                    .map(|t| prost_types::Duration {
                        seconds: *t as i64,
                        nanos: 0,
                    }),
                ..Default::default()
            }),
            target: Some(Target::TaskNode(core::TaskNode {
                reference: Some(Reference::ReferenceId(task_id())),
                ..Default::default()
            })),
            ..Default::default()
        });
    }
    nodes.push(core::Node {
        id: "end-node".into(),
        upstream_node_ids: (0..edges.len()).map(|i| format!("n{i}")).collect(),
        ..Default::default()
    });
    core::CompiledWorkflowClosure {
        primary: Some(core::CompiledWorkflow {
            template: Some(core::WorkflowTemplate {
                nodes,
                metadata: Some(core::WorkflowMetadata {
                    on_failure: fail_after_complete as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            connections: None,
        }),
        tasks: vec![core::CompiledTask {
            template: Some(core::TaskTemplate {
                id: Some(task_id()),
                r#type: "python-task".into(),
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}
