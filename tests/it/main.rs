mod api;
mod cli;
mod common;
mod knowledge;
mod store;
