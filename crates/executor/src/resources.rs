//! What a task asks for: Kubernetes quantities (`500m`, `2Gi`) read into plain numbers.

use crate::AttemptSpec;
use contrail_idl::core::resources::ResourceName;

pub use contrail_compiler::quantity;

/// The value of one resource: the request (or the limit, when `limit_first`), falling back
/// to the other; `scale` as for [`quantity`]. 0 when the task names neither.
pub fn amount(spec: &AttemptSpec, name: ResourceName, scale: f64, limit_first: bool) -> u64 {
    let Some(r) = crate::container(&spec.task).and_then(|c| c.resources.as_ref()) else {
        return 0;
    };
    let (first, second) = if limit_first {
        (&r.limits, &r.requests)
    } else {
        (&r.requests, &r.limits)
    };
    first
        .iter()
        .chain(second)
        .find(|e| e.name == name as i32)
        .and_then(|e| quantity(&e.value, scale))
        .unwrap_or(0)
}

/// (cpu millicores, memory bytes) requested by the task (limits when no requests).
pub fn requests(spec: &AttemptSpec) -> (u64, u64) {
    (
        amount(spec, ResourceName::Cpu, 1000.0, false),
        amount(spec, ResourceName::Memory, 1.0, false),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity("500m", 1000.0), Some(500));
        assert_eq!(quantity("2", 1000.0), Some(2000));
        assert_eq!(quantity("1Gi", 1.0), Some(1 << 30));
        assert_eq!(quantity("100M", 1.0), Some(100_000_000));
        assert_eq!(quantity("x", 1.0), None);
        assert_eq!(quantity("inf", 1.0), None);
    }
}
