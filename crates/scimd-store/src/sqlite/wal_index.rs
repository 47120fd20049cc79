//! Whether the database changed, told by the wal-index header in the
//! `-shm` file, without a read transaction.
//!
//! In WAL mode every commit, by any connection of any process, rewrites the
//! wal-index header: 48 bytes at the start of `<database>-shm`, written
//! twice (the second copy first), whose `iChange` counter moves with each
//! commit and whose last 8 bytes are a checksum of the first 40 (the layout
//! is SQLite's documented WAL file format, "The WAL-Index Header"). SQLite's
//! own readers take the header as valid when both copies are equal, it is
//! initialised and its checksum holds; so do we. The file is read with
//! `pread` (the page cache it goes through is the memory SQLite maps), so
//! no `unsafe` code and no lock is involved: one system call, where
//! `PRAGMA data_version` costs a read transaction (two `fcntl` locks and,
//! with two worker threads, a contended mutex in SQLite's shared-memory
//! code).
//!
//! Only sound while a connection of this process keeps the database open
//! (SQLite truncates or removes the `-shm` file only when its last
//! connection closes): the caller keeps the reader connection that read
//! the database before the file was opened.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Both copies of the header and nothing more.
const HEADER: usize = 48;
/// The bytes the checksum covers.
const CHECKED: usize = 40;
/// Offset of `isInit` (1 once a connection initialised the index).
const IS_INIT: usize = 12;

/// The header as read, to compare with the one read before.
pub(super) type Header = [u8; HEADER];

/// The open `-shm` file of a database.
pub(super) struct WalIndex(File);

impl WalIndex {
    /// The `-shm` file of the database at `db`, if there is one to read.
    pub(super) fn open(db: &Path) -> Option<WalIndex> {
        let mut name = db.as_os_str().to_owned();
        name.push("-shm");
        File::open(name).ok().map(WalIndex)
    }

    /// The current header, or `None` when the read is not one SQLite would
    /// accept (a commit under way, an index not initialised): the caller
    /// then asks SQLite.
    pub(super) fn header(&self) -> Option<Header> {
        let mut both = [0u8; 2 * HEADER];
        match self.0.read_at(&mut both, 0) {
            Ok(n) if n == both.len() => {}
            _ => return None,
        }
        let (first, second) = both.split_at(HEADER);
        let valid = first == second && first[IS_INIT] == 1 && checksum_holds(first);
        valid.then(|| {
            let mut header = [0u8; HEADER];
            header.copy_from_slice(first);
            header
        })
    }
}

/// SQLite's WAL checksum over the first 40 bytes in native byte order,
/// against the two words stored after them.
fn checksum_holds(header: &[u8]) -> bool {
    let word = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&header[i * 4..i * 4 + 4]);
        u32::from_ne_bytes(w)
    };
    let (mut s1, mut s2) = (0u32, 0u32);
    for pair in 0..CHECKED / 8 {
        s1 = s1.wrapping_add(word(2 * pair)).wrapping_add(s2);
        s2 = s2.wrapping_add(word(2 * pair + 1)).wrapping_add(s1);
    }
    s1 == word(CHECKED / 4) && s2 == word(CHECKED / 4 + 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::WalIndex;
    use rusqlite::Connection;

    fn wal(path: &std::path::Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t (x);")
            .unwrap();
        c
    }

    /// Every commit, by whichever connection, changes the header read; a
    /// read without a commit does not; a damaged header is not accepted.
    #[test]
    fn the_header_moves_with_every_commit_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.db");
        let (writer, reader) = (wal(&db), wal(&db));
        let index = WalIndex::open(&db).unwrap();
        let mut last = index.header().unwrap();
        for n in 0..50 {
            let c = if n % 2 == 0 { &writer } else { &reader };
            c.execute("INSERT INTO t VALUES (?1)", [n]).unwrap();
            let now = index.header().unwrap();
            assert_ne!(now, last, "commit {n} left the header as it was");
            let _: i64 = reader
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(index.header().unwrap(), now, "a read moved the header");
            last = now;
        }
        // A checkpoint that restarts the log still leaves a valid header.
        writer
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); INSERT INTO t VALUES (0);")
            .unwrap();
        assert_ne!(index.header().unwrap(), last);

        let mut damaged = index.header().unwrap();
        damaged[8] ^= 1;
        assert!(!super::checksum_holds(&damaged));
    }
}
