//! The scroll store: the pinned searches of open scrolls, each with the partitions it
//! reads (its searchers, so later writes do not shift its pages), its request, the last
//! hit it answered and when it expires.
//!
//! At most [`MAX_OPEN_SCROLLS`] unexpired scrolls are open at once; a keep-alive is at
//! most [`MAX_KEEP_ALIVE`]. Expired scrolls are dropped when a new one opens. What a page
//! holds is the search's business (`search::execute` from after the last hit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Scope, ScoredHit, SearchRequest};

/// How many scrolls may be open at once.
pub const MAX_OPEN_SCROLLS: usize = 500;

/// The longest scroll keep-alive, as Elasticsearch's `search.max_keep_alive` (24h): a
/// client cannot hold a scroll slot for longer without coming back.
pub const MAX_KEEP_ALIVE: Duration = Duration::from_secs(24 * 3600);

/// Pinned searches of open scrolls.
#[derive(Default)]
pub struct Scrolls {
    contexts: Mutex<HashMap<String, ScrollContext>>,
}

struct ScrollContext {
    scope: Arc<Scope>,
    request: SearchRequest,
    last: Option<Arc<ScoredHit>>,
    total: u64,
    keep_alive: Duration,
    expires: Instant,
}

/// Where an open scroll's next page starts.
pub struct ScrollPosition {
    pub scope: Arc<Scope>,
    pub request: SearchRequest,
    /// The last hit answered so far: the next page starts after it.
    pub last: Option<Arc<ScoredHit>>,
    /// The total hits of the first page.
    pub total: u64,
}

/// [`MAX_OPEN_SCROLLS`] unexpired scrolls are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many open scrolls (limit {MAX_OPEN_SCROLLS})")]
pub struct TooManyScrolls;

impl Scrolls {
    fn contexts(&self) -> MutexGuard<'_, HashMap<String, ScrollContext>> {
        self.contexts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a scroll whose first page (of `total` hits) ended at `last`, kept for
    /// `keep_alive` after each use; returns its id. Later pages start at offset 0 after
    /// `last`, whatever the first page's `from`.
    pub fn open(
        &self,
        scope: Arc<Scope>,
        mut request: SearchRequest,
        last: Option<Arc<ScoredHit>>,
        total: u64,
        keep_alive: Duration,
    ) -> Result<String, TooManyScrolls> {
        let id = crate::index::store::new_uuid();
        let mut contexts = self.contexts();
        let now = Instant::now();
        contexts.retain(|_, context| context.expires > now);
        if contexts.len() >= MAX_OPEN_SCROLLS {
            return Err(TooManyScrolls);
        }
        request.from = 0;
        contexts.insert(
            id.clone(),
            ScrollContext {
                scope,
                request,
                last,
                total,
                keep_alive,
                expires: now + keep_alive,
            },
        );
        Ok(id)
    }

    /// The position of scroll `id`, its expiry moved `keep_alive` (when given, else its
    /// own keep-alive, which `keep_alive` replaces) from now; `None` when it expired or
    /// was cleared.
    pub fn resume(&self, id: &str, keep_alive: Option<Duration>) -> Option<ScrollPosition> {
        let mut contexts = self.contexts();
        let context = contexts
            .get_mut(id)
            .filter(|context| context.expires > Instant::now())?;
        if let Some(keep_alive) = keep_alive {
            context.keep_alive = keep_alive;
        }
        context.expires = Instant::now() + context.keep_alive;
        Some(ScrollPosition {
            scope: context.scope.clone(),
            request: context.request.clone(),
            last: context.last.clone(),
            total: context.total,
        })
    }

    /// Records `last` as the last hit answered by scroll `id` (if it is still open).
    pub fn advance(&self, id: &str, last: ScoredHit) {
        if let Some(context) = self.contexts().get_mut(id) {
            context.last = Some(Arc::new(last));
        }
    }

    /// Frees the scrolls `ids` (`_all`: every one); returns how many were open.
    pub fn clear(&self, ids: &[String]) -> usize {
        let mut contexts = self.contexts();
        if ids.iter().any(|id| id == "_all") {
            let count = contexts.len();
            contexts.clear();
            count
        } else {
            ids.iter()
                .filter(|id| contexts.remove(*id).is_some())
                .count()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(scrolls: &Scrolls, keep_alive: Duration) -> Result<String, TooManyScrolls> {
        let request = SearchRequest {
            from: 20,
            ..SearchRequest::default()
        };
        scrolls.open(Arc::new(Scope::default()), request, None, 7, keep_alive)
    }

    #[test]
    fn an_open_scroll_resumes_at_offset_zero_until_cleared() {
        let scrolls = Scrolls::default();
        let id = open(&scrolls, Duration::from_secs(60)).expect("room");
        let position = scrolls.resume(&id, None).expect("open");
        assert_eq!((position.request.from, position.total), (0, 7));
        assert_eq!(scrolls.clear(std::slice::from_ref(&id)), 1);
        assert!(scrolls.resume(&id, None).is_none());
        assert_eq!(scrolls.clear(&[id]), 0);
    }

    #[test]
    fn an_expired_scroll_is_gone_and_frees_its_slot() {
        let scrolls = Scrolls::default();
        let expired = open(&scrolls, Duration::ZERO).expect("room");
        assert!(scrolls.resume(&expired, None).is_none());
        for _ in 0..MAX_OPEN_SCROLLS {
            open(&scrolls, Duration::from_secs(60)).expect("the expired one is dropped");
        }
        assert_eq!(open(&scrolls, Duration::from_secs(60)), Err(TooManyScrolls));
        assert_eq!(scrolls.clear(&["_all".to_string()]), MAX_OPEN_SCROLLS);
    }
}
