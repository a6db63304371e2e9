//! Flyte list semantics: filter expressions (`eq(version,v1)+ne(name,x)`), sort keys,
//! limit and token paging (the last page returns an empty token).
//!
//! Every part a client controls is parsed strictly and bounded: unknown fields and
//! functions, malformed terms, bad times and phase names are INVALID_ARGUMENT naming the
//! term; `value_in` takes at most [`MAX_VALUES_IN`] values; a page never carries more
//! than [`MAX_PAGE_BYTES`] of records; tokens are ones this server issued.

use crate::error::{ApiResult, invalid};
use contrail_idl::admin::Sort;
use contrail_store::{Column, Filter, Op};
use sha2::{Digest, Sha256};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;
/// The most values one `value_in` term may list.
pub const MAX_VALUES_IN: usize = 1_000;
/// The most terms one filter expression may have.
pub const MAX_TERMS: usize = 32;
/// The most bytes of records one page carries: under flytekit's 20 MiB receive limit,
/// with room for the response's own fields. A page is cut short (with a token) first.
pub const MAX_PAGE_BYTES: usize = 12 * 1024 * 1024;
/// The largest offset a token may carry.
const MAX_OFFSET: u64 = 1 << 40;

/// How phase names in filters are numbered (the enums differ per record kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phases {
    Workflow,
    /// Execution lists: workflow phases, and `workflow.name` and `launch_plan.name` name
    /// the execution's workflow and launch plan.
    Execution,
    Node,
    Task,
}

fn column(field: &str, phases: Phases) -> Option<Column> {
    if phases == Phases::Execution {
        match field {
            "workflow.name" => return Some(Column::Workflow),
            "launch_plan.name" => return Some(Column::LaunchPlan),
            _ => {}
        }
    }
    // Flyte allows an entity prefix, e.g. `launch_plan.name`.
    let bare = field.rsplit('.').next().unwrap_or(field);
    Some(match bare {
        "project" => Column::Project,
        "domain" => Column::Domain,
        "name" => Column::Name,
        "version" => Column::Version,
        "state" => Column::State,
        "created_at" => Column::CreatedAt,
        "updated_at" => Column::UpdatedAt,
        "phase" => Column::Phase,
        _ => return None,
    })
}

/// Parses Flyte's filter syntax, with phase names numbered as `phases` says.
pub fn parse_filters(s: &str) -> ApiResult<Vec<Filter>> {
    parse_filters_for(s, Phases::Workflow)
}

pub fn parse_filters_for(s: &str, phases: Phases) -> ApiResult<Vec<Filter>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let terms: Vec<&str> = s.split('+').collect();
    if terms.len() > MAX_TERMS {
        return Err(invalid(format!(
            "filters: {} terms; at most {MAX_TERMS} are accepted",
            terms.len()
        )));
    }
    terms
        .into_iter()
        .map(|term| parse_term(term.trim(), phases))
        .collect()
}

fn short(term: &str) -> String {
    if term.len() <= 80 {
        return term.to_string();
    }
    let mut end = 80;
    while !term.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &term[..end])
}

fn parse_term(term: &str, phases: Phases) -> ApiResult<Filter> {
    let bad = || {
        invalid(format!(
            "filters: cannot parse '{}' (expected e.g. eq(version,v1))",
            short(term)
        ))
    };
    let (func, rest) = term.split_once('(').ok_or_else(bad)?;
    let args = rest.strip_suffix(')').ok_or_else(bad)?;
    if args.contains(['(', ')']) {
        return Err(bad());
    }
    let (field, value) = args.split_once(',').ok_or_else(bad)?;
    let op = match func.trim() {
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "gt" => Op::Gt,
        "gte" => Op::Gte,
        "lt" => Op::Lt,
        "lte" => Op::Lte,
        "contains" => Op::Contains,
        "value_in" => Op::ValueIn,
        other => {
            return Err(invalid(format!(
                "filters: unknown function '{}' in '{}'",
                short(other),
                short(term)
            )));
        }
    };
    let column = column(field.trim(), phases).ok_or_else(|| {
        invalid(format!(
            "filters: cannot filter on field '{}'",
            short(field.trim())
        ))
    })?;
    let raw: Vec<&str> = if op == Op::ValueIn {
        value.split(';').map(str::trim).collect()
    } else {
        vec![value.trim()]
    };
    if raw.len() > MAX_VALUES_IN {
        return Err(invalid(format!(
            "filters: value_in on {} lists {} values; at most {MAX_VALUES_IN} are accepted",
            field.trim(),
            raw.len()
        )));
    }
    if op == Op::Contains && column.is_numeric() {
        return Err(invalid(format!(
            "filters: contains does not apply to the number {}",
            field.trim()
        )));
    }
    let values = raw
        .into_iter()
        .map(|v| {
            typed_value(column, v, phases).ok_or_else(|| {
                invalid(format!(
                    "filters: '{}' is not a valid {} in '{}'",
                    short(v),
                    field.trim(),
                    short(term)
                ))
            })
        })
        .collect::<ApiResult<Vec<String>>>()?;
    Ok(Filter { column, op, values })
}

