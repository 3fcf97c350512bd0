//! Gold models: `connectors/NAME.sql` files (or inline, `[connectors.models]` NAME = SQL),
//! each one read-only query over silver (and other gold) tables, materialised into
//! `gold/NAME` by `conveyor sync` after the sources ran.
//!
//! A model is rebuilt only when its SQL text or the Delta version of one of its input tables
//! changed since its last build (recorded in the store by [`Store::gold_record`]). Models that
//! read other models are built after them; a cycle, an unknown table or a failing query fails
//! that model (and the models reading it) with an error naming the file, while the others
//! still build and a failed model's previous gold version stays readable.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::valid_name;
use crate::error::{Error, Result};
use crate::lakehouse::{Lakehouse, Layer, TableName, is_explain, model_inputs};
use crate::store::{GoldState, Store};

/// One model file.
#[derive(Debug, Clone)]
pub struct Model {
    /// The gold table's name (the file name without `.sql`).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The query.
    pub sql: String,
}

/// Reads every `*.sql` file of `dir` (none when the folder does not exist), sorted by name.
pub fn load_models(dir: &Path) -> Result<Vec<Model>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Config(format!("cannot list {}: {e}", dir.display())));
        }
    };
    let mut models = Vec::new();
    let mut problems = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        if !valid_name(&name) {
            problems.push(format!(
                "{}: the file name `{name}` becomes the table gold.{name}, so it must start with a lowercase letter and hold only lowercase letters, digits and '_'",
                path.display()
            ));
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(sql) => models.push(Model { name, path, sql }),
            Err(e) => problems.push(format!("{}: cannot read it: {e}", path.display())),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Config(problems.join("\n")));
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// The model files of `dir` and the inline models of `[connectors.models]`, sorted by name;
/// a name defined both ways is an error naming both.
pub fn all_models(dir: &Path, inline: &BTreeMap<String, String>) -> Result<Vec<Model>> {
    let mut models = load_models(dir)?;
    let mut problems = Vec::new();
    for (name, sql) in inline {
        if let Some(file) = models.iter().find(|m| &m.name == name) {
            problems.push(format!(
                "the gold model `{name}` is defined twice: {} and [connectors.models] {name}; keep one",
                file.path.display()
            ));
            continue;
        }
        models.push(Model {
            name: name.clone(),
            path: PathBuf::from(format!("[connectors.models] {name}")),
            sql: sql.clone(),
        });
    }
    if !problems.is_empty() {
        return Err(Error::Config(problems.join("\n")));
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// What happened to one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum GoldStatus {
    /// Rebuilt: a new version of the gold table.
    Built {
        /// The gold table's version.
        version: i64,
        /// Its rows.
        rows: u64,
    },
    /// Nothing it reads changed; not rebuilt.
    Unchanged {
        /// The gold table's version.
        version: i64,
    },
    /// Not built yet: it reads the silver table of a connector that has not run yet.
    Waiting {
        /// The table it waits for.
        table: String,
    },
    /// Not built; the previous version (if any) stays.
    Failed {
        /// Why.
        error: String,
    },
}

/// One model's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct GoldReport {
    /// The model (gold table) name.
    pub model: String,
    /// What happened.
    #[serde(flatten)]
    pub status: GoldStatus,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Builds every model whose inputs or SQL changed, in dependency order. `Err` only when the
/// store fails; a model's own problem is its report's `Failed`. `connectors` are the names of
/// the defined connectors: a model reading one whose silver table does not exist yet waits.
pub async fn build_all(
    lake: &Lakehouse,
    store: &Store,
    models: &[Model],
    connectors: &[String],
) -> Result<Vec<GoldReport>> {
    let mut inputs: HashMap<&str, Result<Vec<TableName>>> = HashMap::new();
    for m in models {
        let parsed = model_inputs(&m.sql).and_then(|tables| {
            if is_explain(&m.sql) {
                return Err(Error::BadInput(
                    "it is an EXPLAIN; a model is the query whose rows become the table (try EXPLAIN with `conveyor sql`)".into(),
                ));
            }
            for t in &tables {
                if t.layer == Layer::Gold && !models.iter().any(|o| o.name == t.name) {
                    return Err(Error::BadInput(format!(
                        "it reads {t}, which is not a model (there is no {}.sql next to it)",
                        t.name
                    )));
                }
            }
            Ok(tables)
        });
        inputs.insert(m.name.as_str(), parsed);
    }

    // Depth-first order: a model after the models it reads; a cycle fails its members.
    let mut order: Vec<&Model> = Vec::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = visiting, 2 = done
    for m in models {
        visit(
            m,
            models,
            &inputs,
            &mut state,
            &mut Vec::new(),
            &mut order,
            &mut failed,
        );
    }

    let mut reports = Vec::new();
    for m in models {
        if let Some(e) = failed.get(&m.name) {
            reports.push(failure(m, e.clone(), 0.0));
        }
    }
    for m in order {
        let started = Instant::now();
        let status = match build_one(lake, store, m, &inputs, &reports, connectors).await? {
            Ok(s) => s,
            Err(e) => GoldStatus::Failed {
                error: format!("{}: {e}", m.path.display()),
            },
        };
        reports.push(GoldReport {
            model: m.name.clone(),
            status,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    reports.sort_by(|a, b| a.model.cmp(&b.model));
    Ok(reports)
}

fn failure(m: &Model, e: String, seconds: f64) -> GoldReport {
    GoldReport {
        model: m.name.clone(),
        status: GoldStatus::Failed {
            error: format!("{}: {e}", m.path.display()),
        },
        seconds,
    }
}

fn visit<'a>(
    m: &'a Model,
    models: &'a [Model],
    inputs: &HashMap<&str, Result<Vec<TableName>>>,
    state: &mut HashMap<&'a str, u8>,
    path: &mut Vec<&'a str>,
    order: &mut Vec<&'a Model>,
    failed: &mut BTreeMap<String, String>,
) {
    match state.get(m.name.as_str()) {
        Some(2) => return,
        Some(_) => {
            let start = path.iter().position(|n| *n == m.name).unwrap_or(0);
            let mut cycle: Vec<&str> = path[start..].to_vec();
            cycle.push(&m.name);
            let text = cycle
                .iter()
                .map(|n| format!("gold.{n}"))
                .collect::<Vec<_>>()
                .join(" → ");
            for n in &path[start..] {
                failed
                    .entry((*n).to_string())
                    .or_insert_with(|| format!("models read each other in a cycle: {text}"));
            }
            return;
        }
        None => {}
    }
    state.insert(&m.name, 1);
    path.push(&m.name);
    match inputs.get(m.name.as_str()) {
        Some(Ok(tables)) => {
            for t in tables.iter().filter(|t| t.layer == Layer::Gold) {
                if let Some(dep) = models.iter().find(|o| o.name == t.name) {
                    visit(dep, models, inputs, state, path, order, failed);
                }
            }
        }
        Some(Err(e)) => {
            failed.insert(m.name.clone(), e.to_string());
        }
        None => {}
    }
    path.pop();
    state.insert(&m.name, 2);
    if !failed.contains_key(&m.name) {
        order.push(m);
    }
}

/// Builds one model when needed. The outer `Err` is a store failure (stops everything); the
/// inner one is this model's problem.
async fn build_one(
    lake: &Lakehouse,
    store: &Store,
    m: &Model,
    inputs: &HashMap<&str, Result<Vec<TableName>>>,
    done: &[GoldReport],
    connectors: &[String],
) -> Result<Result<GoldStatus>> {
    let tables = match inputs.get(m.name.as_str()) {
        Some(Ok(t)) => t,
        _ => {
            return Ok(Err(Error::Internal(format!(
                "no inputs for gold.{}",
                m.name
            ))));
        }
    };
    let mut versions = serde_json::Map::new();
    for t in tables {
        if t.layer == Layer::Gold
            && let Some(r) = done.iter().find(|r| r.model == t.name)
        {
            match &r.status {
                GoldStatus::Failed { .. } => {
                    return Ok(Err(Error::BadInput(format!(
                        "it reads {t}, which failed to build"
                    ))));
                }
                GoldStatus::Waiting { table } => {
                    return Ok(Ok(GoldStatus::Waiting {
                        table: table.clone(),
                    }));
                }
                _ => {}
            }
        }
        let v = match lake.version(t.layer, &t.name).await {
            Ok(Some(v)) => v,
            Ok(None) if t.layer == Layer::Silver && connectors.contains(&t.name) => {
                return Ok(Ok(GoldStatus::Waiting {
                    table: t.to_string(),
                }));
            }
            Ok(None) => {
                return Ok(Err(Error::BadInput(format!(
                    "it reads {t}, which does not exist (run the connector `{}` first, or check the name)",
                    t.name
                ))));
            }
            Err(e) => return Ok(Err(e)),
        };
        versions.insert(t.to_string(), serde_json::Value::from(v));
    }
    let inputs = serde_json::Value::Object(versions);
    let sql_hash = hex::encode(Sha256::digest(m.sql.as_bytes()));
    let current = match lake.version(Layer::Gold, &m.name).await {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    if let (Some(prev), Some(current)) = (store.gold_state(&m.name).await?, current)
        && prev.sql_hash == sql_hash
        && prev.inputs == inputs
        && prev.gold_version == current
    {
        return Ok(Ok(GoldStatus::Unchanged { version: current }));
    }
    let built = match lake.build_gold(&m.name, &m.sql).await {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    store
        .gold_record(
            &m.name,
            &GoldState {
                sql_hash,
                inputs,
                gold_version: built.version,
            },
        )
        .await?;
    Ok(Ok(GoldStatus::Built {
        version: built.version,
        rows: built.rows,
    }))
}
