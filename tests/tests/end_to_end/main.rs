//! Keyframe end to end: the real service over real HTTP, against either suite's deployment
//! (`KEYFRAME_TEST_BACKEND`, see `tests/run`). One test binary holds every area, each a module
//! below: every area's binary held all of Keyframe, so one binary instead of one per area keeps
//! the build's link time and disk to a fraction. (`keyframe-under-test`, the command that
//! `process` runs, links it once more.)

mod accounts;
mod admin;
mod billing;
mod crash;
mod embedded;
mod event_store;
mod first_start;
mod global_log;
mod http_api;
mod lockout;
mod metrics;
mod nats_conf;
mod organizations;
mod pages;
mod process;
mod projections;
mod protection;
mod query_plans;
mod read_your_writes;
mod secrets;
mod sessions;
mod subscriptions;
mod tools;
mod videos;
