//! Branch conditions, evaluated over the branch node's own inputs with Flyte's rules: only
//! scalar primitives compare, both sides must be the same primitive kind, booleans only
//! compare for (in)equality, datetimes and durations compare by whole seconds.

use contrail_idl::core::{
    self, BooleanExpression, LiteralMap, boolean_expression::Expr, comparison_expression::Operator,
    conjunction_expression::LogicalOperator, literal, operand, primitive::Value, scalar,
};
use std::cmp::Ordering;

/// Evaluates a condition. The error names what could not be compared.
pub fn evaluate(e: &BooleanExpression, inputs: &LiteralMap) -> Result<bool, String> {
    match &e.expr {
        Some(Expr::Conjunction(c)) => {
            let side = |x: &Option<Box<BooleanExpression>>| {
                x.as_deref()
                    .ok_or_else(|| "conjunction without an operand".to_string())
                    .and_then(|x| evaluate(x, inputs))
            };
            let (l, r) = (side(&c.left_expression)?, side(&c.right_expression)?);
            Ok(match LogicalOperator::try_from(c.operator) {
                Ok(LogicalOperator::Or) => l || r,
                _ => l && r,
            })
        }
        Some(Expr::Comparison(c)) => {
            let l = operand(c.left_value.as_ref(), inputs)?;
            let r = operand(c.right_value.as_ref(), inputs)?;
            let op = Operator::try_from(c.operator).map_err(|_| "unknown operator".to_string())?;
            compare(op, &l, &r)
        }
        None => Err("empty condition".into()),
    }
}

fn operand(o: Option<&core::Operand>, inputs: &LiteralMap) -> Result<Value, String> {
    #[allow(deprecated)]
    let from_scalar = |s: Option<&core::Scalar>, what: &str| match s.and_then(|s| s.value.as_ref())
    {
        Some(scalar::Value::Primitive(p)) => p
            .value
            .clone()
            .ok_or_else(|| format!("{what} is an empty primitive")),
        _ => Err(format!(
            "{what} is not a primitive value and cannot be compared"
        )),
    };
    #[allow(deprecated)]
    match o.and_then(|o| o.val.as_ref()) {
        Some(operand::Val::Primitive(p)) => p
            .value
            .clone()
            .ok_or_else(|| "empty primitive operand".into()),
        Some(operand::Val::Scalar(s)) => from_scalar(Some(s), "operand"),
        Some(operand::Val::Var(v)) => {
            let lit = inputs.literals.get(v).ok_or_else(|| {
                format!("condition reads '{v}', which is not an input of the branch")
            })?;
            match &lit.value {
                Some(literal::Value::Scalar(s)) => from_scalar(Some(s), &format!("'{v}'")),
                _ => Err(format!(
                    "'{v}' is not a primitive value and cannot be compared"
                )),
            }
        }
        None => Err("missing operand".into()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) => "integer",
        Value::FloatValue(_) => "float",
        Value::StringValue(_) => "string",
        Value::Boolean(_) => "boolean",
        Value::Datetime(_) => "datetime",
        Value::Duration(_) => "duration",
    }
}

