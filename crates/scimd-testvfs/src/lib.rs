//! A SQLite VFS for fault tests that models a power loss: what SQLite
//! writes to the database, its WAL or its journal stays in this process's
//! memory until SQLite syncs that file, and only then reaches the real
//! file. Killing the process (SIGKILL) therefore loses exactly what a
//! machine losing its page cache would lose: everything not yet synced.
//! A commit acknowledged before its sync is lost; one acknowledged after
//! it survives.
//!
//! Everything else is the default VFS's (locking, shared memory, paths).
//! The unsynced data of one file is shared by every connection that opens
//! it in this process, as the page cache is, so readers see the writer's
//! commits as they would without this layer. Memory-mapped reads are
//! refused, so that every read goes through the overlay.
//!
//! This is the workspace's only unsafe code; only tests link it (through
//! scimd-store's `testing` feature), never a release build.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rusqlite::ffi;

/// The name to open connections with (`Connection::open_with_flags_and_vfs`).
pub const NAME: &str = "scimd-volatile";
const NAME_C: &CStr = c"scimd-volatile";

/// The overlay's unit: a write loads the block it touches from the real
/// file first, so that a partial write keeps the bytes around it.
const BLOCK: u64 = 4096;

/// Registers the VFS (once) and returns its name.
pub fn register() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find initialises SQLite and returns the
        // default VFS, which lives as long as the process. The copy we
        // register is leaked, so it does too.
        unsafe {
            let default = ffi::sqlite3_vfs_find(std::ptr::null());
            DEFAULT.store(default, Ordering::SeqCst);
            let mut vfs = *default;
            vfs.szOsFile = REAL_OFFSET as c_int + (*default).szOsFile;
            vfs.zName = NAME_C.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.xOpen = Some(x_open);
            vfs.xDelete = Some(x_delete);
            ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0);
        }
    });
    NAME
}

static DEFAULT: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

/// What one file has that is not yet synced.
struct Overlay {
    /// Blocks written since the last sync, by offset.
    blocks: BTreeMap<u64, Vec<u8>>,
    /// The file's size as SQLite sees it.
    len: u64,
    /// Below this offset, bytes not in `blocks` are the real file's; at and
    /// above it they are zero (a truncation since the last sync cut them).
    floor: u64,
}

/// The overlays of the files open in this process, by path.
fn overlays() -> MutexGuard<'static, HashMap<String, Arc<Mutex<Overlay>>>> {
    static FILES: OnceLock<Mutex<HashMap<String, Arc<Mutex<Overlay>>>>> = OnceLock::new();
    FILES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Our file: SQLite's header, then (at `REAL_OFFSET`) the default VFS's.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// `Arc::into_raw` of the file's overlay; null for files that pass
    /// straight through (temporary files).
    overlay: *const Mutex<Overlay>,
}

const REAL_OFFSET: usize = std::mem::size_of::<File>().next_multiple_of(16);

/// The default VFS's file and its methods.
struct Real(*mut ffi::sqlite3_file);

