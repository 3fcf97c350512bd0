//! BI answers over the demo data: the shipped question file, row filters on every query path
//! (offline parser, `query_metrics`, `run_sql`), model checks, and a chart on the answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use conveyor::config::Config;
use conveyor::lakehouse::Lakehouse;
use conveyor::semantic::{Outcome, Semantic};
use conveyor::tools::Caller;
use conveyor::tools::Tool as _;
use serde_json::{Value, json};

use crate::common;

/// The `conveyor init` demo, synced, and its semantic model.
async fn demo() -> (tempfile::TempDir, Config, Arc<Semantic>) {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let out = common::conveyor()
        .current_dir(dir.path())
        .arg("sync")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::show(&out));
    let config = Config::load(&dir.path().join("conveyor.toml")).unwrap();
    let lake = Lakehouse::open(&config.lakehouse, &config.base_dir).unwrap();
    let semantic = Semantic::open(&config.connectors_dir(), &lake)
        .await
        .unwrap()
        .expect("the demo ships a semantic model");
    (dir, config, semantic)
}

fn caller(roles: &[&str]) -> Caller {
    Caller {
        user_id: "U1".into(),
        channel: "slack".into(),
        conversation: format!("slack:C1:{}", roles.join(",")),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

const EMEA: [&str; 9] = ["GB", "NL", "NG", "SE", "ES", "DE", "IT", "PT", "FR"];

#[tokio::test]
async fn the_demo_question_file_is_answered_as_expected() {
    let (dir, _, semantic) = demo().await;
    let report =
        conveyor::cli::bi::evaluate(&semantic, &dir.path().join("eval/bi-questions.jsonl"))
            .await
            .unwrap();
    assert!(report.questions >= 19, "{report:?}");
    assert_eq!(
        report.correct, report.questions,
        "misses: {:#?}",
        report.misses
    );
}

#[tokio::test]
async fn row_filters_and_hidden_columns_hold_on_every_path() {
    let (_dir, _, semantic) = demo().await;
    let today = chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
    let rep = ["sales_emea".to_string()];

    // What everyone else sees, for comparison: all orders, all regions.
    let everyone = conveyor::tools::bi::RunSql::new(semantic.clone());
    let all = everyone
        .call(
            &caller(&[]),
            json!({"sql": "SELECT count(*) AS n FROM orders"}),
        )
        .await
        .unwrap();
    assert_eq!(all["rows"][0]["n"], 60);
    let emea_orders = everyone
        .call(
            &caller(&[]),
            json!({"sql": "SELECT count(*) AS n FROM orders o JOIN customers c ON c.customer_id = o.customer_id WHERE c.country IN ('GB','NL','NG','SE','ES','DE','IT','PT','FR')"}),
        )
        .await
        .unwrap()["rows"][0]["n"]
        .as_i64()
        .unwrap();
    assert!(emea_orders > 0 && emea_orders < 60);

    // 1. The offline parser.
    let Outcome::Answer(a) = semantic.ask("revenue by region", &rep, today).await else {
        panic!("expected an answer");
    };
    let regions: Vec<&Value> = a.rows.iter().map(|r| &r[0]).collect();
    assert_eq!(regions, vec![&json!("EMEA")], "{a:?}");
    let Outcome::Answer(a) = semantic.ask("how many orders", &rep, today).await else {
        panic!("expected an answer");
    };
    assert_eq!(
        a.rows[0][0],
        json!(emea_orders),
        "orders follow their customer's filter"
    );
    let Outcome::Answer(a) = semantic.ask("revenue by country", &rep, today).await else {
        panic!("expected an answer");
    };
    for r in &a.rows {
        assert!(EMEA.contains(&r[0].as_str().unwrap()), "{r:?} is not EMEA");
    }

    // 2. query_metrics, as an LLM would call it.
    let qm = conveyor::tools::bi::QueryMetrics::new(semantic.clone());
    let out = qm
        .call(
            &caller(&["sales_emea"]),
            json!({"metrics": ["revenue", "orders"], "dimensions": ["customers.country"]}),
        )
        .await
        .unwrap();
    let rows = out["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        assert!(EMEA.contains(&r[0].as_str().unwrap()), "{r:?} is not EMEA");
    }

    // 3. run_sql: only the caller's views exist, with their filters, without hidden columns.
    let sql = conveyor::tools::bi::RunSql::new(semantic.clone());
    let rep_caller = caller(&["sales_emea"]);
    let out = sql
        .call(
            &rep_caller,
            json!({"sql": "SELECT DISTINCT country FROM customers ORDER BY 1"}),
        )
        .await
        .unwrap();
    for r in out["rows"].as_array().unwrap() {
        assert!(EMEA.contains(&r["country"].as_str().unwrap()), "{r:?}");
    }
    let out = sql
        .call(
            &rep_caller,
            json!({"sql": "SELECT count(*) AS n FROM orders"}),
        )
        .await
        .unwrap();
    assert_eq!(out["rows"][0]["n"], json!(emea_orders));
    for (attempt, (bad, why)) in [
        ("SELECT contact_email FROM customers", "contact_email"),
        ("SELECT * FROM silver.customers", "silver"),
    ]
    .iter()
    .enumerate()
    {
        let e = sql
            .call(&rep_caller, json!({"sql": bad}))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{bad}: {e}");
        assert!(e.contains(&format!("attempt {}", attempt + 1)), "{e}");
    }
    let e = sql
        .call(&rep_caller, json!({"sql": "SELECT nope FROM orders"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not call run_sql again"), "{e}");
    // Writes never plan, whoever asks.
    let e = everyone
        .call(&caller(&["x"]), json!({"sql": "DROP TABLE customers"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.to_lowercase().contains("read-only") || e.contains("only"),
        "{e}"
    );
    // A hidden column is refused by name through the parser's path too.
    let q = conveyor::semantic::compile::MetricQuery {
        metrics: vec!["customers".into()],
        dimensions: vec!["customers.contact_email".into()],
        ..Default::default()
    };
    let grants = semantic.grants(&rep);
    assert!(semantic.run(&q, &grants).await.is_err());
}

#[tokio::test]
async fn a_broken_model_names_every_problem_with_its_file_and_key() {
    let (dir, config, _) = demo().await;
    std::fs::write(
        dir.path().join("connectors/broken.semantic.toml"),
        r#"
[entities.buyers]
table = "silver.customers"
primary_key = "customer_id"
[entities.buyers.dimensions.planet]
[entities.buyers.measures.money]
agg = "sum"
expr = "company"
[entities.buyers.measures.oops]
agg = "median"
expr = "seats"
[[entities.buyers.joins]]
to = "nowhere"
on = "customer_id"
"#,
    )
    .unwrap();
    let lake = Lakehouse::open(&config.lakehouse, &config.base_dir).unwrap();
    let e = Semantic::open(&config.connectors_dir(), &lake)
        .await
        .unwrap_err()
        .to_string();
    for want in [
        "broken.semantic.toml: entities.buyers.dimensions.planet",
        "entities.buyers.measures.money",
        "not a number",
        "entities.buyers.measures.oops.agg: `median`",
        "joins[0].to: there is no entity `nowhere`",
    ] {
        assert!(e.contains(want), "missing `{want}` in:\n{e}");
    }
}

#[tokio::test]
async fn a_chat_answer_carries_the_table_the_query_and_a_chart() {
    let (_dir, config, _) = demo().await;
    let app = conveyor::app::App::build(config).await.unwrap();
    let inbound = conveyor::model::Inbound {
        idempotency_key: "bi-1".into(),
        conversation: conveyor::model::ConversationKey::new(conveyor::model::Channel::API, "bi"),
        user: conveyor::model::UserRef {
            id: "alice".into(),
            name: None,
        },
        text: "revenue by plan".into(),
        attachments: Vec::new(),
    };
    let out = app.gateway.handle(inbound).await.unwrap();
    let data = out.data.expect("a BI answer");
    assert_eq!(data.columns, vec!["Plan", "Revenue"]);
    assert_eq!(data.rows[0], vec!["enterprise", "$47,072.00"]);
    assert!(data.sql.contains("GROUP BY"), "{}", data.sql);
    assert!(data.csv.starts_with("Plan,Revenue\n"), "{}", data.csv);
    let chart = data.chart.expect("a chart for a group-by");
    assert!(chart.png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(chart.svg.starts_with("<svg") || chart.svg.starts_with("<?xml"));
    assert!(out.text.contains("Understood as"), "{}", out.text);
    // Not a question about the data: the documents answer it, as before.
    let inbound = conveyor::model::Inbound {
        idempotency_key: "bi-2".into(),
        conversation: conveyor::model::ConversationKey::new(conveyor::model::Channel::API, "bi"),
        user: conveyor::model::UserRef {
            id: "alice".into(),
            name: None,
        },
        text: "How long do refunds take?".into(),
        attachments: Vec::new(),
    };
    let out = app.gateway.handle(inbound).await.unwrap();
    assert!(out.data.is_none());
    assert!(!out.citations.is_empty(), "{}", out.text);
}
