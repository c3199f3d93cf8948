//! Fault injection for tests: hooks that make a component fail on purpose, so tests can
//! prove the failure is contained (a handler's panic answers 500, a rule's panic marks
//! that rule unhealthy). Compiled into debug builds only, and active only when the
//! environment has `LOOKOUT_TEST_HOOKS=1`; a release build has none of them.

/// Whether the hooks are on (debug build and `LOOKOUT_TEST_HOOKS=1`).
pub fn enabled() -> bool {
    #[cfg(debug_assertions)]
    {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ENABLED.get_or_init(|| std::env::var("LOOKOUT_TEST_HOOKS").as_deref() == Ok("1"))
    }
    #[cfg(not(debug_assertions))]
    {
        false
    }
}

/// The label that makes a rule's evaluation panic while the hooks are on.
pub const PANIC_LABEL: &str = "lookout_test_panic";
