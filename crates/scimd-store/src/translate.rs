//! Resolved conditions ([`Cond`]) to parameterized SQL over `attr_values`.
//! Each term becomes `r.seq IN (SELECT … FROM attr_values …)`, which the
//! planner drives from the `(key, s, seq)` / `(key, n, seq)` indexes.

use rusqlite::types::Value as SqlValue;
use scimd_core::query::{Cond, SortKey};
use scimd_core::value::Comparable;
use scimd_filter::CompareOp;

/// SQL text with its bound parameters.
#[derive(Debug, Default)]
pub struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

impl Sql {
    fn param(&mut self, v: SqlValue) {
        self.text.push('?');
        self.params.push(v);
    }
}

/// Appends the condition as a boolean SQL expression about `r.seq`.
pub fn condition(sql: &mut Sql, cond: &Cond) {
    scoped_condition(sql, cond, Scope::Resource);
}

/// What a term is about: the resource `r`, or (inside a value filter) the
/// element `(p.seq, p.elem)` of the multi-valued attribute.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Resource,
    Element,
}

impl Scope {
    /// The opening of a term selecting index entries of this scope; the
    /// entry alias is `a`.
    fn term_prefix(self) -> &'static str {
        match self {
            Scope::Resource => "r.seq IN (SELECT a.seq FROM attr_values a WHERE a.key = ",
            Scope::Element => {
                "EXISTS (SELECT 1 FROM attr_values a WHERE a.seq = p.seq AND a.elem = p.elem AND a.key = "
            }
        }
    }
}

fn scoped_condition(sql: &mut Sql, cond: &Cond, scope: Scope) {
    match cond {
        Cond::And(a, b) | Cond::Or(a, b) => {
            sql.text.push('(');
            scoped_condition(sql, a, scope);
            sql.text.push_str(if matches!(cond, Cond::And(..)) {
                " AND "
            } else {
                " OR "
            });
            scoped_condition(sql, b, scope);
            sql.text.push(')');
        }
        Cond::Not(inner) => {
            sql.text.push_str("(NOT ");
            scoped_condition(sql, inner, scope);
            sql.text.push(')');
        }
        Cond::Present { key } => {
            sql.text.push_str(scope.term_prefix());
            sql.param(SqlValue::Text(key.clone()));
            sql.text.push(')');
        }
        Cond::Compare { key, op, value } => {
            sql.text.push_str(scope.term_prefix());
            sql.param(SqlValue::Text(key.clone()));
            sql.text.push_str(" AND ");
            comparison(sql, "a", *op, value);
            sql.text.push(')');
        }
        // Resolution never nests value filters.
        Cond::Element { .. } if scope == Scope::Element => sql.text.push('0'),
        Cond::Element { parent, cond } => {
            sql.text
                .push_str("r.seq IN (SELECT p.seq FROM attr_values p WHERE p.key = ");
            sql.param(SqlValue::Text(parent.clone()));
            sql.text.push_str(" AND ");
            scoped_condition(sql, cond, Scope::Element);
            sql.text.push(')');
        }
    }
}

/// The SQL operator of an equality or ordering comparison.
fn symbol(op: CompareOp) -> Option<&'static str> {
    match op {
        CompareOp::Eq => Some("="),
        CompareOp::Ne => Some("<>"),
        CompareOp::Gt => Some(">"),
        CompareOp::Ge => Some(">="),
        CompareOp::Lt => Some("<"),
        CompareOp::Le => Some("<="),
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => None,
    }
}

fn comparison(sql: &mut Sql, alias: &str, op: CompareOp, value: &Comparable) {
    let (col, param) = match value {
        Comparable::Number(n) => (format!("{alias}.n"), SqlValue::Real(*n)),
        Comparable::Text(t) => (format!("{alias}.s"), SqlValue::Text(t.clone())),
    };
    if let Some(sym) = symbol(op) {
        sql.text.push_str(&format!("{col} {sym} "));
        sql.param(param);
        return;
    }
    // Substring operators apply to text only (resolution refuses them on numbers).
    let Comparable::Text(t) = value else {
        sql.text.push('0');
        return;
    };
    match op {
        CompareOp::Co => {
            sql.text.push_str(&format!("instr({col}, "));
            sql.param(param);
            sql.text.push_str(") > 0");
        }
        CompareOp::Sw => {
            sql.text.push_str(&format!("{col} >= "));
            sql.param(param);
            match prefix_upper_bound(t) {
                Some(upper) => {
                    sql.text.push_str(&format!(" AND {col} < "));
                    sql.param(SqlValue::Text(upper));
                }
                None => {
                    sql.text.push_str(&format!(" AND substr({col}, 1, length("));
                    sql.param(SqlValue::Text(t.clone()));
                    sql.text.push_str(")) = ");
                    sql.param(SqlValue::Text(t.clone()));
                }
            }
        }
        _ => {
            sql.text.push_str(&format!("length({col}) >= length("));
            sql.param(param);
            sql.text
                .push_str(&format!(") AND substr({col}, length({col}) - length("));
            sql.param(SqlValue::Text(t.clone()));
            sql.text.push_str(") + 1) = ");
            sql.param(SqlValue::Text(t.clone()));
        }
    }
}

/// The smallest string greater than every string starting with `prefix`:
/// strings with that prefix are exactly `[prefix, upper)` in byte order.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    let last = chars.pop()?;
    let next = match last as u32 {
        0xD7FF => char::from_u32(0xE000)?,
        c => char::from_u32(c + 1)?,
    };
    chars.push(next);
    Some(chars.into_iter().collect())
}

/// `ORDER BY` for a sort key: missing values last ascending, first
/// descending (RFC 7644 3.4.2.3); ties broken by insertion order.
pub fn order_by(sql: &mut Sql, sort: Option<&SortKey>) {
    sql.text.push_str(" ORDER BY ");
    if let Some(sort) = sort {
        let col = if sort.numeric { "n" } else { "s" };
        sql.text.push_str(&format!(
            "(SELECT a.{col} FROM attr_values a WHERE a.seq = r.seq AND a.key = "
        ));
        sql.param(SqlValue::Text(sort.key.clone()));
        sql.text.push_str(" ORDER BY a.prim DESC, a.elem LIMIT 1)");
        sql.text.push_str(if sort.descending {
            " DESC NULLS FIRST, "
        } else {
            " ASC NULLS LAST, "
        });
    }
    sql.text.push_str("r.seq");
}
