//! fs-conformance-rust: an ordinary Rust program (std::fs only, wasm32-wasi = WASI preview 1) that checks
//! the file system the executor gives an agent granted `scratch` whose template ships a read-only file:
//! relative and absolute paths at `/`, `/scratch`, create, write, seek, read back, metadata, truncate,
//! read_dir, rename, remove_file, create_dir/remove_dir, symlinks inside, the template file
//! `/data/conformance.txt` (readable; writing, creating, removing, renaming and mkdir there refused), and
//! the refusals a program expects (`..` out of the root, a symlink pointing out, a host path).
//!
//! Prints one line per check, "<check> ok" (with "(errno <text>)" for a refusal) or "<check> FAIL
//! <detail>", then "passed N/M", and exits 0 only if every check passed: the report format of the C and Go
//! conformance agents. The same output under bare wasmtime (a temporary directory preopened at `/`, its
//! `scratch` subdirectory at `/scratch`, the template file's directory read-only at `/data`) is the
//! reference the tests compare against.
//!
//! Built with Debian's rustc and the std of libstd-rust-dev-wasm32, no crates (examples/examples.mk).
//! It touches neither clocks nor random (no HashMap), so `scratch` is its only tool.

use std::env;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process;

const NOTE: &[u8] = b"hello, file\n";
/// The template's read-only file (examples/agents/fs-conformance-rust/files/data/conformance.txt).
const TEMPLATE_FILE: &str = "/data/conformance.txt";
const TEMPLATE_TEXT: &[u8] = b"read-only, shipped with the template\n";

type Check = Result<(), String>;

#[derive(Default)]
struct Report {
    checks: u32,
    passed: u32,
}

impl Report {
    fn check(&mut self, name: &str, result: Check) {
        self.checks += 1;
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("{name} ok");
            }
            Err(detail) => println!("{name} FAIL {detail}"),
        }
    }

    /// A refusal: passes when `result` is an error, and names its errno as the C agent does (strerror's
    /// text), so the reference run must refuse with the same errno.
    fn refused<T>(&mut self, name: &str, result: io::Result<T>, what: &str) {
        self.checks += 1;
        match result {
            Err(e) => {
                self.passed += 1;
                println!("{name} ok (errno {})", errno_text(&e));
            }
            Ok(_) => println!("{name} FAIL {what} succeeded"),
        }
    }
}

/// strerror's text of an OS error: std's Display is "<strerror> (os error N)".
fn errno_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// An io::Result as a check step, naming what was attempted.
trait Step<T> {
    fn step(self, what: &str) -> Result<T, String>;
}

