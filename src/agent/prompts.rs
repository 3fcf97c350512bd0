//! Prompt templates: minijinja files in the prompts folder, referenced by name from the config
//! (`[prompts] system`, per-channel `[prompts.channels]`), all compiled and checked when
//! conveyor starts.
//!
//! The check is strict on purpose: a template that names a variable conveyor does not provide
//! would otherwise render as an empty string and quietly weaken the prompt. So every variable a
//! template reads must be one of [`PROVIDED`] or a `[prompts.vars]` constant, and an unknown one
//! is a start-up error with the file and the line.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `[prompts]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptsConfig {
    /// Folder of prompt templates, relative to the config folder.
    pub dir: PathBuf,
    /// Template of the system prompt.
    pub system: String,
    /// Per-channel system prompt templates, by channel name (`slack`, `api`, …).
    pub channels: BTreeMap<String, String>,
    /// Constants available to every template by name, e.g. `company = "Lumen Labs"`.
    pub vars: BTreeMap<String, String>,
}

impl Default for PromptsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("prompts"),
            system: "system.md.j2".into(),
            channels: BTreeMap::new(),
            vars: BTreeMap::new(),
        }
    }
}

/// Variables conveyor provides to every template.
pub const PROVIDED: &[&str] = &["channel", "user", "now", "tools", "context"];

/// A tool as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolLine {
    /// Tool name.
    pub name: String,
    /// What it does.
    pub description: String,
}

/// A numbered passage of retrieved context.
#[derive(Debug, Clone, Serialize)]
pub struct ContextItem {
    /// The citation number.
    pub n: usize,
    /// Document title.
    pub title: String,
    /// Path or URL.
    pub source: String,
    /// The passage.
    pub text: String,
}

/// What one rendering gets.
#[derive(Debug, Clone, Serialize)]
pub struct PromptInput {
    /// Channel name (`api`, `slack`, …).
    pub channel: String,
    /// The user's display name or id.
    pub user: String,
    /// Current time, RFC 3339.
    pub now: String,
    /// Tools the model may call.
    pub tools: Vec<ToolLine>,
    /// Retrieved passages, numbered for citation.
    pub context: Vec<ContextItem>,
}

/// The compiled templates.
#[derive(Debug)]
pub struct Prompts {
    env: Environment<'static>,
    system: String,
    channels: BTreeMap<String, String>,
    vars: BTreeMap<String, String>,
}

impl Prompts {
    /// Compiles every `*.j2` file of the configured folder and checks variables and references.
    /// A missing folder is fine when no template is needed (`require_system` false).
    pub fn load(config: &PromptsConfig, base_dir: &Path, require_system: bool) -> Result<Self> {
        let dir = base_dir.join(&config.dir);
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        let mut problems = Vec::new();
        let mut sources: Vec<(String, PathBuf, String)> = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                let mut paths: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "j2"))
                    .collect();
                paths.sort();
                for path in paths {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    match std::fs::read_to_string(&path) {
                        Ok(text) => sources.push((name, path, text)),
                        Err(e) => problems.push(format!("{}: cannot read: {e}", path.display())),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("{}: cannot read the folder: {e}", dir.display())),
        }

        let known: HashSet<&str> = PROVIDED
            .iter()
            .copied()
            .chain(config.vars.keys().map(String::as_str))
            .collect();
        for (name, path, text) in sources {
            if let Err(e) = env.add_template_owned(name.clone(), text.clone()) {
                problems.push(format!(
                    "{}:{}: {}",
                    path.display(),
                    e.line().unwrap_or(0),
                    e.detail().unwrap_or("syntax error")
                ));
                continue;
            }
            let Ok(template) = env.get_template(&name) else {
                continue;
            };
            let mut unknown: Vec<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !known.contains(v.as_str()))
                .collect();
            unknown.sort();
            for var in unknown {
                problems.push(format!(
                    "{}:{}: unknown variable `{var}`; templates can use {} (add constants under [prompts.vars])",
                    path.display(),
                    line_of(&text, &var),
                    known_list(&known)
                ));
            }
        }

        let mut referenced: Vec<(String, &str)> = Vec::new();
        if require_system {
            referenced.push(("prompts.system".into(), config.system.as_str()));
        }
        for (channel, template) in &config.channels {
            referenced.push((format!("prompts.channels.{channel}"), template.as_str()));
        }
        for (key, template) in referenced {
            if env.get_template(template).is_err() {
                problems.push(format!(
                    "{key} names the template {template:?}, which is not in {}",
                    dir.display()
                ));
            }
        }

        if !problems.is_empty() {
            return Err(Error::Config(format!(
                "prompt templates have {} problem{}:\n  - {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                problems.join("\n  - ")
            )));
        }
        Ok(Self {
            env,
            system: config.system.clone(),
            channels: config.channels.clone(),
            vars: config.vars.clone(),
        })
    }

    /// Renders the system prompt for `input.channel` (its own template when configured).
    pub fn system_prompt(&self, input: &PromptInput) -> Result<String> {
        let name = self.channels.get(&input.channel).unwrap_or(&self.system);
        let template = self
            .env
            .get_template(name)
            .map_err(|e| Error::Config(format!("prompt template {name:?}: {e}")))?;
        let mut ctx = serde_json::to_value(input)
            .map_err(|e| Error::internal("encoding prompt variables", e))?;
        if let Some(map) = ctx.as_object_mut() {
            for (k, v) in &self.vars {
                map.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
        }
        template
            .render(ctx)
            .map_err(|e| Error::Internal(format!("rendering prompt template {name:?}: {e}")))
    }
}

fn known_list(known: &HashSet<&str>) -> String {
    let mut v: Vec<&str> = known.iter().copied().collect();
    v.sort_unstable();
    v.join(", ")
}

