//! Rate limiting and retry timing: a token bucket per registry, `Retry-After` parsing
//! (seconds or an HTTP date) and exponential backoff with jitter. The bucket is
//! reservation based: each caller takes a token at once (the balance may go negative)
//! and sleeps until its token would have been there, so waiters are served in order and
//! no loop polls.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A token bucket: `per_sec` tokens a second, at most `burst` saved up. `Send + Sync`;
/// share it behind an `Arc`. A rate of zero, negative or not finite means no limit.
pub struct RateLimiter {
    state: Mutex<Bucket>,
}

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn unlimited(&self) -> bool {
        !(self.rate.is_finite() && self.rate > 0.0)
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        if !self.unlimited() {
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
    }
}

impl RateLimiter {
    /// A bucket that starts full (`burst` tokens; a burst of 0 counts as 1).
    pub fn new(per_sec: f64, burst: u32) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            state: Mutex::new(Bucket {
                rate: per_sec,
                burst,
                tokens: burst,
                last: Instant::now(),
            }),
        }
    }

    /// Change the rate from now on (tokens already saved are kept, up to the burst).
    pub fn set_rate(&self, per_sec: f64) {
        let mut b = self.lock();
        b.refill(Instant::now());
        b.rate = per_sec;
        if b.unlimited() {
            b.tokens = b.burst;
        }
    }

    /// The current rate in tokens per second.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// The burst (bucket size).
    pub fn burst(&self) -> u32 {
        self.lock().burst as u32
    }

    /// Take a token now and return how long to wait before using it (zero when one was
    /// there). Every call takes one: the waits of concurrent callers add up.
    pub fn reserve(&self) -> Duration {
        self.reserve_at(Instant::now())
    }

    fn reserve_at(&self, now: Instant) -> Duration {
        let mut b = self.lock();
        if b.unlimited() {
            return Duration::ZERO;
        }
        b.refill(now);
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / b.rate)
        }
    }

    /// Wait for a token.
    pub async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.lock();
        f.debug_struct("RateLimiter")
            .field("rate", &b.rate)
            .field("burst", &b.burst)
            .field("tokens", &b.tokens)
            .finish()
    }
}

/// How long a `Retry-After` value asks to wait: delay-seconds, or an HTTP date (a date
/// in the past is zero). `None` when unparsable.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(1e9)));
        }
        return None;
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parse an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), also without the weekday
/// and with `-` separators (`Sunday, 06-Nov-94 08:49:37 GMT`, RFC 850, two-digit years
/// read as 19xx/20xx).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = match s.split_once(',') {
        Some((_, rest)) => rest.trim(),
        None => s,
    };
    let parts: Vec<&str> = s.split([' ', '-']).filter(|p| !p.is_empty()).collect();
    let (day, month, year, time, zone) = match parts.as_slice() {
        [d, m, y, t, z] => (*d, *m, *y, *t, Some(*z)),
        [d, m, y, t] => (*d, *m, *y, *t, None),
        _ => return None,
    };
    if let Some(z) = zone {
        if !(z.eq_ignore_ascii_case("GMT") || z.eq_ignore_ascii_case("UTC")) {
            return None;
        }
    }
    let day: u32 = day.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| month.len() >= 3 && m.eq_ignore_ascii_case(&month[..3]))?
        as u32
        + 1;
    let mut year: i64 = year.parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let hms: Vec<u32> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<u32>>>()?;
    let [h, mi, se] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *h > 23 || *mi > 59 || *se > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(*h) * 3600 + i64::from(*mi) * 60 + i64::from(*se);
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Exponential backoff: `base * 2^(attempt-1)`, capped at `cap`, then scaled by
/// `0.5 + jitter/2` (`jitter` in `[0, 1)`), so the wait is between half and all of it.
/// `attempt` counts from 1.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let d = base.saturating_mul(1u32 << exp).min(cap);
    d.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// A random number in `[0, 1)` (from the std hasher's random keys: good enough for
/// jitter, no dependency).
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_starts_full_then_spaces_out() {
        let l = RateLimiter::new(5.0, 2);
        let t = Instant::now();
        assert_eq!(l.reserve_at(t), Duration::ZERO);
        assert_eq!(l.reserve_at(t), Duration::ZERO);
        let w = l.reserve_at(t);
        assert!((w.as_secs_f64() - 0.2).abs() < 1e-6, "{w:?}");
        let w = l.reserve_at(t);
        assert!((w.as_secs_f64() - 0.4).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn bucket_refills_up_to_burst() {
        let l = RateLimiter::new(10.0, 3);
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.reserve_at(t), Duration::ZERO);
        }
        // 10 s later, only `burst` tokens are there.
        let later = t + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(l.reserve_at(later), Duration::ZERO);
        }
        assert!(l.reserve_at(later) > Duration::ZERO);
    }

    #[test]
    fn rate_change_and_unlimited() {
        let l = RateLimiter::new(1.0, 1);
        let t = Instant::now();
        assert_eq!(l.reserve_at(t), Duration::ZERO);
        assert!(l.reserve_at(t) >= Duration::from_millis(999));
        l.set_rate(0.0);
        for _ in 0..1000 {
            assert_eq!(l.reserve(), Duration::ZERO);
        }
        l.set_rate(100.0);
        assert_eq!(l.rate(), 100.0);
        assert_eq!(l.burst(), 1);
    }

    #[tokio::test]
    async fn acquire_waits() {
        let l = std::sync::Arc::new(RateLimiter::new(20.0, 1));
        let start = Instant::now();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { l.acquire().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 1 at once, then 4 at 50 ms each.
        assert!(
            start.elapsed() >= Duration::from_millis(190),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn retry_after() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sat, 05 Nov 1994 08:49:47 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 25:49:47 GMT", now),
            None
        );
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(951_825_600))
        );
        assert_eq!(parse_http_date("Tue, 29 Feb 2000 12:00:00 CET"), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Duration::from_millis(200);
        let cap = Duration::from_secs(3);
        assert_eq!(backoff(1, b, cap, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(2, b, cap, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(1, b, cap, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(10, b, cap, 1.0), cap);
        assert_eq!(backoff(1000, b, cap, 1.0), cap);
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
