//! The composition root: the one place that picks concrete backends from the config and wires
//! them together.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::agent::Planner;
use crate::agent::offline::OfflinePlanner;
use crate::agent::prompts::Prompts;
use crate::agent::redact::{Redactor, Vault};
use crate::agent::tool_loop::{LlmPlanner, LlmPlannerParts};
use crate::channels::chat::{ChatContext, Platforms};
use crate::channels::webhook::Hooks;
use crate::config::{Config, LlmProvider};
use crate::connectors::schedule::ScheduleStatus;
use crate::error::Result;
use crate::gateway::Gateway;
use crate::knowledge::Knowledge;
use crate::lakehouse::Lakehouse;
use crate::metrics::Metrics;
use crate::semantic::Semantic;
use crate::store::Store;
use crate::tools::search::SearchKnowledge;
use crate::tools::{LoadContext, ToolRegistry};
use crate::values::Env;

/// Everything a running conveyor holds.
#[derive(Clone)]
pub struct App {
    /// The configuration it was built from.
    pub config: Arc<Config>,
    /// State store.
    pub store: Store,
    /// Knowledge index.
    pub knowledge: Knowledge,
    /// The lakehouse (`[lakehouse]`), where scheduled connector runs write.
    pub lake: Lakehouse,
    /// The semantic model over the lakehouse (`connectors/*.semantic.toml`), when there is one.
    pub semantic: Option<Arc<Semantic>>,
    /// Which connectors the scheduler of this process runs (set when `serve` starts it).
    pub schedule: Arc<ScheduleStatus>,
    /// Message handling.
    pub gateway: Arc<Gateway>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Prompt templates, compiled and checked.
    pub prompts: Arc<Prompts>,
    /// The tools the agent may call; every call goes through it (policy, audit).
    pub tools: Arc<ToolRegistry>,
    /// Generic signed webhooks (`[hooks.NAME]`), compiled, with their secrets.
    pub hooks: Arc<Hooks>,
    /// The configured chat platforms (`[channels.*]`), from the registry
    /// ([`crate::channels::PLATFORMS`]); `platforms.get::<Slack>()` finds one by type.
    pub platforms: Platforms,
    /// Work that must finish even when the request that started it is gone (a client that
    /// disconnected, a request timeout); awaited on shutdown.
    pub tasks: TaskTracker,
    /// The workflows of `tools.dir` and the engine that runs them.
    pub workflows: crate::workflows::Engine,
}

impl App {
    /// Opens the store and the index and wires the gateway.
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_env(config, &Env::process()).await
    }

    /// Like [`App::build`], reading secrets that are not part of the config file (webhook
    /// secrets) through `env`; tests inject their own instead of touching the process
    /// environment.
    pub async fn build_with_env(config: Config, env: &Env) -> Result<Self> {
        // Templates are checked at start-up, also when the offline planner (which does not use
        // them) answers: a broken template should not wait for the day an LLM is configured.
        let prompts = Arc::new(Prompts::load(
            &config.prompts,
            &config.base_dir,
            config.llm.provider != LlmProvider::Offline,
        )?);
        // Webhooks too: a missing secret or a broken template is a start-up error.
        let hooks = Arc::new(Hooks::build(&config.hooks, env)?);
        let platforms = crate::channels::build_platforms(&config.channels, env)?;
        // The store first: when it is unreachable, nothing should be created on disk.
        let store = Store::connect(&config.store.url_in(&config.base_dir, env)?).await?;
        let knowledge = Knowledge::open(&config.index, &config.base_dir)?;
        let lake = Lakehouse::open(&config.lakehouse, &config.base_dir)?;
        // The semantic model is checked against the tables at start-up: a broken model is a
        // start-up error naming every problem.
        let semantic = Semantic::open(&config.connectors_dir(), &lake).await?;
        // With an LLM, the model is indexed so each question describes only what it is about.
        let catalog = match &semantic {
            Some(s) if config.llm.provider != crate::config::LlmProvider::Offline => {
                Some(Arc::new(
                    crate::semantic::catalog::Catalog::build(
                        s,
                        knowledge.open_catalog(&config.index, &config.base_dir)?,
                        Arc::clone(&knowledge.embedder),
                    )
                    .await?,
                ))
            }
            _ => None,
        };
        let mut tools = build_tools(
            &config,
            &store,
            &knowledge,
            semantic.as_ref().map(|s| (s, catalog)),
            env,
        )?;
        // Workflows are tools too (the agent may start one), found through a slot filled once
        // the engine, which needs the registry, exists.
        let workflow_defs = crate::workflows::load_dir(&config.resolve(&config.tools.dir))?;
        let slot = Arc::new(crate::workflows::EngineSlot::default());
        for w in &workflow_defs {
            tools
                .register(Arc::new(crate::workflows::WorkflowTool::new(
                    w,
                    Arc::clone(&slot),
                )))
                .map_err(|e| crate::error::Error::Config(format!("{}: {e}", w.origin)))?;
        }
        let problems = crate::workflows::check_references(
            &workflow_defs,
            &tools
                .list()
                .iter()
                .map(|t| t.name().to_string())
                .collect::<Vec<_>>(),
            &platforms
                .outboxes()
                .iter()
                .map(|o| o.channel().as_str())
                .chain([crate::workflows::feed::WEB.as_str()])
                .collect::<Vec<_>>(),
            &config
                .hooks
                .iter()
                .map(|(name, h)| (name.clone(), h.workflow.clone()))
                .collect::<Vec<_>>(),
        );
        for warning in crate::workflows::hook_warnings(
            &workflow_defs,
            &config.hooks.keys().cloned().collect::<Vec<_>>(),
        ) {
            tracing::warn!("{warning}");
        }
        if !problems.is_empty() {
            return Err(crate::error::Error::Config(format!(
                "{} problem{} in the workflow files:\n  - {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                problems.join("\n  - ")
            )));
        }
        let tools = Arc::new(tools);
        let metrics = Arc::new(Metrics::default());
        metrics.set_index_chunks(knowledge.index.count().await?);
        let offline = Arc::new(
            OfflinePlanner::new(
                knowledge.retriever(),
                config.index.top_k,
                config.answer.clone(),
            )
            .with_semantic(semantic.clone()),
        );
        let planner: Arc<dyn Planner> = match config.llm.provider {
            LlmProvider::Offline => offline,
            _ => Arc::new(LlmPlanner::new(
                &config.llm,
                LlmPlannerParts {
                    tools: Arc::clone(&tools),
                    prompts: Arc::clone(&prompts),
                    retriever: knowledge.retriever(),
                    top_k: config.index.top_k,
                    fallback: offline,
                    env: env.clone(),
                },
            )?),
        };
        let workflows = crate::workflows::Engine::new(
            store.clone(),
            workflow_defs,
            crate::workflows::steps::Parts {
                store: store.clone(),
                tools: Arc::clone(&tools),
                semantic: semantic.clone(),
                lake: Some(lake.clone()),
                planner: Arc::clone(&planner),
                outboxes: platforms
                    .outboxes()
                    .into_iter()
                    .chain([Arc::new(crate::workflows::feed::WebFeed)
                        as Arc<dyn crate::gateway::egress::Outbox>])
                    .collect(),
                http: crate::tools::net::GuardedClient::new(
                    crate::tools::net::AllowHosts::new(&config.workflows.allow_private),
                    crate::tools::net::ClientOptions::default(),
                )?,
                metrics: Arc::clone(&metrics),
            },
            config.workflows.clone(),
        )?;
        slot.set(&workflows);
        // `/run NAME` in chat starts a workflow; everything else goes to the planner.
        let planner: Arc<dyn Planner> = Arc::new(crate::workflows::command::CommandPlanner::new(
            planner,
            Arc::clone(&slot),
        ));
        let gateway = Arc::new(
            Gateway::new(
                store.clone(),
                planner,
                Arc::clone(&metrics),
                config.gateway.clone(),
                &config.limits,
            )
            .with_access(config.access.clone())
            .with_roles(config.roles.clone())
            .with_attributes(config.attributes.clone()),
        );
        Ok(Self {
            config: Arc::new(config),
            store,
            knowledge,
            lake,
            semantic,
            schedule: Arc::new(ScheduleStatus::default()),
            gateway,
            metrics,
            prompts,
            tools,
            hooks,
            platforms,
            tasks: TaskTracker::new(),
            workflows,
        })
    }
}

