//! Rendering a step's templates at run time. Definitions were checked at start-up
//! (`def::template`), so what fails here is data: a value that does not render.
//!
//! A string that is exactly one `{{ expression }}` is evaluated as an expression and keeps its
//! type (`{{ steps.q.rows }}` is the list, not its text), so tool arguments, bodies and
//! `for_each` get structured values; any other template renders to text.

use serde_json::Value;

/// The template engine of the workflows (one per engine; templates are compiled per render,
/// they are short).
pub struct Templates {
    env: minijinja::Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        let mut env = minijinja::Environment::new();
        // Data may lack a field a template reads (`steps.q.rows` of a skipped step): that is
        // empty, not an error. Names were checked against the definition at start-up.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        env.add_filter("tojson", tojson);
        Self { env }
    }
}

fn tojson(v: minijinja::Value) -> Result<String, minijinja::Error> {
    serde_json::to_string(&v)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))
}

/// Whether `text` has template syntax at all.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// The expression of a template that is exactly `{{ expression }}`.
fn sole_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner)
}

impl Templates {
    /// Renders `text` to text over `ctx`.
    pub fn text(&self, text: &str, ctx: &Value) -> Result<String, String> {
        if !is_template(text) {
            return Ok(text.to_string());
        }
        self.env
            .render_str(text, ctx)
            .map_err(|e| format!("template `{}` did not render: {e}", short(text)))
    }

    /// Renders `text` to a value: an expression's own value, other templates' text.
    pub fn value(&self, text: &str, ctx: &Value) -> Result<Value, String> {
        let Some(expr) = sole_expression(text) else {
            return self.text(text, ctx).map(Value::String);
        };
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| format!("template `{}` is not an expression: {e}", short(text)))?;
        let v = compiled
            .eval(ctx)
            .map_err(|e| format!("template `{}` did not evaluate: {e}", short(text)))?;
        if v.is_undefined() || v.is_none() {
            return Ok(Value::Null);
        }
        serde_json::to_value(&v).map_err(|e| {
            format!(
                "template `{}` gave a value that is not JSON: {e}",
                short(text)
            )
        })
    }

    /// Whether `text` holds: an expression's truth (empty lists, `0`, `""`, `none` and
    /// `false` are false), or rendered text that is neither empty nor `false`/`0`.
    pub fn truthy(&self, text: &str, ctx: &Value) -> Result<bool, String> {
        if let Some(expr) = sole_expression(text) {
            let compiled = self
                .env
                .compile_expression(expr)
                .map_err(|e| format!("template `{}` is not an expression: {e}", short(text)))?;
            let v = compiled
                .eval(ctx)
                .map_err(|e| format!("template `{}` did not evaluate: {e}", short(text)))?;
            return Ok(v.is_true());
        }
        let t = self.text(text, ctx)?;
        let t = t.trim();
        Ok(!(t.is_empty() || t.eq_ignore_ascii_case("false") || t == "0"))
    }

    /// Every string of `v` rendered with [`Templates::value`].
    pub fn json(&self, v: &Value, ctx: &Value) -> Result<Value, String> {
        Ok(match v {
            Value::String(s) => self.value(s, ctx)?,
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.json(x, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| Ok((k.clone(), self.json(x, ctx)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// The start of a template, for messages.
fn short(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sole_expression_keeps_its_type_and_text_renders() {
        let t = Templates::default();
        let ctx = json!({"steps": {"q": {"rows": [{"a": 1}, {"a": 2}], "n": 0}}, "input": {"who": "Ana"}});
        assert_eq!(
            t.value("{{ steps.q.rows }}", &ctx).unwrap(),
            json!([{"a": 1}, {"a": 2}])
        );
        assert_eq!(
            t.value("Hi {{ input.who }}", &ctx).unwrap(),
            json!("Hi Ana")
        );
        assert_eq!(t.value("{{ steps.gone.x }}", &ctx).unwrap(), Value::Null);
        assert!(!t.truthy("{{ steps.q.n }}", &ctx).unwrap());
        assert!(t.truthy("{{ steps.q.rows }}", &ctx).unwrap());
        assert!(!t.truthy("{{ not steps.q.rows }}", &ctx).unwrap());
        assert_eq!(
            t.text("{{ steps.q.rows | tojson }}", &ctx).unwrap(),
            r#"[{"a":1},{"a":2}]"#
        );
    }
}