/// A filter value as the store compares it: times as nanoseconds (RFC 3339 or a number),
/// phases as their number (by name or number), states as numbers.
fn typed_value(column: Column, v: &str, phases: Phases) -> Option<String> {
    use contrail_idl::core as c;
    match column {
        Column::CreatedAt | Column::UpdatedAt => {
            if let Ok(n) = v.parse::<i64>() {
                return Some(n.to_string());
            }
            let t: prost_types::Timestamp = v.parse().ok()?;
            let nanos = (t.seconds as i128) * 1_000_000_000 + t.nanos as i128;
            i64::try_from(nanos).ok().map(|n| n.to_string())
        }
        Column::State => v.parse::<i32>().ok().map(|n| n.to_string()),
        Column::Phase => {
            let by_name = match phases {
                Phases::Workflow | Phases::Execution => {
                    c::workflow_execution::Phase::from_str_name(v).map(|p| p as i32)
                }
                Phases::Node => c::node_execution::Phase::from_str_name(v).map(|p| p as i32),
                Phases::Task => c::task_execution::Phase::from_str_name(v).map(|p| p as i32),
            };
            by_name
                .or_else(|| v.parse::<i32>().ok().filter(|n| (0..=20).contains(n)))
                .map(|n| n.to_string())
        }
        _ if v.is_empty() => None,
        _ => Some(v.to_string()),
    }
}

/// Sort key and direction (DESCENDING = 0 is Flyte's default).
pub fn parse_sort(sort: Option<&Sort>) -> ApiResult<Option<(Column, bool)>> {
    let Some(s) = sort else { return Ok(None) };
    if s.key.is_empty() {
        return Ok(None);
    }
    let col = column(&s.key, Phases::Workflow)
        .ok_or_else(|| invalid(format!("sort_by.key: cannot sort by '{}'", s.key)))?;
    Ok(Some((col, s.direction == 0)))
}