impl App {
    /// What the chat platforms' shared path needs: the gateway, the store, the task tracker.
    pub fn chat_context(&self) -> ChatContext {
        ChatContext {
            gateway: Arc::clone(&self.gateway),
            store: self.store.clone(),
            tasks: self.tasks.clone(),
            decider: Some(Arc::new(self.workflows.clone())),
        }
    }

    /// Posts a webhook's answer into the chat named by its `forward_to`.
    pub async fn forward(
        &self,
        target: &crate::channels::webhook::ForwardTarget,
        dedupe_key: &str,
        out: &crate::model::Outbound,
    ) -> Result<()> {
        let outbox = self.platforms.by_channel(target.channel).ok_or_else(|| {
            crate::error::Error::Config(format!(
                "cannot forward to {}: [channels.{}] is not configured",
                target.channel, target.channel
            ))
        })?;
        outbox
            .post(&self.store, &target.chat, dedupe_key, out)
            .await
    }

    /// The egress resender over the platforms' outboxes.
    pub fn resender(&self) -> crate::gateway::egress::Resender {
        let mut outboxes = self.platforms.outboxes();
        outboxes.push(Arc::new(crate::workflows::feed::WebFeed));
        crate::gateway::egress::Resender::new(self.store.clone(), outboxes, &self.config.gateway)
    }
}

/// The tool registry: the built-in tools, then the declarative ones in `tools.dir` (a missing
/// folder means none). Tool credentials are read through `env`.
pub fn build_tools(
    config: &Config,
    store: &Store,
    knowledge: &Knowledge,
    semantic: Option<(
        &Arc<Semantic>,
        Option<Arc<crate::semantic::catalog::Catalog>>,
    )>,
    env: &Env,
) -> Result<ToolRegistry> {
    // Audit records never hold personal data or secrets: each record is redacted on its own
    // (its own vault), whatever the LLM privacy setting.
    let redactor = Redactor::default();
    let redact: crate::tools::RedactHook =
        Arc::new(move |value| redactor.redact_json(value, &mut Vault::default()));
    let mut tools = ToolRegistry::new(store.clone(), &config.tools, redact);
    tools.register(Arc::new(SearchKnowledge::new(knowledge.retriever())))?;
    if let Some((semantic, catalog)) = semantic {
        tools.register(Arc::new(
            crate::tools::bi::QueryMetrics::new(Arc::clone(semantic)).with_catalog(catalog.clone()),
        ))?;
        tools.register(Arc::new(
            crate::tools::bi::RunSql::new(Arc::clone(semantic)).with_catalog(catalog),
        ))?;
    }
    crate::tools::load_dir(
        &config.resolve(&config.tools.dir),
        &LoadContext {
            tools: &config.tools,
            env: env.clone(),
        },
        &mut tools,
    )?;
    Ok(tools)
}
