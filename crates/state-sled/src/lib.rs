#![doc = include_str!("../README.md")]

mod record;
mod store;

pub use store::SledStore;
