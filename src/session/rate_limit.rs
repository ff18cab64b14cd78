//! A token bucket: `burst` tokens, refilled at `per_second`.

use std::time::Instant;

pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(per_second: f64, burst: u32) -> Self {
        let capacity = f64::from(burst);
        Self {
            capacity,
            per_second,
            tokens: capacity,
            updated: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_the_burst_then_refills() {
        let start = Instant::now();
        let mut b = TokenBucket::new(2.0, 3);
        b.updated = start;
        assert!((0..3).all(|_| b.try_take_at(start)));
        assert!(!b.try_take_at(start));
        assert!(b.try_take_at(start + Duration::from_millis(500)));
        assert!(!b.try_take_at(start + Duration::from_millis(500)));
    }
}
