mod api;
mod cli;
mod knowledge;
mod store;
