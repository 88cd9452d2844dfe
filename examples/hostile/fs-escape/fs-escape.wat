;; hostile: fs-escape -- a hostile agent author's attempts to reach past the run's own file system, each
;; with the WASI errno a program must get. Granted `scratch` (`/` and `/scratch`, the run's private
;; directory) with the read-only template file /data/secret.txt (a preopen of the executor's cached,
;; shared file tree: a write that reached it would poison every later run of every template with the
;; same files).
;;
;; stdin: an absolute host path to aim at (the tests pass a canary file they checksum); empty means
;; /etc/passwd. Tried by name (absolute, relative, through symlinks absolute and `..`-relative), through
;; hard links, renames, truncation, write rights, time stamps, rights and fd renumbering over the
;; preopens, `.` and `..` of every preopen, paths past PATH_MAX, NUL, non-UTF-8, a 41-symlink chain and a
;; tree whose path outgrows PATH_MAX. Symlinks pointing out are left in place, so the executor's
;; removal of the run's directory must not follow them.
;;
;; Prints one line per check, "<check> ok", "<check> ok (errno N)" (a refusal with the errno wanted)
;; or "<check> FAIL ...", then "passed N/M"; exits 0 only when every check held (the report format of
;; the fs-conformance agents). Errnos: 8 EBADF, 25 EILSEQ, 28 EINVAL, 32 ELOOP, 37 ENAMETOOLONG,
;; 44 ENOENT, 58 ENOTSUP, 63 EPERM.
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $fd_filestat_set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_times"
    (func $fd_filestat_set_times (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_allocate" (func $fd_allocate (param i32 i64 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_set_rights" (func $fd_fdstat_set_rights (param i32 i64 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_set_flags" (func $fd_fdstat_set_flags (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get"
    (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_set_times"
    (func $path_filestat_set_times (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_remove_directory" (func $path_remove_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $path_unlink_file (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; Memory (32 pages, 2 MiB):
  ;;   0x0000 out parameters: 0x00 fd, 0x04 count, 0x08 iovec, 0x20 number formatting, 0x40 prestat
  ;;   0x0100 read buffer (256), 0x0200 preopen name (256), 0x0300 the host path from stdin (256)
  ;;   0x0400 NUL-terminated strings, one per 64-byte slot
  ;;   0x3000 fd_readdir buffer (8 KiB), 0x5000 paths built at run time (16 KiB)
  ;;   0x10000 the long-path buffer (1 MiB + 1)
  (memory (export "memory") 32)
  (global $OUT_FD i32 (i32.const 0x00))
  (global $OUT_N i32 (i32.const 0x04))
  (global $IOV i32 (i32.const 0x08))
  (global $NUM i32 (i32.const 0x20))
  (global $PRESTAT i32 (i32.const 0x40))
  (global $READ_BUF i32 (i32.const 0x100))
  (global $NAME_BUF i32 (i32.const 0x200))
  (global $HOST i32 (i32.const 0x300))
  (global $DIR_BUF i32 (i32.const 0x3000))
  (global $PATH i32 (i32.const 0x5000))
  (global $LONG i32 (i32.const 0x10000))

  (global $EBADF i32 (i32.const 8))
  (global $EILSEQ i32 (i32.const 25))
  (global $EINVAL i32 (i32.const 28))
  (global $ELOOP i32 (i32.const 32))
  (global $ENAMETOOLONG i32 (i32.const 37))
  (global $ENOENT i32 (i32.const 44))
  (global $ENOTSUP i32 (i32.const 58))
  (global $EPERM i32 (i32.const 63))
  (global $FOLLOW i32 (i32.const 1))
  (global $O_CREAT i32 (i32.const 1))
  (global $O_DIRECTORY i32 (i32.const 2))
  (global $O_EXCL i32 (i32.const 4))
  (global $O_TRUNC i32 (i32.const 8))
  (global $FDFLAG_APPEND i32 (i32.const 1))
  ;; rights: read 1<<1, seek 1<<2, tell 1<<5, write 1<<6, readdir 1<<14, filestat_get 1<<21,
  ;; filestat_set_size 1<<22, filestat_set_times 1<<23; every right of preview 1 is 0x1fffffff
  (global $R_READ i64 (i64.const 0x200026))
  (global $R_WRITE i64 (i64.const 0xc00040))
  (global $R_READDIR i64 (i64.const 0x204000))
  (global $R_ALL i64 (i64.const 0x1fffffff))
  (global $R_DIR i64 (i64.const 0x1fffffbd))  ;; every right but fd_read and fd_write: a writable directory
  ;; fstflags: atim 1, atim_now 2, mtim 4, mtim_now 8
  (global $SET_TIMES i32 (i32.const 5))
  (global $SET_TIMES_NOW i32 (i32.const 10))

  (global $checks (mut i32) (i32.const 0))
  (global $passed (mut i32) (i32.const 0))
  (global $root (mut i32) (i32.const -1))
  (global $scratch (mut i32) (i32.const -1))
  (global $data (mut i32) (i32.const -1))
  (global $file (mut i32) (i32.const -1))  ;; /data/secret.txt opened for reading
  (global $given (mut i32) (i32.const 0))  ;; 1 when stdin named the host path

  ;; Strings: paths and contents, then the report's words, then check names (64-byte slots).
  (data (i32.const 0x400) "/\00")
  (data (i32.const 0x440) "/scratch\00")
  (data (i32.const 0x480) "/data\00")
  (data (i32.const 0x4c0) "secret.txt\00")
  (data (i32.const 0x500) "shipped with the template, read-only\n\00")
  (data (i32.const 0x540) "/etc/passwd\00")
  (data (i32.const 0x580) "abs\00")
  (data (i32.const 0x5c0) "up\00")
  (data (i32.const 0x600) "../../../../../../../../../../../../../../..\00")  ;; 15 levels: / from any run directory
  (data (i32.const 0x640) "../stdin\00")
  (data (i32.const 0x680) "stdin-link\00")
  (data (i32.const 0x6c0) "slash\00")
  (data (i32.const 0x700) "loop\00")
  (data (i32.const 0x740) "stolen\00")
  (data (i32.const 0x780) "mine\00")
  (data (i32.const 0x7c0) "copy\00")
  (data (i32.const 0x800) "moved\00")
  (data (i32.const 0x840) ".\00")
  (data (i32.const 0x880) "..\00")
  (data (i32.const 0x8c0) "new.txt\00")
  (data (i32.const 0x900) "x\00")
  (data (i32.const 0x940) "../..\00")
  (data (i32.const 0x980) "scratch\00")
  (data (i32.const 0x9c0) "a\00b\00")
  (data (i32.const 0xa00) "\ff\fe\00")
  (data (i32.const 0xa40) "target\00")
  (data (i32.const 0xa80) "deep\00")
  (data (i32.const 0xac0) "leaf\00")
  (data (i32.const 0xb00) "mine-dir\00")
  (data (i32.const 0xb40) "host-dir\00")

  (data (i32.const 0xc00) " ok\n\00")
  (data (i32.const 0xc40) " ok (errno \00")
  (data (i32.const 0xc80) ")\n\00")
  (data (i32.const 0xcc0) " FAIL errno \00")
  (data (i32.const 0xd00) " FAIL wrong result\n\00")
  (data (i32.const 0xd40) " FAIL the call succeeded\n\00")
  (data (i32.const 0xd80) ", want \00")
  (data (i32.const 0xdc0) "\n\00")
  (data (i32.const 0xe00) "passed \00")
  (data (i32.const 0xe40) "/\00")
  (data (i32.const 0xe80) " FAIL it succeeded, want errno \00")

  (data (i32.const 0x1000) "preopens\00")
  (data (i32.const 0x1040) "readdir-root-own-entries-only\00")
  (data (i32.const 0x1080) "readdir-scratch-empty\00")
  (data (i32.const 0x10c0) "readdir-data-template-file-only\00")
  (data (i32.const 0x1100) "host-path-absolute-open\00")
  (data (i32.const 0x1140) "host-path-relative-open\00")
  (data (i32.const 0x1180) "host-path-dotdot-open\00")
  (data (i32.const 0x11c0) "host-path-dotdot-create\00")
  (data (i32.const 0x1200) "symlink-absolute-host-path\00")
  (data (i32.const 0x1240) "symlink-absolute-not-made\00")
  (data (i32.const 0x1280) "symlink-dotdot-made\00")
  (data (i32.const 0x12c0) "symlink-dotdot-open\00")
  (data (i32.const 0x1300) "symlink-dotdot-create-through\00")
  (data (i32.const 0x1340) "symlink-to-stdin-file\00")
  (data (i32.const 0x1380) "symlink-to-slash\00")
  (data (i32.const 0x13c0) "symlink-loop\00")
  (data (i32.const 0x1400) "symlink-chain-40-followed\00")
  (data (i32.const 0x1440) "symlink-chain-41-eloop\00")
  (data (i32.const 0x1480) "scratch-dotdot-dotdot\00")
  (data (i32.const 0x14c0) "root-dot-opens\00")
  (data (i32.const 0x1500) "root-dot-then-dotdot\00")
  (data (i32.const 0x1540) "root-dotdot\00")
  (data (i32.const 0x1580) "data-dotdot\00")
  (data (i32.const 0x15c0) "hardlink-template-into-root\00")
  (data (i32.const 0x1600) "hardlink-not-made\00")
  (data (i32.const 0x1640) "hardlink-within-data\00")
  (data (i32.const 0x1680) "hardlink-root-into-data\00")
  (data (i32.const 0x16c0) "rename-template-file-out\00")
  (data (i32.const 0x1700) "rename-data-mount\00")
  (data (i32.const 0x1740) "rename-into-data\00")
  (data (i32.const 0x1780) "rename-over-template-file\00")
  (data (i32.const 0x17c0) "open-template-o-trunc\00")
  (data (i32.const 0x1800) "open-template-write-rights\00")
  (data (i32.const 0x1840) "open-template-all-rights\00")
  (data (i32.const 0x1880) "create-excl-in-data\00")
  (data (i32.const 0x18c0) "data-dot-all-rights\00")
  (data (i32.const 0x1900) "open-template-append-flag-reads\00")
  (data (i32.const 0x1940) "append-fd-write\00")
  (data (i32.const 0x1980) "read-fd-write\00")
  (data (i32.const 0x19c0) "read-fd-pwrite\00")
  (data (i32.const 0x1a00) "read-fd-set-size\00")
  (data (i32.const 0x1a40) "read-fd-set-times\00")
  (data (i32.const 0x1a80) "read-fd-allocate\00")
  (data (i32.const 0x1ac0) "read-fd-set-rights\00")
  (data (i32.const 0x1b00) "read-fd-set-append-then-write\00")
  (data (i32.const 0x1b40) "data-preopen-set-rights\00")
  (data (i32.const 0x1b80) "path-set-times-template\00")
  (data (i32.const 0x1bc0) "path-set-times-now-template\00")
  (data (i32.const 0x1c00) "path-set-times-data-dir\00")
  (data (i32.const 0x1c40) "data-dot-opens-read-only\00")
  (data (i32.const 0x1c80) "data-dot-create-refused\00")
  (data (i32.const 0x1cc0) "renumber-data-over-writable-dir\00")
  (data (i32.const 0x1d00) "renumbered-dir-create-refused\00")
  (data (i32.const 0x1d40) "unlink-template-file\00")
  (data (i32.const 0x1d80) "rmdir-data-mount\00")
  (data (i32.const 0x1dc0) "path-4096-bytes\00")
  (data (i32.const 0x1e00) "path-1-mib\00")
  (data (i32.const 0x1e40) "name-256-bytes\00")
  (data (i32.const 0x1e80) "path-with-nul\00")
  (data (i32.const 0x1ec0) "path-not-utf8\00")
  (data (i32.const 0x1f00) "deep-tree-made-through-fds\00")
  (data (i32.const 0x1f40) "deep-path-too-long\00")
  (data (i32.const 0x1f80) "deep-leaf-created\00")
  (data (i32.const 0x1fc0) "template-file-unchanged\00")
  (data (i32.const 0x2000) "host-dir-symlink-made\00")
  (data (i32.const 0x2040) "host-dir-symlink-open\00")

  ;; ---------------------------------------------------------------------------------------------
  ;; Strings and the report

  (func $strlen (param $p i32) (result i32)
    (local $q i32)
    (local.set $q (local.get $p))
    (block $end
      (loop $next
        (br_if $end (i32.eqz (i32.load8_u (local.get $q))))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $next)))
    (i32.sub (local.get $q) (local.get $p)))

  ;; 1 when the n bytes at p are the NUL-terminated string s (without its NUL).
  (func $is (param $p i32) (param $n i32) (param $s i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $n) (call $strlen (local.get $s))) (then (return (i32.const 0))))
    (block $differ
      (loop $next
        (if (i32.ge_u (local.get $i) (local.get $n)) (then (return (i32.const 1))))
        (br_if $differ (i32.ne (i32.load8_u (i32.add (local.get $p) (local.get $i)))
                               (i32.load8_u (i32.add (local.get $s) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; Copies the NUL-terminated string s to dst (with its NUL); returns the address of that NUL.
  (func $append (param $dst i32) (param $s i32) (result i32)
    (local $n i32)
    (local.set $n (call $strlen (local.get $s)))
    (memory.copy (local.get $dst) (local.get $s) (i32.add (local.get $n) (i32.const 1)))
    (i32.add (local.get $dst) (local.get $n)))

  (func $print (param $s i32)
    (local $p i32) (local $n i32)
    (local.set $p (local.get $s))
    (local.set $n (call $strlen (local.get $s)))
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (global.get $IOV) (local.get $p))
        (i32.store offset=4 (global.get $IOV) (local.get $n))
        (br_if $done (call $fd_write (i32.const 1) (global.get $IOV) (i32.const 1) (global.get $OUT_N)))
        (local.set $p (i32.add (local.get $p) (i32.load (global.get $OUT_N))))
        (local.set $n (i32.sub (local.get $n) (i32.load (global.get $OUT_N))))
        (br $more))))

  (func $print_u32 (param $v i32)
    (local $p i32)
    (local.set $p (i32.add (global.get $NUM) (i32.const 15)))
    (i32.store8 (local.get $p) (i32.const 0))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $digit (local.get $v)))
    (call $print (local.get $p)))

  ;; A call that must succeed (0) or a result that must hold (-1 when it does not).
  (func $check (param $name i32) (param $code i32)
    (global.set $checks (i32.add (global.get $checks) (i32.const 1)))
    (call $print (local.get $name))
    (if (i32.eqz (local.get $code))
      (then
        (global.set $passed (i32.add (global.get $passed) (i32.const 1)))
        (call $print (i32.const 0xc00))
        (return)))
    (if (i32.lt_s (local.get $code) (i32.const 0))
      (then (call $print (i32.const 0xd00)) (return)))
    (call $print (i32.const 0xcc0))
    (call $print_u32 (local.get $code))
    (call $print (i32.const 0xdc0)))

  ;; A refusal: passes only when the call failed with exactly `want`.
  (func $refused (param $name i32) (param $errno i32) (param $want i32)
    (global.set $checks (i32.add (global.get $checks) (i32.const 1)))
    (call $print (local.get $name))
    (if (i32.eq (local.get $errno) (local.get $want))
      (then
        (global.set $passed (i32.add (global.get $passed) (i32.const 1)))
        (call $print (i32.const 0xc40))
        (call $print_u32 (local.get $errno))
        (call $print (i32.const 0xc80))
        (return)))
    (if (i32.eqz (local.get $errno))
      (then
        (call $print (i32.const 0xe80))
        (call $print_u32 (local.get $want))
        (call $print (i32.const 0xdc0))
        (return)))
    (call $print (i32.const 0xcc0))
    (call $print_u32 (local.get $errno))
    (call $print (i32.const 0xd80))
    (call $print_u32 (local.get $want))
    (call $print (i32.const 0xdc0)))

  ;; ---------------------------------------------------------------------------------------------
  ;; File-system helpers: each returns a WASI errno (0 on success); paths are NUL-terminated.

  ;; path_open; the new fd is at $OUT_FD. A file opened here that a check did not want is closed by it.
  (func $open (param $dir i32) (param $lookup i32) (param $path i32) (param $oflags i32) (param $rights i64)
              (param $fdflags i32) (result i32)
    (call $path_open (local.get $dir) (local.get $lookup) (local.get $path) (call $strlen (local.get $path))
      (local.get $oflags) (local.get $rights) (local.get $rights) (local.get $fdflags) (global.get $OUT_FD)))

  ;; The errno of an open that should be refused; a descriptor it wrongly got is closed.
  (func $open_errno (param $dir i32) (param $lookup i32) (param $path i32) (param $oflags i32) (param $rights i64)
                    (param $fdflags i32) (result i32)
    (local $e i32)
    (local.set $e (call $open (local.get $dir) (local.get $lookup) (local.get $path) (local.get $oflags)
      (local.get $rights) (local.get $fdflags)))
    (if (i32.eqz (local.get $e)) (then (drop (call $fd_close (i32.load (global.get $OUT_FD))))))
    (local.get $e))

  (func $symlink (param $target i32) (param $dir i32) (param $link i32) (result i32)
    (call $path_symlink (local.get $target) (call $strlen (local.get $target))
      (local.get $dir) (local.get $link) (call $strlen (local.get $link))))

  (func $link (param $from_dir i32) (param $from i32) (param $to_dir i32) (param $to i32) (result i32)
    (call $path_link (local.get $from_dir) (i32.const 0) (local.get $from) (call $strlen (local.get $from))
      (local.get $to_dir) (local.get $to) (call $strlen (local.get $to))))

  (func $rename (param $from_dir i32) (param $from i32) (param $to_dir i32) (param $to i32) (result i32)
    (call $path_rename (local.get $from_dir) (local.get $from) (call $strlen (local.get $from))
      (local.get $to_dir) (local.get $to) (call $strlen (local.get $to))))

  (func $mkdir (param $dir i32) (param $path i32) (result i32)
    (call $path_create_directory (local.get $dir) (local.get $path) (call $strlen (local.get $path))))

  ;; 0 when dir/path does not exist (ENOENT, not following a final symlink), else the errno or -1.
  (func $absent (param $dir i32) (param $path i32) (result i32)
    (local $e i32)
    (local.set $e (call $path_filestat_get (local.get $dir) (i32.const 0) (local.get $path)
      (call $strlen (local.get $path)) (global.get $DIR_BUF)))
    (if (i32.eq (local.get $e) (global.get $ENOENT)) (then (return (i32.const 0))))
    (if (result i32) (local.get $e) (then (local.get $e)) (else (i32.const -1))))

  ;; Creates dir/path empty (a plain file for links and renames).
  (func $touch (param $dir i32) (param $path i32) (result i32)
    (local $e i32)
    (local.set $e (call $open (local.get $dir) (i32.const 0) (local.get $path) (global.get $O_CREAT)
      (global.get $R_WRITE) (i32.const 0)))
    (if (i32.eqz (local.get $e)) (then (drop (call $fd_close (i32.load (global.get $OUT_FD))))))
    (local.get $e))

  ;; The entries of directory fd other than "." and "..": 0 when they are exactly `count` names and
  ;; `name` (when not 0) is one of them; -1 when not; an errno when fd_readdir failed.
  (func $lists (param $fd i32) (param $count i32) (param $name i32) (result i32)
    (local $e i32) (local $at i32) (local $end i32) (local $len i32) (local $seen i32) (local $hit i32)
    (local.set $e (call $fd_readdir (local.get $fd) (global.get $DIR_BUF) (i32.const 0x2000) (i64.const 0)
      (global.get $OUT_N)))
    (if (local.get $e) (then (return (local.get $e))))
    ;; dirent: d_next u64, d_ino u64, d_namlen u32, d_type u8, padding: 24 bytes, then the name.
    (local.set $at (global.get $DIR_BUF))
    (local.set $end (i32.add (global.get $DIR_BUF) (i32.load (global.get $OUT_N))))
    (block $done
      (loop $entry
        (br_if $done (i32.gt_u (i32.add (local.get $at) (i32.const 24)) (local.get $end)))
        (local.set $len (i32.load offset=16 (local.get $at)))
        (local.set $at (i32.add (local.get $at) (i32.const 24)))
        (br_if $done (i32.gt_u (i32.add (local.get $at) (local.get $len)) (local.get $end)))
        (if (i32.eqz (i32.or (call $is (local.get $at) (local.get $len) (i32.const 0x840))
                             (call $is (local.get $at) (local.get $len) (i32.const 0x880))))
          (then
            (local.set $seen (i32.add (local.get $seen) (i32.const 1)))
            (if (local.get $name)
              (then (if (call $is (local.get $at) (local.get $len) (local.get $name))
                (then (local.set $hit (i32.const 1))))))))
        (local.set $at (i32.add (local.get $at) (local.get $len)))
        (br $entry)))
    (if (i32.ne (local.get $seen) (local.get $count)) (then (return (i32.const -1))))
    (if (i32.and (i32.ne (local.get $name) (i32.const 0)) (i32.eqz (local.get $hit))) (then (return (i32.const -1))))
    (i32.const 0))

  (func $find_preopen (param $name i32) (result i32)
    (local $fd i32) (local $len i32)
    (local.set $fd (i32.const 3))
    (block $none
      (loop $next
        (br_if $none (call $fd_prestat_get (local.get $fd) (global.get $PRESTAT)))
        (local.set $len (i32.load offset=4 (global.get $PRESTAT)))
        (if (i32.le_u (local.get $len) (i32.const 255))
          (then
            (if (i32.eqz (call $fd_prestat_dir_name (local.get $fd) (global.get $NAME_BUF) (local.get $len)))
              (then
                (if (call $is (global.get $NAME_BUF) (local.get $len) (local.get $name))
                  (then (return (local.get $fd))))))))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $next)))
    (i32.const -1))

  (func $preopens (result i32)
    (global.set $root (call $find_preopen (i32.const 0x400)))
    (global.set $scratch (call $find_preopen (i32.const 0x440)))
    (global.set $data (call $find_preopen (i32.const 0x480)))
    (if (result i32) (i32.or (i32.lt_s (global.get $root) (i32.const 0))
                             (i32.or (i32.lt_s (global.get $scratch) (i32.const 0))
                                     (i32.lt_s (global.get $data) (i32.const 0))))
      (then (i32.const -1)) (else (i32.const 0))))

  ;; stdin (at most 255 bytes, a trailing newline dropped) into $HOST as a NUL-terminated string;
  ;; /etc/passwd when it is empty.
  (func $read_host_path
    (local $n i32)
    (i32.store (global.get $IOV) (global.get $HOST))
    (i32.store offset=4 (global.get $IOV) (i32.const 255))
    (if (i32.eqz (call $fd_read (i32.const 0) (global.get $IOV) (i32.const 1) (global.get $OUT_N)))
      (then (local.set $n (i32.load (global.get $OUT_N)))))
    (if (i32.and (i32.gt_u (local.get $n) (i32.const 0))
                 (i32.eq (i32.load8_u (i32.sub (i32.add (global.get $HOST) (local.get $n)) (i32.const 1))) (i32.const 10)))
      (then (local.set $n (i32.sub (local.get $n) (i32.const 1)))))
    (i32.store8 (i32.add (global.get $HOST) (local.get $n)) (i32.const 0))
    (global.set $given (i32.ne (local.get $n) (i32.const 0)))
    (if (i32.eqz (local.get $n)) (then (drop (call $append (global.get $HOST) (i32.const 0x540))))))

  ;; ---------------------------------------------------------------------------------------------
  ;; Checks with several steps

  ;; Symlink "up" -> 15 levels of "..": made (a relative target is only checked when followed).
  (func $symlink_dotdot (result i32) (call $symlink (i32.const 0x600) (global.get $root) (i32.const 0x5c0)))

  ;; The host path through that symlink: "up" + "/etc/passwd" names the host file if it were followed.
  (func $through_up (result i32)
    (drop (call $append (call $append (global.get $PATH) (i32.const 0x5c0)) (global.get $HOST)))
    (global.get $PATH))

  ;; 15 levels of ".." then the host path: the host file itself from any run directory, were `..` honoured.
  (func $dotdot_host (result i32)
    (drop (call $append (call $append (global.get $PATH) (i32.const 0x600)) (global.get $HOST)))
    (global.get $PATH))

  ;; "host-dir" -> 15 levels of ".." then the host path's directory (made only when stdin named the
  ;; path: a directory symlink left in the run's directory, which the host's clean-up must not follow;
  ;; a test's canary lies there, never /etc).
  (func $host_dir_symlink (result i32)
    (local $at i32) (local $slash i32)
    (local.set $at (call $append (global.get $PATH) (i32.const 0x600)))
    (local.set $slash (local.get $at))
    (drop (call $append (local.get $at) (global.get $HOST)))
    (loop $scan  ;; the last "/" of the host path, which ends its directory
      (if (i32.eq (i32.load8_u (local.get $at)) (i32.const 47)) (then (local.set $slash (local.get $at))))
      (local.set $at (i32.add (local.get $at) (i32.const 1)))
      (br_if $scan (i32.load8_u (local.get $at))))
    (i32.store8 (local.get $slash) (i32.const 0))
    (call $symlink (global.get $PATH) (global.get $root) (i32.const 0xb40)))

  ;; "host-dir" + the host path's last component (from its last "/"): the host file through that link.
  (func $through_host_dir (result i32)
    (local $at i32) (local $slash i32)
    (local.set $at (global.get $HOST))
    (loop $scan
      (if (i32.eq (i32.load8_u (local.get $at)) (i32.const 47)) (then (local.set $slash (local.get $at))))
      (local.set $at (i32.add (local.get $at) (i32.const 1)))
      (br_if $scan (i32.load8_u (local.get $at))))
    (drop (call $append (call $append (global.get $PATH) (i32.const 0xb40)) (local.get $slash)))
    (global.get $PATH))

  ;; "c00" -> "c01" -> ... -> "c40" -> "target" (a file): opening c01 follows 40 links, c00 41.
  (func $chain_name (param $i i32) (param $at i32) (result i32)
    (i32.store8 (local.get $at) (i32.const 99))  ;; 'c'
    (i32.store8 offset=1 (local.get $at) (i32.add (i32.const 48) (i32.div_u (local.get $i) (i32.const 10))))
    (i32.store8 offset=2 (local.get $at) (i32.add (i32.const 48) (i32.rem_u (local.get $i) (i32.const 10))))
    (i32.store8 offset=3 (local.get $at) (i32.const 0))
    (local.get $at))

  (func $make_chain (result i32)
    (local $i i32) (local $e i32)
    (local.set $e (call $touch (global.get $root) (i32.const 0xa40)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $e (call $symlink (i32.const 0xa40) (global.get $root)
      (call $chain_name (i32.const 40) (global.get $PATH))))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $i (i32.const 40))
    (loop $next
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (local.set $e (call $symlink
        (call $chain_name (i32.add (local.get $i) (i32.const 1)) (global.get $PATH))
        (global.get $root)
        (call $chain_name (local.get $i) (i32.add (global.get $PATH) (i32.const 8)))))
      (if (local.get $e) (then (return (local.get $e))))
      (br_if $next (local.get $i)))
    (i32.const 0))

  (func $open_chain (param $i i32) (result i32)
    (call $open_errno (global.get $root) (global.get $FOLLOW) (call $chain_name (local.get $i) (global.get $PATH))
      (i32.const 0) (global.get $R_READ) (i32.const 0)))

  ;; Opens "." of `dir` as a directory with `rights`; the fd is at $OUT_FD.
  (func $open_dot (param $dir i32) (param $rights i64) (result i32)
    (call $path_open (local.get $dir) (i32.const 0) (i32.const 0x840) (i32.const 1) (global.get $O_DIRECTORY)
      (local.get $rights) (global.get $R_ALL) (i32.const 0) (global.get $OUT_FD)))

  ;; "." of root, then ".." from that descriptor.
  (func $root_dot_dotdot (result i32)
    (local $e i32) (local $fd i32)
    (local.set $e (call $open_dot (global.get $root) (global.get $R_READDIR)))
    (if (local.get $e) (then (return (i32.const -1))))
    (local.set $fd (i32.load (global.get $OUT_FD)))
    (local.set $e (call $open_errno (local.get $fd) (i32.const 0) (i32.const 0x880) (global.get $O_DIRECTORY)
      (global.get $R_READDIR) (i32.const 0)))
    (drop (call $fd_close (local.get $fd)))
    (local.get $e))

  (func $write_x (param $fd i32) (result i32)
    (i32.store (global.get $IOV) (i32.const 0x900))
    (i32.store offset=4 (global.get $IOV) (i32.const 1))
    (call $fd_write (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT_N)))

  (func $pwrite_x (param $fd i32) (result i32)
    (i32.store (global.get $IOV) (i32.const 0x900))
    (i32.store offset=4 (global.get $IOV) (i32.const 1))
    (call $fd_pwrite (local.get $fd) (global.get $IOV) (i32.const 1) (i64.const 0) (global.get $OUT_N)))

  ;; The template file opened for reading with the APPEND fdflag: the descriptor it gives (if any).
  (global $append_fd (mut i32) (i32.const -1))
  (func $open_append (result i32)
    (local $e i32)
    (local.set $e (call $open (global.get $data) (i32.const 0) (i32.const 0x4c0) (i32.const 0) (global.get $R_READ)
      (global.get $FDFLAG_APPEND)))
    (if (i32.eqz (local.get $e)) (then (global.set $append_fd (i32.load (global.get $OUT_FD)))))
    (local.get $e))

  (func $set_append_then_write (result i32)
    (local $e i32)
    (local.set $e (call $fd_fdstat_set_flags (global.get $file) (global.get $FDFLAG_APPEND)))
    (if (local.get $e) (then (return (local.get $e))))
    (call $write_x (global.get $file)))

  ;; "." of /data with read rights: a descriptor, still read-only.
  (global $data_dot (mut i32) (i32.const -1))
  (func $data_dot_opens (result i32)
    (local $e i32)
    (local.set $e (call $open_dot (global.get $data) (global.get $R_READDIR)))
    (if (i32.eqz (local.get $e)) (then (global.set $data_dot (i32.load (global.get $OUT_FD)))))
    (local.get $e))

  ;; A writable descriptor of "." of `/`, then the read-only "." of /data renumbered over it.
  (global $renumbered (mut i32) (i32.const -1))
  (func $renumber_over (result i32)
    (local $e i32) (local $writable i32) (local $readonly i32)
    (local.set $e (call $open_dot (global.get $root) (global.get $R_DIR)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $writable (i32.load (global.get $OUT_FD)))
    (local.set $e (call $open_dot (global.get $data) (global.get $R_READDIR)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $readonly (i32.load (global.get $OUT_FD)))
    (local.set $e (call $fd_renumber (local.get $readonly) (local.get $writable)))
    (if (i32.eqz (local.get $e)) (then (global.set $renumbered (local.get $writable))))
    (local.get $e))

  ;; A 4096-byte path ("a/" 2048 times) and a 1 MiB one ("." then 1 MiB - 1 slashes), at $LONG.
  (func $long_path (param $n i32) (result i32)
    (local $i i32)
    (loop $pair
      (i32.store16 (i32.add (global.get $LONG) (local.get $i)) (i32.const 0x2f61))  ;; "a/"
      (local.set $i (i32.add (local.get $i) (i32.const 2)))
      (br_if $pair (i32.lt_u (local.get $i) (local.get $n))))
    (call $path_open (global.get $root) (i32.const 0) (global.get $LONG) (local.get $n) (i32.const 0)
      (global.get $R_READ) (i64.const 0) (i32.const 0) (global.get $OUT_FD)))

  (func $mib_path (result i32)
    (i32.store8 (global.get $LONG) (i32.const 46))
    (memory.fill (i32.add (global.get $LONG) (i32.const 1)) (i32.const 47) (i32.const 0xfffff))
    (call $path_open (global.get $root) (i32.const 0) (global.get $LONG) (i32.const 0x100000) (i32.const 0)
      (global.get $R_READ) (i64.const 0) (i32.const 0) (global.get $OUT_FD)))

  ;; Creating a file whose one name is 256 bytes (NAME_MAX is 255).
  (func $long_name (result i32)
    (memory.fill (global.get $LONG) (i32.const 110) (i32.const 256))  ;; "nnn..."
    (i32.store8 (i32.add (global.get $LONG) (i32.const 256)) (i32.const 0))
    (call $open_errno (global.get $scratch) (i32.const 0) (global.get $LONG) (global.get $O_CREAT)
      (global.get $R_WRITE) (i32.const 0)))

  ;; deep/<250 d>/<250 d>/... 20 levels, each made through the descriptor of its parent (so no call
  ;; names more than 250 bytes); the whole path, 5,025 bytes, is then too long to name from `/`.
  (global $deep_fd (mut i32) (i32.const -1))
  (func $deep_tree (result i32)
    (local $level i32) (local $e i32) (local $fd i32) (local $next i32)
    (memory.fill (global.get $LONG) (i32.const 100) (i32.const 250))
    (i32.store8 (i32.add (global.get $LONG) (i32.const 250)) (i32.const 0))
    (local.set $e (call $mkdir (global.get $root) (i32.const 0xa80)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $e (call $open (global.get $root) (i32.const 0) (i32.const 0xa80) (global.get $O_DIRECTORY)
      (global.get $R_DIR) (i32.const 0)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $fd (i32.load (global.get $OUT_FD)))
    (loop $down
      (local.set $e (call $mkdir (local.get $fd) (global.get $LONG)))
      (if (local.get $e) (then (return (local.get $e))))
      (local.set $e (call $open (local.get $fd) (i32.const 0) (global.get $LONG) (global.get $O_DIRECTORY)
        (global.get $R_DIR) (i32.const 0)))
      (if (local.get $e) (then (return (local.get $e))))
      (local.set $next (i32.load (global.get $OUT_FD)))
      (drop (call $fd_close (local.get $fd)))
      (local.set $fd (local.get $next))
      (local.set $level (i32.add (local.get $level) (i32.const 1)))
      (br_if $down (i32.lt_u (local.get $level) (i32.const 20))))
    (global.set $deep_fd (local.get $fd))
    (i32.const 0))

  ;; "deep" + 20 x ("/" + the 250-byte name) + "/leaf" at $PATH.
  (func $deep_path (result i32)
    (local $at i32) (local $level i32)
    (local.set $at (call $append (global.get $PATH) (i32.const 0xa80)))
    (loop $down
      (i32.store8 (local.get $at) (i32.const 47))
      (local.set $at (call $append (i32.add (local.get $at) (i32.const 1)) (global.get $LONG)))
      (local.set $level (i32.add (local.get $level) (i32.const 1)))
      (br_if $down (i32.lt_u (local.get $level) (i32.const 20))))
    (i32.store8 (local.get $at) (i32.const 47))
    (drop (call $append (i32.add (local.get $at) (i32.const 1)) (i32.const 0xac0)))
    (call $open_errno (global.get $root) (i32.const 0) (global.get $PATH) (global.get $O_CREAT)
      (global.get $R_WRITE) (i32.const 0)))

  ;; The template file still reads as shipped and /data lists only it.
  (func $template_unchanged (result i32)
    (local $e i32) (local $fd i32)
    (local.set $e (call $open (global.get $data) (global.get $FOLLOW) (i32.const 0x4c0) (i32.const 0)
      (global.get $R_READ) (i32.const 0)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $fd (i32.load (global.get $OUT_FD)))
    (i32.store (global.get $IOV) (global.get $READ_BUF))
    (i32.store offset=4 (global.get $IOV) (i32.const 256))
    (local.set $e (call $fd_read (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT_N)))
    (drop (call $fd_close (local.get $fd)))
    (if (local.get $e) (then (return (local.get $e))))
    (if (i32.eqz (call $is (global.get $READ_BUF) (i32.load (global.get $OUT_N)) (i32.const 0x500)))
      (then (return (i32.const -1))))
    (call $lists (global.get $data) (i32.const 1) (i32.const 0x4c0)))

  ;; ---------------------------------------------------------------------------------------------

  (func (export "_start")
    (call $check (i32.const 0x1000) (call $preopens))
    (if (i32.lt_s (global.get $passed) (i32.const 1))
      (then
        (call $print (i32.const 0xe00)) (call $print_u32 (global.get $passed))
        (call $print (i32.const 0xe40)) (call $print_u32 (global.get $checks)) (call $print (i32.const 0xdc0))
        (call $proc_exit (i32.const 1))))
    (call $read_host_path)

    ;; What the run can list: its own (empty) directories and the template's file, no host names.
    (call $check (i32.const 0x1040) (call $lists (global.get $root) (i32.const 1) (i32.const 0x980)))
    (call $check (i32.const 0x1080) (call $lists (global.get $scratch) (i32.const 0) (i32.const 0)))
    (call $check (i32.const 0x10c0) (call $lists (global.get $data) (i32.const 1) (i32.const 0x4c0)))

    ;; The host path by name: absolute (EPERM), relative (no such file inside `/`), `..` out (EPERM).
    (call $refused (i32.const 0x1100) (call $open_errno (global.get $root) (global.get $FOLLOW) (global.get $HOST)
      (i32.const 0) (global.get $R_READ) (i32.const 0)) (global.get $EPERM))
    (call $refused (i32.const 0x1140) (call $open_errno (global.get $root) (global.get $FOLLOW)
      (i32.add (global.get $HOST) (i32.const 1)) (i32.const 0) (global.get $R_READ) (i32.const 0)) (global.get $ENOENT))
    (call $refused (i32.const 0x1180) (call $open_errno (global.get $root) (global.get $FOLLOW) (call $dotdot_host)
      (i32.const 0) (global.get $R_READ) (i32.const 0)) (global.get $EPERM))
    (call $refused (i32.const 0x11c0) (call $open_errno (global.get $root) (global.get $FOLLOW) (call $dotdot_host)
      (global.get $O_TRUNC) (global.get $R_WRITE) (i32.const 0)) (global.get $EPERM))

    ;; Symlinks out: an absolute target is refused when made; a `..` one is made (its target is only
    ;; resolved when followed) and refused when followed, and left in place for the host's clean-up.
    (call $refused (i32.const 0x1200) (call $symlink (global.get $HOST) (global.get $root) (i32.const 0x580))
      (global.get $EPERM))
    (call $check (i32.const 0x1240) (call $absent (global.get $root) (i32.const 0x580)))
    (call $check (i32.const 0x1280) (call $symlink_dotdot))
    (call $refused (i32.const 0x12c0) (call $open_errno (global.get $root) (global.get $FOLLOW) (call $through_up)
      (i32.const 0) (global.get $R_READ) (i32.const 0)) (global.get $EPERM))
    (call $refused (i32.const 0x1300) (call $open_errno (global.get $root) (global.get $FOLLOW) (call $through_up)
      (i32.or (global.get $O_CREAT) (global.get $O_TRUNC)) (global.get $R_WRITE) (i32.const 0)) (global.get $EPERM))
    ;; "up" names the host's / if ever followed: not left for the clean-up (a bug there would be the host's).
    (drop (call $path_unlink_file (global.get $root) (i32.const 0x5c0) (i32.const 2)))
    (if (global.get $given)
      (then
        (call $check (i32.const 0x2000) (call $host_dir_symlink))
        (call $refused (i32.const 0x2040) (call $open_errno (global.get $root) (global.get $FOLLOW)
          (call $through_host_dir) (i32.const 0) (global.get $R_READ) (i32.const 0)) (global.get $EPERM))))
    (drop (call $symlink (i32.const 0x640) (global.get $root) (i32.const 0x680)))
    (call $refused (i32.const 0x1340) (call $open_errno (global.get $root) (global.get $FOLLOW) (i32.const 0x680)
      (i32.const 0) (global.get $R_READ) (i32.const 0)) (global.get $EPERM))
    (call $refused (i32.const 0x1380) (call $symlink (i32.const 0x400) (global.get $root) (i32.const 0x6c0))
      (global.get $EPERM))
    (drop (call $symlink (i32.const 0x700) (global.get $root) (i32.const 0x700)))
    (call $refused (i32.const 0x13c0) (call $open_errno (global.get $root) (global.get $FOLLOW) (i32.const 0x700)
      (i32.const 0) (global.get $R_READ) (i32.const 0)) (global.get $ELOOP))
    (if (i32.eqz (call $make_chain))
      (then
        (call $check (i32.const 0x1400) (call $open_chain (i32.const 1)))
        (call $refused (i32.const 0x1440) (call $open_chain (i32.const 0)) (global.get $ELOOP)))
      (else
        (call $check (i32.const 0x1400) (i32.const -1))
        (call $check (i32.const 0x1440) (i32.const -1))))

    ;; `.` and `..` of the preopens.
    (call $refused (i32.const 0x1480) (call $open_errno (global.get $scratch) (i32.const 0) (i32.const 0x940)
      (global.get $O_DIRECTORY) (global.get $R_READDIR) (i32.const 0)) (global.get $EPERM))
    (call $check (i32.const 0x14c0) (call $open_errno (global.get $root) (i32.const 0) (i32.const 0x840)
      (global.get $O_DIRECTORY) (global.get $R_READDIR) (i32.const 0)))
    (call $refused (i32.const 0x1500) (call $root_dot_dotdot) (global.get $EPERM))
    (call $refused (i32.const 0x1540) (call $open_errno (global.get $root) (i32.const 0) (i32.const 0x880)
      (global.get $O_DIRECTORY) (global.get $R_READDIR) (i32.const 0)) (global.get $EPERM))
    (call $refused (i32.const 0x1580) (call $open_errno (global.get $data) (i32.const 0) (i32.const 0x880)
      (global.get $O_DIRECTORY) (global.get $R_READDIR) (i32.const 0)) (global.get $EPERM))

    ;; The template file: hard links, renames, truncation, write rights, creation.
    (call $refused (i32.const 0x15c0) (call $link (global.get $data) (i32.const 0x4c0) (global.get $root) (i32.const 0x740))
      (global.get $EPERM))
    (call $check (i32.const 0x1600) (call $absent (global.get $root) (i32.const 0x740)))
    (call $refused (i32.const 0x1640) (call $link (global.get $data) (i32.const 0x4c0) (global.get $data) (i32.const 0x7c0))
      (global.get $EPERM))
    (drop (call $touch (global.get $root) (i32.const 0x780)))
    (call $refused (i32.const 0x1680) (call $link (global.get $root) (i32.const 0x780) (global.get $data) (i32.const 0x780))
      (global.get $EPERM))
    (call $refused (i32.const 0x16c0) (call $rename (global.get $data) (i32.const 0x4c0) (global.get $root) (i32.const 0x800))
      (global.get $EPERM))
    (call $refused (i32.const 0x1700) (call $rename (global.get $data) (i32.const 0x840) (global.get $root) (i32.const 0xb00))
      (global.get $EPERM))
    (call $refused (i32.const 0x1740) (call $rename (global.get $root) (i32.const 0x780) (global.get $data) (i32.const 0x780))
      (global.get $EPERM))
    (call $refused (i32.const 0x1780) (call $rename (global.get $root) (i32.const 0x780) (global.get $data) (i32.const 0x4c0))
      (global.get $EPERM))
    (call $refused (i32.const 0x17c0) (call $open_errno (global.get $data) (i32.const 0) (i32.const 0x4c0)
      (global.get $O_TRUNC) (global.get $R_READ) (i32.const 0)) (global.get $EPERM))
    (call $refused (i32.const 0x1800) (call $open_errno (global.get $data) (i32.const 0) (i32.const 0x4c0)
      (i32.const 0) (global.get $R_WRITE) (i32.const 0)) (global.get $EPERM))
    (call $refused (i32.const 0x1840) (call $open_errno (global.get $data) (i32.const 0) (i32.const 0x4c0)
      (i32.const 0) (global.get $R_ALL) (i32.const 0)) (global.get $EPERM))
    (call $refused (i32.const 0x1880) (call $open_errno (global.get $data) (i32.const 0) (i32.const 0x8c0)
      (i32.or (global.get $O_CREAT) (global.get $O_EXCL)) (global.get $R_WRITE) (i32.const 0)) (global.get $EPERM))
    (call $refused (i32.const 0x18c0) (call $open_errno (global.get $data) (i32.const 0) (i32.const 0x840)
      (global.get $O_DIRECTORY) (global.get $R_ALL) (i32.const 0)) (global.get $EPERM))

    ;; A descriptor that can only read: APPEND as an fdflag opens it for reading, and nothing through a
    ;; read descriptor writes, resizes, stamps or widens its rights.
    (call $check (i32.const 0x1900) (call $open_append))
    (call $refused (i32.const 0x1940) (call $write_x (global.get $append_fd)) (global.get $EBADF))
    (drop (call $open (global.get $data) (i32.const 0) (i32.const 0x4c0) (i32.const 0) (global.get $R_READ) (i32.const 0)))
    (global.set $file (i32.load (global.get $OUT_FD)))
    (call $refused (i32.const 0x1980) (call $write_x (global.get $file)) (global.get $EBADF))
    (call $refused (i32.const 0x19c0) (call $pwrite_x (global.get $file)) (global.get $EBADF))
    (call $refused (i32.const 0x1a00) (call $fd_filestat_set_size (global.get $file) (i64.const 0)) (global.get $EPERM))
    (call $refused (i32.const 0x1a40) (call $fd_filestat_set_times (global.get $file) (i64.const 1000000000)
      (i64.const 1000000000) (global.get $SET_TIMES)) (global.get $EPERM))
    (call $refused (i32.const 0x1a80) (call $fd_allocate (global.get $file) (i64.const 0) (i64.const 1048576))
      (global.get $ENOTSUP))
    (call $refused (i32.const 0x1ac0) (call $fd_fdstat_set_rights (global.get $file) (global.get $R_ALL) (global.get $R_ALL))
      (global.get $ENOTSUP))
    (call $refused (i32.const 0x1b00) (call $set_append_then_write) (global.get $EBADF))
    (call $refused (i32.const 0x1b40) (call $fd_fdstat_set_rights (global.get $data) (global.get $R_ALL) (global.get $R_ALL))
      (global.get $ENOTSUP))

    ;; Time stamps of the template file and of the mount.
    (call $refused (i32.const 0x1b80) (call $path_filestat_set_times (global.get $data) (i32.const 0) (i32.const 0x4c0)
      (i32.const 10) (i64.const 1000000000) (i64.const 1000000000) (global.get $SET_TIMES)) (global.get $EPERM))
    (call $refused (i32.const 0x1bc0) (call $path_filestat_set_times (global.get $data) (i32.const 0) (i32.const 0x4c0)
      (i32.const 10) (i64.const 0) (i64.const 0) (global.get $SET_TIMES_NOW)) (global.get $EPERM))
    (call $refused (i32.const 0x1c00) (call $path_filestat_set_times (global.get $data) (i32.const 0) (i32.const 0x840)
      (i32.const 1) (i64.const 1000000000) (i64.const 1000000000) (global.get $SET_TIMES)) (global.get $EPERM))

    ;; New descriptors of the read-only mount stay read-only, also renumbered over a writable one.
    (call $check (i32.const 0x1c40) (call $data_dot_opens))
    (call $refused (i32.const 0x1c80) (call $open_errno (global.get $data_dot) (i32.const 0) (i32.const 0x8c0)
      (global.get $O_CREAT) (global.get $R_WRITE) (i32.const 0)) (global.get $EPERM))
    (call $check (i32.const 0x1cc0) (call $renumber_over))
    (call $refused (i32.const 0x1d00) (call $open_errno (global.get $renumbered) (i32.const 0) (i32.const 0x8c0)
      (global.get $O_CREAT) (global.get $R_WRITE) (i32.const 0)) (global.get $EPERM))
    (call $refused (i32.const 0x1d40)
      (call $path_unlink_file (global.get $data) (i32.const 0x4c0) (call $strlen (i32.const 0x4c0))) (global.get $EPERM))
    (call $refused (i32.const 0x1d80)
      (call $path_remove_directory (global.get $data) (i32.const 0x840) (i32.const 1)) (global.get $EPERM))

    ;; Names past the limits are refused by length, at once, whatever they hold.
    (call $refused (i32.const 0x1dc0) (call $long_path (i32.const 4096)) (global.get $ENAMETOOLONG))
    (call $refused (i32.const 0x1e00) (call $mib_path) (global.get $ENAMETOOLONG))
    (call $refused (i32.const 0x1e40) (call $long_name) (global.get $ENAMETOOLONG))
    (call $refused (i32.const 0x1e80) (call $path_open (global.get $root) (i32.const 0) (i32.const 0x9c0) (i32.const 3)
      (i32.const 0) (global.get $R_READ) (i64.const 0) (i32.const 0) (global.get $OUT_FD)) (global.get $EINVAL))
    (call $refused (i32.const 0x1ec0) (call $path_open (global.get $root) (i32.const 0) (i32.const 0xa00) (i32.const 2)
      (i32.const 0) (global.get $R_READ) (i64.const 0) (i32.const 0) (global.get $OUT_FD)) (global.get $EILSEQ))
    (call $check (i32.const 0x1f00) (call $deep_tree))
    (call $refused (i32.const 0x1f40) (call $deep_path) (global.get $ENAMETOOLONG))
    (call $check (i32.const 0x1f80) (call $open_errno (global.get $deep_fd) (i32.const 0) (i32.const 0xac0)
      (global.get $O_CREAT) (global.get $R_WRITE) (i32.const 0)))

    (call $check (i32.const 0x1fc0) (call $template_unchanged))

    (call $print (i32.const 0xe00))
    (call $print_u32 (global.get $passed))
    (call $print (i32.const 0xe40))
    (call $print_u32 (global.get $checks))
    (call $print (i32.const 0xdc0))
    (if (i32.ne (global.get $passed) (global.get $checks)) (then (call $proc_exit (i32.const 1)))))
)
