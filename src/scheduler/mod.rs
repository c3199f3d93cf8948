//! The rule scheduler (issue 4). So far: [`schedule`], cron expressions in a time zone
//! turned into ticks, with Vixie semantics for 5-field lines and a tested DST policy; and
//! [`runner`], which runs jobs at their ticks, one task each, with a bound on concurrent
//! runs and missed ticks counted instead of replayed.

pub mod runner;
pub mod schedule;