impl Real {
    fn methods(&self) -> &ffi::sqlite3_io_methods {
        // SAFETY: a real file is open from x_open until x_close.
        unsafe { &*(*self.0).pMethods }
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> c_int {
        let Some(read) = self.methods().xRead else {
            return ffi::SQLITE_IOERR_READ;
        };
        // SAFETY: buf is valid for its length.
        let rc = unsafe {
            read(
                self.0,
                buf.as_mut_ptr().cast(),
                buf.len() as c_int,
                offset as i64,
            )
        };
        // Past the real file's end the bytes are zero, as the default VFS
        // leaves them on a short read.
        if rc == ffi::SQLITE_IOERR_SHORT_READ {
            ffi::SQLITE_OK
        } else {
            rc
        }
    }

    /// A read of a file without an overlay: the default VFS's own answer,
    /// short reads included.
    fn read_through(&self, buf: &mut [u8], offset: u64) -> c_int {
        let Some(read) = self.methods().xRead else {
            return ffi::SQLITE_IOERR_READ;
        };
        // SAFETY: buf is valid for its length.
        unsafe {
            read(
                self.0,
                buf.as_mut_ptr().cast(),
                buf.len() as c_int,
                offset as i64,
            )
        }
    }

    fn write(&self, buf: &[u8], offset: u64) -> c_int {
        let Some(write) = self.methods().xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        // SAFETY: buf is valid for its length.
        unsafe {
            write(
                self.0,
                buf.as_ptr().cast(),
                buf.len() as c_int,
                offset as i64,
            )
        }
    }

    fn truncate(&self, size: u64) -> c_int {
        let Some(truncate) = self.methods().xTruncate else {
            return ffi::SQLITE_IOERR_TRUNCATE;
        };
        // SAFETY: an open real file.
        unsafe { truncate(self.0, size as i64) }
    }

    fn size(&self) -> Result<u64, c_int> {
        let Some(size) = self.methods().xFileSize else {
            return Err(ffi::SQLITE_IOERR_FSTAT);
        };
        let mut out = 0i64;
        // SAFETY: an open real file, and out is valid.
        match unsafe { size(self.0, &mut out) } {
            ffi::SQLITE_OK => Ok(out as u64),
            rc => Err(rc),
        }
    }

    fn sync(&self, flags: c_int) -> c_int {
        let Some(sync) = self.methods().xSync else {
            return ffi::SQLITE_IOERR_FSYNC;
        };
        // SAFETY: an open real file.
        unsafe { sync(self.0, flags) }
    }
}

impl Overlay {
    fn read(&self, real: &Real, out: &mut [u8], offset: u64) -> c_int {
        out.fill(0);
        let end = offset + out.len() as u64;
        let valid = end.min(self.len);
        let from_real = valid.min(self.floor);
        if offset < from_real {
            let rc = real.read(&mut out[..(from_real - offset) as usize], offset);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if offset < valid {
            for (&start, block) in self.blocks.range(offset / BLOCK * BLOCK..valid) {
                let lo = start.max(offset);
                let hi = (start + BLOCK).min(valid);
                out[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&block[(lo - start) as usize..(hi - start) as usize]);
            }
        }
        if end > self.len {
            ffi::SQLITE_IOERR_SHORT_READ
        } else {
            ffi::SQLITE_OK
        }
    }

    fn write(&mut self, real: &Real, data: &[u8], offset: u64) -> c_int {
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let start = pos / BLOCK * BLOCK;
            if !self.blocks.contains_key(&start) {
                let mut block = vec![0; BLOCK as usize];
                let from_real = (start + BLOCK).min(self.floor).min(self.len);
                if start < from_real {
                    let rc = real.read(&mut block[..(from_real - start) as usize], start);
                    if rc != ffi::SQLITE_OK {
                        return rc;
                    }
                }
                self.blocks.insert(start, block);
            }
            let hi = (start + BLOCK).min(end);
            if let Some(block) = self.blocks.get_mut(&start) {
                block[(pos - start) as usize..(hi - start) as usize]
                    .copy_from_slice(&data[(pos - offset) as usize..(hi - offset) as usize]);
            }
            pos = hi;
        }
        self.len = self.len.max(end);
        ffi::SQLITE_OK
    }

    fn truncate(&mut self, size: u64) {
        self.len = size;
        self.floor = self.floor.min(size);
        self.blocks.split_off(&size.next_multiple_of(BLOCK));
        let start = size / BLOCK * BLOCK;
        if let Some(block) = self.blocks.get_mut(&start) {
            block[(size - start) as usize..].fill(0);
        }
    }