/// The check part of a page token: a digest of its offset, so only tokens this server
/// made pass (tokens stay valid across replicas and restarts).
fn token_check(offset: u64) -> String {
    let d = Sha256::digest(format!("contrail page token v1:{offset}"));
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn issue_token(offset: u64) -> String {
    format!("{offset}-{}", token_check(offset))
}

pub fn parse_token(token: &str) -> ApiResult<u64> {
    if token.is_empty() {
        return Ok(0);
    }
    let bad = || {
        invalid(format!(
            "token '{}' is not a token this server issued",
            short(token)
        ))
    };
    let (offset, check) = token.split_once('-').ok_or_else(bad)?;
    let offset: u64 = offset.parse().map_err(|_| bad())?;
    if offset > MAX_OFFSET || check != token_check(offset) {
        return Err(bad());
    }
    Ok(offset)
}

pub fn limit(l: u32) -> u32 {
    match l {
        0 => DEFAULT_LIMIT,
        l => l.min(MAX_LIMIT),
    }
}

/// What a listed row costs in the response, roughly (its encoded record).
pub trait WireSize {
    fn wire_size(&self) -> usize;
}

impl WireSize for contrail_store::EntityRecord {
    fn wire_size(&self) -> usize {
        self.spec.len() + self.closure.len() + 256
    }
}
impl WireSize for contrail_store::ExecutionRecord {
    fn wire_size(&self) -> usize {
        self.record.len() + 128
    }
}
impl WireSize for contrail_store::NodeRecord {
    fn wire_size(&self) -> usize {
        self.record.len() + 128
    }
}
impl WireSize for contrail_store::TaskRecord {
    fn wire_size(&self) -> usize {
        self.record.len() + 128
    }
}
impl WireSize for contrail_store::SignalRecord {
    fn wire_size(&self) -> usize {
        self.ty.len() + self.value.as_ref().map_or(0, Vec::len) + self.signal_id.len() + 128
    }
}
impl WireSize for contrail_store::ProjectRecord {
    fn wire_size(&self) -> usize {
        self.id.len() + self.name.len() + self.description.len() + self.labels.len() + 64
    }
}
impl WireSize for String {
    fn wire_size(&self) -> usize {
        self.len() + 64
    }
}

/// Given `limit + 1` fetched rows, trims to `limit` rows and [`MAX_PAGE_BYTES`], and
/// returns the next token ("" at the end). A page holds at least one row.
pub fn page<T: WireSize>(rows: Vec<T>, offset: u64, limit: u32) -> (Vec<T>, String) {
    page_within(rows, offset, limit, MAX_PAGE_BYTES)
}

fn page_within<T: WireSize>(
    mut rows: Vec<T>,
    offset: u64,
    limit: u32,
    budget: usize,
) -> (Vec<T>, String) {
    let mut keep = rows.len().min(limit as usize);
    let mut total = 0usize;
    for (i, row) in rows.iter().take(keep).enumerate() {
        total = total.saturating_add(row.wire_size());
        if total > budget && i > 0 {
            keep = i;
            break;
        }
    }
    if rows.len() > keep {
        rows.truncate(keep);
        (rows, issue_token(offset + keep as u64))
    } else {
        (rows, String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flytekit_filters() {
        let f = parse_filters("eq(version,v1)").unwrap();
        assert_eq!(
            f,
            vec![Filter {
                column: Column::Version,
                op: Op::Eq,
                values: vec!["v1".into()]
            }]
        );
        let f = parse_filters("eq(launch_plan.name,a)+value_in(version,x;y)").unwrap();
        assert_eq!(f[1].values, vec!["x", "y"]);
        assert!(
            parse_filters("eq(color,red)")
                .unwrap_err()
                .to_string()
                .contains("color")
        );
        assert!(parse_filters("foo(version,1)").is_err());
        assert!(parse_filters("eq(version v1)").is_err());
    }

    #[test]
    fn the_last_page_has_an_empty_token_and_tokens_are_checked() {
        let rows = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (first, token) = page(rows(&["a", "b", "c"]), 0, 2);
        assert_eq!(first, rows(&["a", "b"]));
        assert_eq!(parse_token(&token).unwrap(), 2);
        assert_eq!(page(rows(&["c"]), 2, 2), (rows(&["c"]), String::new()));
        for forged in [
            "abc",
            "2",
            "18446744073709551615",
            "9223372036854775808-00",
            "3-000000000000",
        ] {
            assert!(parse_token(forged).is_err(), "{forged}");
        }
        let big = issue_token(MAX_OFFSET + 1);
        assert!(parse_token(&big).is_err());
    }

    #[test]
    fn a_page_is_cut_by_bytes_but_holds_at_least_one_row() {
        let rows: Vec<String> = (0..5).map(|_| "x".repeat(1000)).collect();
        let (kept, token) = page_within(rows.clone(), 10, 100, 2500);
        assert_eq!(kept.len(), 2);
        assert_eq!(parse_token(&token).unwrap(), 12);
        let (kept, _) = page_within(rows, 0, 100, 10);
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn filters_are_strict_and_bounded() {
        for bad in [
            "eq(name",
            "eq(name,a",
            "eq(name,a))",
            "eq(name)",
            "gt(created_at,not-a-time)",
            "eq(phase,NOT_A_PHASE)",
            "eq(state,active)",
            "contains(created_at,1)",
            "eq(name,a)+",
            "eq(name,)",
        ] {
            let e = parse_filters(bad).unwrap_err().to_string();
            assert!(e.contains("filters"), "{bad}: {e}");
        }
        let many = format!("value_in(name,{})", vec!["a"; MAX_VALUES_IN + 1].join(";"));
        assert!(
            parse_filters(&many)
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
        let t = parse_filters("gte(created_at,2024-01-02T03:04:05Z)").unwrap();
        assert_eq!(t[0].values, vec!["1704164645000000000"]);
        assert_eq!(
            parse_filters("eq(phase,SUCCEEDED)").unwrap()[0].values,
            vec!["4"]
        );
        assert_eq!(
            parse_filters_for("eq(phase,SUCCEEDED)", Phases::Node).unwrap()[0].values,
            vec!["3"]
        );
    }
}
