//! The rule scheduler (issue 4). So far: [`schedule`], cron expressions in a time zone
//! turned into ticks, with Vixie semantics for 5-field lines and a tested DST policy.

pub mod schedule;
