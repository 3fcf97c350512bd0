//! Gold models: the SQL hash and input table versions each model was last built from.

use super::{Store, db_err, get, now_ms, parse_json};
use crate::error::Result;

/// What a model's current gold table was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldState {
    /// sha256 (hex) of the model's SQL text.
    pub sql_hash: String,
    /// Input table → the Delta version it was read at (a JSON object).
    pub inputs: serde_json::Value,
    /// The gold table's version after that build.
    pub gold_version: i64,
}

impl Store {
    /// The last successful build of `model`, `None` before the first.
    pub async fn gold_state(&self, model: &str) -> Result<Option<GoldState>> {
        let row =
            sqlx::query("SELECT sql_hash, inputs, gold_version FROM gold_models WHERE name = $1")
                .bind(model)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("reading a gold model's state"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let inputs: String = get(&row, "inputs")?;
        Ok(Some(GoldState {
            sql_hash: get(&row, "sql_hash")?,
            inputs: parse_json("gold_models", "inputs", &inputs)?,
            gold_version: get(&row, "gold_version")?,
        }))
    }

    /// Records a successful build of `model`.
    pub async fn gold_record(&self, model: &str, state: &GoldState) -> Result<()> {
        sqlx::query(
            "INSERT INTO gold_models (name, sql_hash, inputs, gold_version, built_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET sql_hash = $2, inputs = $3, gold_version = $4, built_at = $5",
        )
        .bind(model)
        .bind(&state.sql_hash)
        .bind(state.inputs.to_string())
        .bind(state.gold_version)
        .bind(now_ms())
        .execute(&self.writer)
        .await
        .map_err(db_err("recording a gold model's build"))?;
        Ok(())
    }
}
