//! Bounded parallel work on plain threads: `jobs` workers take items in order from a shared
//! counter; the first failure stops them taking more and is the result.

use anyhow::Result;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// `f` over `items` on at most `jobs` threads; the results in the items' order, or the error of
/// the earliest item that failed.
pub fn try_map<I: Sync, T: Send>(
    jobs: usize,
    items: &[I],
    f: impl Fn(&I) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let out: Mutex<Vec<(usize, Result<T>)>> = Mutex::new(Vec::new());
    let worker = || loop {
        if failed.load(Ordering::Relaxed) {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(item) = items.get(i) else { break };
        let r = f(item);
        if r.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        if let Ok(mut o) = out.lock() {
            o.push((i, r));
        }
    };
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        worker();
    } else {
        std::thread::scope(|s| {
            for _ in 0..jobs {
                s.spawn(worker);
            }
        });
    }
    let mut done = out
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    done.sort_by_key(|(i, _)| *i);
    // The earliest failure wins; after one, later items may not have run.
    let n = done.len();
    let results = done
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Result<Vec<T>>>()?;
    if n != items.len() {
        anyhow::bail!("a worker stopped early");
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_reports_the_earliest_failure() {
        let items: Vec<u32> = (0..50).collect();
        let r = try_map(4, &items, |x| Ok(x * 2)).unwrap();
        assert_eq!(r, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        let e = try_map(4, &items, |x| {
            if *x >= 7 {
                anyhow::bail!("item {x}")
            }
            Ok(*x)
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("item "), "{e}");
        assert_eq!(
            try_map(3, &[] as &[u32], |x| Ok(*x)).unwrap(),
            Vec::<u32>::new()
        );
    }
}
