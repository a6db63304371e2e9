//! The Flyte workflow compiler: a pure function from a registered workflow spec (plus the
//! already-registered tasks and launch plans it references) to a `CompiledWorkflowClosure`.
//!
//! Architecture Invariant: no IO, no async, no clock. Callers load the references named by
//! [`requirements`] and pass them in.

mod quantity;
mod typing;
mod workflow;

pub use quantity::quantity;
pub use typing::{castable, check_constant, describe, is_optional};
pub use workflow::{
    Compiled, END_NODE, LaunchPlanInterface, References, Requirements, START_NODE,
    compile_workflow, requirements, walk_nodes,
};

use contrail_idl::core::Identifier;

/// A fully qualified entity key: project, domain, name, version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub project: String,
    pub domain: String,
    pub name: String,
    pub version: String,
}

impl Key {
    pub fn of(id: &Identifier) -> Self {
        Key {
            project: id.project.clone(),
            domain: id.domain.clone(),
            name: id.name.clone(),
            version: id.version.clone(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}@{}",
            self.project, self.domain, self.name, self.version
        )
    }
}

/// Why a workflow does not compile. Each variant's message names the node and field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("workflow has no template")]
    MissingTemplate,
    #[error("node id must not be empty")]
    EmptyNodeId,
    #[error("node id '{0}' is reserved")]
    ReservedNodeId(String),
    #[error("node id '{0}' is used more than once")]
    DuplicateNodeId(String),
    #[error("node '{0}' has no target (task, workflow, branch, gate or array)")]
    MissingTarget(String),
    #[error("node '{node}': task {task} is not registered")]
    TaskNotFound { node: String, task: Key },
    #[error("node '{node}': launch plan {launch_plan} is not registered")]
    LaunchPlanNotFound { node: String, launch_plan: Key },
    #[error("node '{node}': sub-workflow {workflow} is not in spec.sub_workflows")]
    SubWorkflowNotFound { node: String, workflow: Key },
    #[error("node '{node}': input '{var}' is bound but the target has no such input")]
    UnknownInput { node: String, var: String },
    #[error("node '{node}': input '{var}' is bound more than once")]
    DuplicateBinding { node: String, var: String },
    #[error("node '{node}': required input '{var}' is not bound")]
    UnboundInput { node: String, var: String },
    #[error("node '{node}': input '{var}' refers to node '{source_node}', which does not exist")]
    UnknownSourceNode {
        node: String,
        var: String,
        source_node: String,
    },
    #[error(
        "node '{node}': input '{var}' refers to '{source_node}.{source_var}', which is not an output of '{source_node}'"
    )]
    UnknownSourceVar {
        node: String,
        var: String,
        source_node: String,
        source_var: String,
    },
    #[error("node '{node}': input '{var}' of type {expected} cannot be bound to {found}")]
    MismatchingTypes {
        node: String,
        var: String,
        expected: String,
        found: String,
    },
    #[error("node '{node}': upstream node '{upstream}' does not exist")]
    UnknownUpstream { node: String, upstream: String },
    #[error("branch node '{0}' has no case")]
    BranchWithoutCase(String),
    #[error("branch node '{0}': a case has no then_node")]
    BranchCaseWithoutNode(String),
    #[error("branch node '{0}' has neither an else_node nor an else error")]
    BranchWithoutElse(String),
    #[error("array node '{0}' has no sub-node")]
    ArrayWithoutNode(String),
    #[error("cycle detected: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("recursive workflow: {} (a workflow may not call itself)", .0.join(" -> "))]
    RecursiveWorkflow(Vec<String>),
    #[error("nodes not reachable from start-node: {}", .0.join(", "))]
    Unreachable(Vec<String>),
    #[error("workflow output '{0}' is declared in the interface but not bound")]
    UnboundOutput(String),
    #[error("workflow output binding '{0}' is not declared in the interface")]
    UnknownOutput(String),
    #[error("workflow output '{var}' is bound more than once")]
    DuplicateOutput { var: String },
}
