//! [`Needle`]: a byte string a fake destination watches for in everything it receives
//! (request headers and decompressed bodies, refused requests included), so a test can
//! show that a secret never reached it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What to look for, and how many requests held it.
#[derive(Default)]
pub(crate) struct Needle {
    needle: Mutex<Option<Vec<u8>>>,
    hits: AtomicU64,
    requests: AtomicU64,
}

impl Needle {
    pub(crate) fn set(&self, needle: &[u8]) {
        *self.needle.lock().expect("not poisoned") = Some(needle.to_vec());
    }

    /// Looks at one request: its header values and its decompressed body.
    pub(crate) fn look(&self, headers: &hyper::HeaderMap, body: &[u8]) {
        let guard = self.needle.lock().expect("not poisoned");
        let Some(needle) = guard.as_deref() else {
            return;
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let finder = memchr::memmem::Finder::new(needle);
        let in_headers = headers
            .values()
            .any(|v| finder.find(v.as_bytes()).is_some());
        if in_headers || finder.find(body).is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (requests looked at, requests that held the needle).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.hits.load(Ordering::Relaxed),
        )
    }
}