fn compare(op: Operator, l: &Value, r: &Value) -> Result<bool, String> {
    let ord = match (l, r) {
        (Value::Integer(a), Value::Integer(b)) => a.cmp(b),
        (Value::FloatValue(a), Value::FloatValue(b)) => a
            .partial_cmp(b)
            .ok_or_else(|| "cannot compare NaN".to_string())?,
        (Value::StringValue(a), Value::StringValue(b)) => a.cmp(b),
        (Value::Datetime(a), Value::Datetime(b)) => a.seconds.cmp(&b.seconds),
        (Value::Duration(a), Value::Duration(b)) => a.seconds.cmp(&b.seconds),
        (Value::Boolean(a), Value::Boolean(b)) => {
            return match op {
                Operator::Eq => Ok(a == b),
                Operator::Neq => Ok(a != b),
                _ => Err(format!(
                    "booleans only compare with EQ or NEQ, not {}",
                    op.as_str_name()
                )),
            };
        }
        _ => {
            return Err(format!("cannot compare a {} with a {}", kind(l), kind(r)));
        }
    };
    Ok(match op {
        Operator::Eq => ord == Ordering::Equal,
        Operator::Neq => ord != Ordering::Equal,
        Operator::Gt => ord == Ordering::Greater,
        Operator::Gte => ord != Ordering::Less,
        Operator::Lt => ord == Ordering::Less,
        Operator::Lte => ord != Ordering::Greater,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::primitive_literal;
    use contrail_idl::core::{ComparisonExpression, ConjunctionExpression, Operand, Primitive};

    fn var(v: &str) -> Operand {
        Operand {
            val: Some(operand::Val::Var(v.into())),
        }
    }
    #[allow(deprecated)]
    fn prim(v: Value) -> Operand {
        Operand {
            val: Some(operand::Val::Primitive(Primitive { value: Some(v) })),
        }
    }
    fn cmp(op: Operator, l: Operand, r: Operand) -> BooleanExpression {
        BooleanExpression {
            expr: Some(Expr::Comparison(ComparisonExpression {
                operator: op as i32,
                left_value: Some(l),
                right_value: Some(r),
            })),
        }
    }
    fn inputs(pairs: &[(&str, Value)]) -> LiteralMap {
        LiteralMap {
            literals: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), primitive_literal(v.clone())))
                .collect(),
        }
    }

    #[test]
    fn comparisons_follow_flytes_rules() {
        let m = inputs(&[
            (".x", Value::Integer(11)),
            ("n0.o0", Value::Boolean(false)),
            (".f", Value::FloatValue(1.5)),
            (".s", Value::StringValue("b".into())),
        ]);
        let t = |e: BooleanExpression| evaluate(&e, &m);
        assert_eq!(
            t(cmp(Operator::Gt, var(".x"), prim(Value::Integer(10)))),
            Ok(true)
        );
        assert_eq!(
            t(cmp(Operator::Lte, var(".x"), prim(Value::Integer(10)))),
            Ok(false)
        );
        assert_eq!(
            t(cmp(Operator::Gte, var(".x"), prim(Value::Integer(11)))),
            Ok(true)
        );
        assert_eq!(
            t(cmp(Operator::Neq, var(".x"), prim(Value::Integer(11)))),
            Ok(false)
        );
        assert_eq!(
            t(cmp(Operator::Eq, var("n0.o0"), prim(Value::Boolean(true)))),
            Ok(false)
        );
        assert_eq!(
            t(cmp(Operator::Lt, var(".f"), prim(Value::FloatValue(2.0)))),
            Ok(true)
        );
        assert_eq!(
            t(cmp(
                Operator::Gt,
                var(".s"),
                prim(Value::StringValue("a".into()))
            )),
            Ok(true)
        );
        // int vs float is an error, as in Flyte; so are ordered booleans and unknown vars.
        assert!(t(cmp(Operator::Gt, var(".x"), prim(Value::FloatValue(1.0)))).is_err());
        assert!(t(cmp(Operator::Gt, var("n0.o0"), prim(Value::Boolean(true)))).is_err());
        let e = t(cmp(Operator::Eq, var(".nope"), prim(Value::Integer(1)))).unwrap_err();
        assert!(e.contains(".nope"), "{e}");
    }

    #[test]
    fn datetimes_and_durations_compare_by_seconds() {
        let at = |s, n| {
            Value::Datetime(prost_types::Timestamp {
                seconds: s,
                nanos: n,
            })
        };
        let m = inputs(&[(".t", at(100, 900))]);
        let e = cmp(Operator::Eq, var(".t"), prim(at(100, 1)));
        assert_eq!(evaluate(&e, &m), Ok(true));
        let d = |s| {
            Value::Duration(prost_types::Duration {
                seconds: s,
                nanos: 0,
            })
        };
        let e = cmp(Operator::Lt, prim(d(5)), prim(d(6)));
        assert_eq!(evaluate(&e, &m), Ok(true));
    }

    #[test]
    fn conjunctions_combine_both_sides() {
        let m = inputs(&[(".x", Value::Integer(3))]);
        let yes = cmp(Operator::Eq, var(".x"), prim(Value::Integer(3)));
        let no = cmp(Operator::Eq, var(".x"), prim(Value::Integer(4)));
        let conj =
            |op: LogicalOperator, l: &BooleanExpression, r: &BooleanExpression| BooleanExpression {
                expr: Some(Expr::Conjunction(Box::new(ConjunctionExpression {
                    operator: op as i32,
                    left_expression: Some(Box::new(l.clone())),
                    right_expression: Some(Box::new(r.clone())),
                }))),
            };
        assert_eq!(
            evaluate(&conj(LogicalOperator::And, &yes, &no), &m),
            Ok(false)
        );
        assert_eq!(
            evaluate(&conj(LogicalOperator::Or, &yes, &no), &m),
            Ok(true)
        );
        assert_eq!(
            evaluate(&conj(LogicalOperator::Or, &no, &no), &m),
            Ok(false)
        );
    }
}
