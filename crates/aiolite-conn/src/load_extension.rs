//! Loading SQLite extensions (native code) at run time, behind the
//! `load_extension` cargo feature (Python's `enable_load_extension` and
//! `load_extension`).

use crate::connection::Connection;
use crate::error::Result;

impl Connection {
    /// Allows (or forbids again) loading SQLite extensions on this connection,
    /// through [`load_extension`](Connection::load_extension) and SQL's
    /// `load_extension()` function (Python's `enable_load_extension`). Off by
    /// default. Only with the `load_extension` cargo feature.
    ///
    /// # Safety
    /// While enabled, any SQL run on this connection can load and run native
    /// code from any file the process can read: enable it only for SQL you
    /// trust, and disable it again after loading.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// Cancel safe.
    #[allow(unsafe_code)]
    pub async unsafe fn enable_load_extension(&self, enabled: bool) -> Result<()> {
        self.channel()
            .run(move |w| {
                if enabled {
                    // SAFETY: the caller took on the function's contract.
                    unsafe { w.conn.load_extension_enable()? };
                } else {
                    w.conn.load_extension_disable()?;
                }
                Ok(())
            })
            .await
    }

    /// Loads the SQLite extension in the shared library at `path`, calling
    /// `entry_point` (or the name SQLite derives from the file name) on this
    /// connection (Python's `load_extension`). Extension loading must be
    /// enabled first. Only with the `load_extension` cargo feature.
    ///
    /// # Safety
    /// The library's initialisation code runs in this process with no
    /// checks: it must be a well-behaved SQLite extension.
    ///
    /// # Errors
    /// "not authorized" while loading is not enabled; SQLite's message when
    /// the library or its entry point cannot be found.
    ///
    /// # Cancel safety
    /// Once queued, the library is loaded.
    #[allow(unsafe_code)]
    pub async unsafe fn load_extension(
        &self,
        path: impl AsRef<std::path::Path>,
        entry_point: Option<&str>,
    ) -> Result<()> {
        let path = path.as_ref().to_path_buf();
        let entry_point = entry_point.map(str::to_owned);
        self.channel()
            .run(move |w| {
                // SAFETY: the caller vouches for the library.
                unsafe { w.conn.load_extension(&path, entry_point.as_deref())? };
                Ok(())
            })
            .await
    }
}
