//! Flyte list semantics: filter expressions (`eq(version,v1)+ne(name,x)`), sort keys,
//! limit and token paging (the token is an offset; the last page returns an empty token).

use crate::error::{ApiResult, invalid};
use contrail_idl::admin::Sort;
use contrail_store::{Column, Filter, Op};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;

fn column(field: &str) -> Option<Column> {
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

/// Parses Flyte's filter syntax.
pub fn parse_filters(s: &str) -> ApiResult<Vec<Filter>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split('+')
        .map(|term| {
            let bad = || {
                invalid(format!(
                    "filters: cannot parse '{term}' (expected e.g. eq(version,v1))"
                ))
            };
            let (func, rest) = term.trim().split_once('(').ok_or_else(bad)?;
            let args = rest.strip_suffix(')').ok_or_else(bad)?;
            let (field, value) = args.split_once(',').ok_or_else(bad)?;
            let op = match func {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "gte" => Op::Gte,
                "lt" => Op::Lt,
                "lte" => Op::Lte,
                "contains" => Op::Contains,
                "value_in" => Op::ValueIn,
                other => return Err(invalid(format!("filters: unknown function '{other}'"))),
            };
            let column = column(field.trim()).ok_or_else(|| {
                invalid(format!(
                    "filters: cannot filter on field '{}'",
                    field.trim()
                ))
            })?;
            let values = if op == Op::ValueIn {
                value.split(';').map(|v| v.trim().to_string()).collect()
            } else {
                vec![value.trim().to_string()]
            };
            Ok(Filter { column, op, values })
        })
        .collect()
}

/// Sort key and direction (DESCENDING = 0 is Flyte's default).
pub fn parse_sort(sort: Option<&Sort>) -> ApiResult<Option<(Column, bool)>> {
    let Some(s) = sort else { return Ok(None) };
    if s.key.is_empty() {
        return Ok(None);
    }
    let col = column(&s.key)
        .ok_or_else(|| invalid(format!("sort_by.key: cannot sort by '{}'", s.key)))?;
    Ok(Some((col, s.direction == 0)))
}

pub fn parse_token(token: &str) -> ApiResult<u64> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse()
        .map_err(|_| invalid(format!("token '{token}' is not a token this server issued")))
}

pub fn limit(l: u32) -> u32 {
    match l {
        0 => DEFAULT_LIMIT,
        l => l.min(MAX_LIMIT),
    }
}

/// Given `limit + 1` fetched rows, trims to `limit` and returns the next token ("" at the end).
pub fn page<T>(mut rows: Vec<T>, offset: u64, limit: u32) -> (Vec<T>, String) {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        (rows, (offset + limit as u64).to_string())
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
    fn the_last_page_has_an_empty_token() {
        assert_eq!(page(vec![1, 2, 3], 0, 2), (vec![1, 2], "2".to_string()));
        assert_eq!(page(vec![3], 2, 2), (vec![3], String::new()));
        assert!(parse_token("abc").is_err());
    }
}