/// 1-based line of the first use of `var` inside a `{{ }}` or `{% %}` tag. It walks the text
/// by characters, so a template in any script is read without slicing inside a character.
fn line_of(text: &str, var: &str) -> usize {
    let mut in_tag = false;
    let bytes = text.as_bytes();
    let mut line = 1;
    let mut skip_to = 0;
    for (i, c) in text.char_indices() {
        if i < skip_to {
            continue;
        }
        if c == '\n' {
            line += 1;
        }
        let rest = &text[i..];
        if !in_tag && (rest.starts_with("{{") || rest.starts_with("{%")) {
            in_tag = true;
            skip_to = i + 2;
            continue;
        }
        if in_tag && (rest.starts_with("}}") || rest.starts_with("%}")) {
            in_tag = false;
            skip_to = i + 2;
            continue;
        }
        if in_tag && rest.starts_with(var) {
            let before_ok = i == 0 || !is_ident(bytes[i - 1]);
            let after = i + var.len();
            let after_ok = after >= bytes.len() || !is_ident(bytes[after]);
            if before_ok && after_ok {
                return line;
            }
        }
    }
    1
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(dir: &Path, extra: &str) -> (PromptsConfig, std::path::PathBuf) {
        // The `[prompts]` section as a file would hold it (its sub-tables without the prefix).
        let extra = extra.replace("[prompts.", "[");
        let config: PromptsConfig = toml::from_str(&format!(
            "[vars]\ncompany = \"Acme\"\nassistant_name = \"Ada\"\n{extra}"
        ))
        .unwrap();
        (config, dir.to_path_buf())
    }

    fn load(config: &(PromptsConfig, std::path::PathBuf), require: bool) -> Result<Prompts> {
        Prompts::load(&config.0, &config.1, require)
    }

    /// Issue 12, finding 8: `line_of` stepped through bytes and sliced inside a character, so
    /// a non-ASCII template with a typo panicked at start-up.
    #[test]
    fn a_typo_in_a_non_ascii_template_is_reported_with_its_line() {
        assert_eq!(line_of("é{{ x }}\nΩ {{ é }} {{ typo }}", "typo"), 2);
        assert_eq!(line_of("{{ éé }}", "zz"), 1);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("prompts")).unwrap();
        std::fs::write(
            tmp.path().join("prompts/system.md.j2"),
            "Привет, {{ user }}!\nΣήμερα {{ nwo }}.\n",
        )
        .unwrap();
        let err = load(&config(tmp.path(), ""), true)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("nwo") && err.contains(":2"), "{err}");
    }

    fn input() -> PromptInput {
        PromptInput {
            channel: "api".into(),
            user: "ana".into(),
            now: "2026-11-26T10:00:00Z".into(),
            tools: vec![ToolLine {
                name: "search_knowledge".into(),
                description: "search".into(),
            }],
            context: vec![ContextItem {
                n: 1,
                title: "Refunds".into(),
                source: "docs/refunds.md".into(),
                text: "Refunds take 5 days.".into(),
            }],
        }
    }

    #[test]
    fn the_shipped_system_prompt_compiles_and_renders() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("prompts")).unwrap();
        std::fs::write(
            tmp.path().join("prompts/system.md.j2"),
            include_str!("../../prompts/system.md.j2"),
        )
        .unwrap();
        let p = load(&config(tmp.path(), ""), true).unwrap();
        let text = p.system_prompt(&input()).unwrap();
        assert!(
            text.contains("You are Ada, the assistant of Acme"),
            "{text}"
        );
        assert!(
            text.contains("[1] Refunds (docs/refunds.md)\nRefunds take 5 days."),
            "{text}"
        );
        assert!(text.contains("- search_knowledge: search"), "{text}");
    }

    #[test]
    fn unknown_variables_are_start_up_errors_with_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("prompts")).unwrap();
        std::fs::write(
            tmp.path().join("prompts/system.md.j2"),
            "Hello {{ user }}.\n{% if mood %}\n{{ compnay }}{% endif %}\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("prompts/broken.j2"), "{% if %}\n").unwrap();
        let err = load(&config(tmp.path(), ""), true).unwrap_err().to_string();
        assert!(
            err.contains("system.md.j2:2: unknown variable `mood`"),
            "{err}"
        );
        assert!(
            err.contains("system.md.j2:3: unknown variable `compnay`"),
            "{err}"
        );
        assert!(err.contains("broken.j2:1:"), "{err}");
        assert!(err.contains("3 problems"), "{err}");
    }

    #[test]
    fn channel_variants_and_missing_references() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("prompts")).unwrap();
        std::fs::write(
            tmp.path().join("prompts/system.md.j2"),
            "generic {{ user }}",
        )
        .unwrap();
        std::fs::write(tmp.path().join("prompts/slack.j2"), "slack {{ user }}").unwrap();
        let cfg = config(tmp.path(), "[prompts.channels]\nslack = \"slack.j2\"\n");
        let p = load(&cfg, true).unwrap();
        let mut i = input();
        assert_eq!(p.system_prompt(&i).unwrap(), "generic ana");
        i.channel = "slack".into();
        assert_eq!(p.system_prompt(&i).unwrap(), "slack ana");

        let cfg = config(tmp.path(), "[prompts.channels]\ndiscord = \"nope.j2\"\n");
        let err = load(&cfg, true).unwrap_err().to_string();
        assert!(err.contains("prompts.channels.discord"), "{err}");
        // No folder at all is fine when nothing needs a template.
        let empty = tempfile::tempdir().unwrap();
        assert!(load(&config(empty.path(), ""), false).is_ok());
        assert!(load(&config(empty.path(), ""), true).is_err());
    }
}
