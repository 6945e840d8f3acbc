//! Test-only fault injection at every mutation point.
//!
//! With the `failpoints` feature, a test arms the calling thread to fail at its n-th mutation
//! point: either with an error (as a failing system call would) or with a panic that unwinds past
//! every rollback, which is how tests stand in for a killed process. Without the feature, or when
//! not armed, `hit` does nothing. Nothing outside tests ever arms it.

use crate::error::Result;

#[cfg(feature = "failpoints")]
mod imp {
    use std::cell::Cell;

    use crate::error::{Error, Result};

    thread_local! {
        static COUNT: Cell<usize> = const { Cell::new(0) };
        static FAIL_AT: Cell<Option<(usize, bool)>> = const { Cell::new(None) };
    }

    /// Arms the calling thread: mutation point number `n` (counting from 1 after this call) fails.
    /// With `crash`, it panics instead of returning an error, so no rollback runs.
    pub fn arm(n: usize, crash: bool) {
        COUNT.with(|c| c.set(0));
        FAIL_AT.with(|f| f.set(Some((n, crash))));
    }

    /// Disarms the calling thread and returns how many mutation points it passed since `arm` or
    /// the last `disarm`.
    pub fn disarm() -> usize {
        FAIL_AT.with(|f| f.set(None));
        COUNT.with(|c| c.replace(0))
    }

    pub(crate) fn hit() -> Result<()> {
        let n = COUNT.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        match FAIL_AT.with(|f| f.get()) {
            Some((at, crash)) if at == n => {
                FAIL_AT.with(|f| f.set(None));
                if crash {
                    panic!("injected crash at mutation point {n}");
                }
                Err(Error::Injected(n))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(feature = "failpoints")]
pub use imp::{arm, disarm};

/// Marks a mutation point.
#[inline]
pub(crate) fn hit() -> Result<()> {
    #[cfg(feature = "failpoints")]
    return imp::hit();
    #[cfg(not(feature = "failpoints"))]
    Ok(())
}