    /// Writes the overlay to the real file and syncs it: from here on it
    /// survives the process.
    fn sync(&mut self, real: &Real, flags: c_int) -> c_int {
        let size = match real.size() {
            Ok(size) => size,
            Err(rc) => return rc,
        };
        // Bytes past the floor are stale: cut them before writing, so that
        // a hole left by the writes below reads as zeros.
        if size > self.floor {
            let rc = real.truncate(self.floor);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        for (&start, block) in &self.blocks {
            let n = BLOCK.min(self.len.saturating_sub(start)) as usize;
            if n > 0 {
                let rc = real.write(&block[..n], start);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
            }
        }
        if real.size() != Ok(self.len) {
            let rc = real.truncate(self.len);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let rc = real.sync(flags);
        if rc == ffi::SQLITE_OK {
            self.blocks.clear();
            self.floor = self.len;
        }
        rc
    }
}

/// The real file and, unless it passes straight through, its overlay.
///
/// # Safety
/// `file` is one of ours, opened by `x_open` and not yet closed.
unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> (Real, Option<&'a Mutex<Overlay>>) {
    // SAFETY: the caller's promise; the overlay's Arc is held until x_close.
    unsafe {
        let file = file.cast::<File>();
        (Real((*file).real), (*file).overlay.as_ref())
    }
}

fn lock(overlay: &Mutex<Overlay>) -> MutexGuard<'_, Overlay> {
    overlay.lock().unwrap_or_else(|e| e.into_inner())
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite gives us szOsFile bytes at `file`: ours, then the
    // default VFS's at REAL_OFFSET.
    unsafe {
        let default = DEFAULT.load(Ordering::SeqCst);
        let ours = file.cast::<File>();
        let real = file
            .cast::<u8>()
            .add(REAL_OFFSET)
            .cast::<ffi::sqlite3_file>();
        (*ours).base.pMethods = std::ptr::null();
        (*ours).real = real;
        (*ours).overlay = std::ptr::null();
        let Some(open) = (*default).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let rc = open(default, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let durable =
            ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_MAIN_JOURNAL;
        if flags & durable != 0 && !name.is_null() {
            let path = CStr::from_ptr(name).to_string_lossy().into_owned();
            let size = match Real(real).size() {
                Ok(size) => size,
                Err(rc) => {
                    if let Some(close) = (*(*real).pMethods).xClose {
                        close(real);
                    }
                    return rc;
                }
            };
            let overlay = Arc::clone(overlays().entry(path).or_insert_with(|| {
                Arc::new(Mutex::new(Overlay {
                    blocks: BTreeMap::new(),
                    len: size,
                    floor: size,
                }))
            }));
            (*ours).overlay = Arc::into_raw(overlay);
        }
        (*ours).base.pMethods = &METHODS;
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    // SAFETY: name is a path SQLite passes; the default VFS lives forever.
    unsafe {
        if !name.is_null() {
            overlays().remove(CStr::from_ptr(name).to_string_lossy().as_ref());
        }
        let default = DEFAULT.load(Ordering::SeqCst);
        match (*default).xDelete {
            Some(delete) => delete(default, name, sync_dir),
            None => ffi::SQLITE_IOERR_DELETE,
        }
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: one of our files; its overlay's Arc is released here, once.
    unsafe {
        let ours = file.cast::<File>();
        if !(*ours).overlay.is_null() {
            drop(Arc::from_raw((*ours).overlay));
            (*ours).overlay = std::ptr::null();
        }
        let real = (*ours).real;
        match (*(*real).pMethods).xClose {
            Some(close) => close(real),
            None => ffi::SQLITE_OK,
        }
    }
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes a buffer of `amount` bytes.
    unsafe {
        let (real, overlay) = parts(file);
        let out = std::slice::from_raw_parts_mut(buf.cast::<u8>(), amount as usize);
        match overlay {
            Some(overlay) => lock(overlay).read(&real, out, offset as u64),
            None => real.read_through(out, offset as u64),
        }
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes a buffer of `amount` bytes.
    unsafe {
        let (real, overlay) = parts(file);
        let data = std::slice::from_raw_parts(buf.cast::<u8>(), amount as usize);
        match overlay {
            Some(overlay) => lock(overlay).write(&real, data, offset as u64),
            None => real.write(data, offset as u64),
        }
    }
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: one of our files.
    unsafe {
        match parts(file) {
            (_, Some(overlay)) => {
                lock(overlay).truncate(size as u64);
                ffi::SQLITE_OK
            }
            (real, None) => real.truncate(size as u64),
        }
    }
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: one of our files.
    unsafe {
        match parts(file) {
            (real, Some(overlay)) => lock(overlay).sync(&real, flags),
            (real, None) => real.sync(flags),
        }
    }
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: one of our files; size is valid.
    unsafe {
        match parts(file) {
            (_, Some(overlay)) => {
                *size = lock(overlay).len as i64;
                ffi::SQLITE_OK
            }
            (real, None) => match real.size() {
                Ok(n) => {
                    *size = n as i64;
                    ffi::SQLITE_OK
                }
                Err(rc) => rc,
            },
        }
    }
}

/// Defines a method that hands the call to the default VFS's file.
macro_rules! delegate {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*), $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: one of our files; the arguments are SQLite's, as given.
            unsafe {
                let real = (*file.cast::<File>()).real;
                match (*(*real).pMethods).$field {
                    Some(f) => f(real $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

delegate!(x_lock, xLock, (level: c_int), c_int, ffi::SQLITE_IOERR_LOCK);
delegate!(x_unlock, xUnlock, (level: c_int), c_int, ffi::SQLITE_IOERR_UNLOCK);
delegate!(x_check_reserved_lock, xCheckReservedLock, (out: *mut c_int), c_int, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
delegate!(x_sector_size, xSectorSize, (), c_int, 4096);
delegate!(
    x_device_characteristics,
    xDeviceCharacteristics,
    (),
    c_int,
    0
);
delegate!(x_shm_map, xShmMap, (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void), c_int, ffi::SQLITE_IOERR_SHMMAP);
delegate!(x_shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int), c_int, ffi::SQLITE_IOERR_SHMLOCK);
delegate!(x_shm_unmap, xShmUnmap, (delete: c_int), c_int, ffi::SQLITE_OK);

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: one of our files.
    unsafe {
        let real = (*file.cast::<File>()).real;
        if let Some(barrier) = (*(*real).pMethods).xShmBarrier {
            barrier(real);
        }
    }
}

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: one of our files; arg is SQLite's, as given.
    unsafe {
        let (real, overlay) = parts(file);
        // A size hint would grow the real file behind the overlay's back.
        if overlay.is_some() && op == ffi::SQLITE_FCNTL_SIZE_HINT {
            return ffi::SQLITE_OK;
        }
        match real.methods().xFileControl {
            Some(control) => control(real.0, op, arg),
            None => ffi::SQLITE_NOTFOUND,
        }
    }
}

/// No memory-mapped pages: SQLite falls back to `x_read`.
unsafe extern "C" fn x_fetch(
    _file: *mut ffi::sqlite3_file,
    _offset: ffi::sqlite3_int64,
    _amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: out is valid.
    unsafe { *out = std::ptr::null_mut() };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_unfetch(
    _file: *mut ffi::sqlite3_file,
    _offset: ffi::sqlite3_int64,
    _page: *mut c_void,
) -> c_int {
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    fn open(path: &std::path::Path, vfs: Option<&str>) -> Connection {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let conn = match vfs {
            Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
            None => Connection::open_with_flags(path, flags),
        };
        let Ok(conn) = conn else { unreachable!("open") };
        conn
    }

    fn count(conn: &Connection) -> i64 {
        // No table at all (its creation lost too) counts as no rows.
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap_or(0)
    }

    /// Synced commits reach the file; with `synchronous=OFF` nothing does
    /// and with `NORMAL` (the WAL synced at checkpoints only) not the
    /// commits since the last checkpoint, yet the process reads its own
    /// writes throughout.
    #[test]
    fn only_synced_writes_reach_the_file() {
        let name = super::register();
        // (synchronous, wal_autocheckpoint, rows written, rows after a crash)
        let cases = [
            ("FULL", 1000, 100, 100),
            ("FULL", 3, 2000, 2000),
            ("NORMAL", 1000, 100, 0),
            ("OFF", 3, 2000, 0),
        ];
        for (sync, checkpoint, rows, survivors) in cases {
            let dir = std::env::temp_dir().join(format!(
                "scimd-testvfs-{sync}-{checkpoint}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join("t.db");
            let conn = open(&path, Some(name));
            let setup = format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; \
                 PRAGMA wal_autocheckpoint={checkpoint}; CREATE TABLE t(x);"
            );
            assert!(conn.execute_batch(&setup).is_ok());
            // Rows of 1,000 bytes: with a checkpoint every 3 pages, the
            // database file is written, synced and the WAL restarted often.
            for i in 0..rows {
                let row = "INSERT INTO t VALUES (?1 || zeroblob(1000))";
                assert!(conn.execute(row, [i]).is_ok());
            }
            assert_eq!(count(&conn), rows);
            assert_eq!(count(&open(&path, Some(name))), rows, "another connection");
            // What a crash leaves: the real files as they are, read through
            // the default VFS (the overlay stays behind, as a dead
            // process's page cache would).
            let copy = dir.join("copy.db");
            assert!(std::fs::copy(&path, &copy).is_ok());
            assert!(std::fs::copy(dir.join("t.db-wal"), dir.join("copy.db-wal")).is_ok());
            let after = open(&copy, None);
            assert_eq!(count(&after), survivors, "synchronous={sync}");
            let check: String = after
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap_or_default();
            assert_eq!(check, "ok");
            std::mem::forget(conn);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
