//! Keyframe's domain: the aggregates, their commands, events and errors, and the value types
//! they are made of. Pure: no I/O, no clock. Time and anything looked up arrive inside commands.

pub mod clock;
pub mod ids;
pub mod job;
pub mod ledger;
pub mod library;
pub mod log;
pub mod media;
pub mod organization;
pub mod owner;
pub mod pricing;
pub mod project;
pub mod session;
pub mod settlement;
pub mod subscription;
pub mod user;
pub mod values;
