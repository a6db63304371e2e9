//! Request validation: every message names the offending field.

use crate::error::{ApiResult, invalid};
use contrail_idl::core::{Identifier, ResourceType};

pub const MAX_NAME: usize = 512;

/// A non-empty printable string of bounded length.
pub fn text(field: &str, v: &str) -> ApiResult<()> {
    if v.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if v.len() > MAX_NAME {
        return Err(invalid(format!("{field} is longer than {MAX_NAME} bytes")));
    }
    if v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(format!(
            "{field} '{}' contains whitespace or control characters",
            v.escape_debug()
        )));
    }
    Ok(())
}

/// A fully specified identifier of the given resource type.
pub fn identifier(
    field: &str,
    id: Option<&Identifier>,
    kind: ResourceType,
) -> ApiResult<Identifier> {
    let id = id.ok_or_else(|| invalid(format!("{field} is missing")))?;
    if id.resource_type != kind as i32 && id.resource_type != ResourceType::Unspecified as i32 {
        return Err(invalid(format!(
            "{field}.resource_type must be {}, got {}",
            kind.as_str_name(),
            ResourceType::try_from(id.resource_type)
                .map(|r| r.as_str_name())
                .unwrap_or("an unknown value")
        )));
    }
    text(&format!("{field}.project"), &id.project)?;
    text(&format!("{field}.domain"), &id.domain)?;
    text(&format!("{field}.name"), &id.name)?;
    text(&format!("{field}.version"), &id.version)?;
    let mut id = id.clone();
    id.resource_type = kind as i32;
    Ok(id)
}

/// A project id: lowercase letters, digits and dashes, 1..=63, starting with a letter or digit.
pub fn project_id(field: &str, v: &str) -> ApiResult<()> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} '{}' must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'",
            v.escape_debug()
        )))
    }
}