impl<T> Step<T> for io::Result<T> {
    fn step(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

fn want(cond: bool, detail: impl FnOnce() -> String) -> Check {
    if cond {
        Ok(())
    } else {
        Err(detail())
    }
}

fn names(dir: &str) -> Vec<String> {
    let mut out: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn missing(path: &str) -> bool {
    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == ErrorKind::NotFound)
}

/// create, write, seek, read back, truncate, write past the end, close: one file handle.
fn file_handle_checks(r: &mut Report) {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open("data.bin");
    let mut f = match opened {
        Ok(f) => {
            r.check("open-rdwr", Ok(()));
            f
        }
        Err(e) => return r.check("open-rdwr", Err(format!("open data.bin read-write: {e}"))),
    };
    r.check("write", f.write_all(b"0123456789").step("write 10 bytes"));
    r.check(
        "seek-set",
        f.seek(SeekFrom::Start(3))
            .step("seek to 3")
            .and_then(|at| want(at == 3, || format!("offset {at}"))),
    );
    let mut buf = [0u8; 4];
    r.check(
        "read-after-seek",
        f.read_exact(&mut buf)
            .step("read 4 bytes at 3")
            .and_then(|()| want(&buf == b"3456", || format!("read {buf:?}"))),
    );
    r.check(
        "seek-end",
        f.seek(SeekFrom::End(0))
            .step("seek to the end")
            .and_then(|at| want(at == 10, || format!("offset {at}"))),
    );
    r.check(
        "ftruncate",
        f.set_len(4)
            .step("set_len(4)")
            .and_then(|()| f.metadata().step("metadata"))
            .and_then(|m| want(m.len() == 4, || format!("size {}", m.len()))),
    );
    // std has no stable pwrite on WASI: seek past the end, then write, leaving a hole of zeros.
    r.check(
        "write-past-end",
        f.seek(SeekFrom::Start(8))
            .and_then(|_| f.write_all(b"Z"))
            .step("write at 8")
            .and_then(|()| f.metadata().step("metadata"))
            .and_then(|m| want(m.len() == 9, || format!("size {}", m.len()))),
    );
    // Dropping closes without a result: what a later open reads is the check.
    drop(f);
    r.check(
        "close-and-reread",
        fs::read("data.bin")
            .step("read data.bin")
            .and_then(|b| want(b == b"0123\0\0\0\0Z", || format!("read {b:?}"))),
    );
}

fn directory_checks(r: &mut Report) {
    r.check(
        "stat-regular",
        fs::metadata("data.bin")
            .step("metadata data.bin")
            .and_then(|m| want(m.is_file() && m.len() == 9, || format!("{m:?}"))),
    );
    r.check("mkdir", fs::create_dir("sub").step("create_dir sub"));
    r.check(
        "stat-dir",
        fs::metadata("sub")
            .step("metadata sub")
            .and_then(|m| want(m.is_dir(), || "sub is not a directory".into())),
    );
    r.check(
        "nested-create",
        fs::write("sub/inner.txt", "inner").step("write sub/inner.txt"),
    );
    let (root, dot) = (names("/"), names("."));
    r.check(
        "readdir-root",
        want(
            ["note.txt", "sub", "scratch"]
                .iter()
                .all(|n| root.iter().any(|e| e == n))
                && dot.iter().any(|e| e == "note.txt"),
            || format!("read_dir / = {root:?}, . = {dot:?}"),
        ),
    );
    r.check(
        "readdir-sub",
        want(names("sub") == ["inner.txt"], || {
            format!("read_dir sub = {:?}", names("sub"))
        }),
    );
    r.check(
        "rename",
        fs::rename("sub/inner.txt", "moved.txt")
            .step("rename sub/inner.txt moved.txt")
            .and_then(|()| fs::read("moved.txt").step("read moved.txt"))
            .and_then(|b| {
                want(b == b"inner" && missing("sub/inner.txt"), || {
                    format!("moved.txt holds {b:?}")
                })
            }),
    );
    r.check(
        "rmdir",
        fs::remove_dir("sub")
            .step("remove_dir sub")
            .and_then(|()| want(missing("sub"), || "sub still there".into())),
    );
    r.check(
        "unlink",
        fs::remove_file("moved.txt")
            .step("remove_file moved.txt")
            .and_then(|()| want(missing("moved.txt"), || "moved.txt still there".into())),
    );
    r.check(
        "scratch-dir",
        fs::write("/scratch/s.txt", "s")
            .step("write /scratch/s.txt")
            .and_then(|()| {
                want(names("scratch") == ["s.txt"], || {
                    format!("read_dir scratch = {:?}", names("scratch"))
                })
            }),
    );
}

// fs::soft_link is deprecated for fs::os::*::symlink*, but the WASI one (std::os::wasi::fs::symlink_path)
// is still unstable in this toolchain; soft_link is the stable way to make a symlink here.
#[allow(deprecated)]
fn symlink(target: &str, link: &str) -> io::Result<()> {
    fs::soft_link(target, link)
}

fn symlink_checks(r: &mut Report) {
    r.check(
        "symlink-inside",
        symlink("note.txt", "link")
            .step("symlink link -> note.txt")
            .and_then(|()| fs::read("link").step("read link"))
            .and_then(|b| want(b == NOTE, || format!("read {b:?}"))),
    );
    r.check(
        "readlink",
        fs::read_link("link")
            .step("read_link link")
            .and_then(|t| want(t == Path::new("note.txt"), || format!("link -> {t:?}"))),
    );
    r.check(
        "unlink-symlink",
        fs::remove_file("link")
            .step("remove_file link")
            .and_then(|()| want(missing("link") && !missing("note.txt"), || "link or note.txt".into())),
    );
}

/// The template's file: readable through every read API; every way of changing it or its directory fails.
fn template_file_checks(r: &mut Report) {
    r.check(
        "template-file-read",
        fs::read(TEMPLATE_FILE)
            .step("read")
            .and_then(|b| want(b == TEMPLATE_TEXT, || format!("read {b:?}"))),
    );
    r.check(
        "template-file-stat",
        fs::metadata(TEMPLATE_FILE).step("metadata").and_then(|m| {
            want(m.is_file() && m.len() == TEMPLATE_TEXT.len() as u64, || {
                format!("{m:?}")
            })
        }),
    );
    r.check(
        "template-file-readdir",
        want(names("/data") == ["conformance.txt"], || {
            format!("read_dir /data = {:?}", names("/data"))
        }),
    );
    r.refused(
        "template-file-write-refused",
        OpenOptions::new().append(true).open(TEMPLATE_FILE),
        "open for appending",
    );
    r.refused(
        "template-file-create-refused",
        File::create("/data/new.txt"),
        "create /data/new.txt",
    );
    r.refused(
        "template-file-remove-refused",
        fs::remove_file(TEMPLATE_FILE),
        "remove_file",
    );
    r.refused(
        "template-file-rename-refused",
        fs::rename(TEMPLATE_FILE, "/data/moved.txt"),
        "rename within /data",
    );
    r.refused(
        "template-file-mkdir-refused",
        fs::create_dir("/data/sub"),
        "create_dir /data/sub",
    );
    r.check(
        "template-file-unchanged",
        fs::read(TEMPLATE_FILE).step("read again").and_then(|b| {
            want(b == TEMPLATE_TEXT && names("/data") == ["conformance.txt"], || {
                format!("now {b:?}, {:?}", names("/data"))
            })
        }),
    );
}

/// A symlink to `target` must not lead out: either making it or reading through it is refused.
fn symlink_out(r: &mut Report, name: &str, target: &str, link: &str) {
    match symlink(target, link) {
        Err(e) => r.refused::<()>(name, Err(e), ""),
        Ok(()) => {
            r.refused(name, fs::read(link), &format!("read through {link} -> {target}"));
            let _ = fs::remove_file(link);
        }
    }
}

/// Nothing outside the run's own directories can be named.
fn escape_checks(r: &mut Report) {
    r.refused("dotdot-refused", File::create("../escape.txt"), "create ../escape.txt");
    r.refused(
        "scratch-dotdot-refused",
        File::create("/scratch/../../escape.txt"),
        "create /scratch/../../escape.txt",
    );
    match File::open("/etc/passwd") {
        Err(e) if e.kind() == ErrorKind::NotFound => r.refused::<()>("host-path-absent", Err(e), ""),
        Err(e) => r.check("host-path-absent", Err(format!("open /etc/passwd: {e}, not NotFound"))),
        Ok(_) => r.check("host-path-absent", Err("/etc/passwd is readable".into())),
    }
    symlink_out(r, "symlink-out-refused", "/etc/passwd", "out");
    symlink_out(r, "symlink-up-refused", "../../../../etc/passwd", "up");
}

fn main() {
    let mut r = Report::default();
    r.check(
        "getwd-root",
        env::current_dir()
            .step("current_dir")
            .and_then(|wd| want(wd == Path::new("/"), || format!("working directory {wd:?}"))),
    );
    r.check(
        "empty-at-start",
        want(missing("note.txt"), || "note.txt exists before the run wrote it".into()),
    );
    r.check("relative-create", fs::write("note.txt", NOTE).step("write note.txt"));
    r.check(
        "absolute-same-file",
        fs::read("/note.txt")
            .step("read /note.txt")
            .and_then(|b| want(b == NOTE, || format!("/note.txt holds {b:?}"))),
    );
    file_handle_checks(&mut r);
    directory_checks(&mut r);
    symlink_checks(&mut r);
    template_file_checks(&mut r);
    escape_checks(&mut r);

    println!("passed {}/{}", r.passed, r.checks);
    // process::exit runs no destructors: flush stdout's buffer first.
    let _ = io::stdout().flush();
    process::exit(if r.passed == r.checks { 0 } else { 1 });
}
