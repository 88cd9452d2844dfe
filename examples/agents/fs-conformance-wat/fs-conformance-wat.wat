;; fs-conformance-wat: the file-system conformance checks written against the WASI preview 1 imports
;; themselves, with no libc between the program and the runtime: path_open with explicit rights, oflags
;; and fdflags, fd_write, fd_seek, fd_read, fd_pwrite, fd_filestat_get/set_size, path_filestat_get,
;; fd_readdir, path_rename, path_unlink_file, path_create_directory/path_remove_directory, path_symlink,
;; path_readlink, and the errnos for the template's read-only file and for escapes.
;;
;; What it expects (docs/tools-abi.md): a template granted `scratch` whose template ships the read-only
;; file /data/conformance.txt; preopens `/` (fd 3, the working directory of libcs and Go), `/scratch` and
;; `/data` (read-only). Where a libc would turn an absolute path into a preopen and a relative path, this
;; program names the preopen's fd itself (found by name with fd_prestat_dir_name).
;;
;; Prints one line per check, "<check> ok", "<check> ok (errno N)" for a refusal (N in WASI's numbering:
;; 44 ENOENT, 63 EPERM, 76 ENOTCAPABLE), or "<check> FAIL <why>", then "passed N/M", and exits 0 only if
;; every check passed: the report format of the C, Go and Rust conformance agents. A refusal passes only
;; with the errno named at its call; the same report under bare wasmtime-py is the tests' reference.
;;
;; Convention: every check function returns 0 when it holds, a WASI errno when a call failed, or -1 when
;; the calls worked but produced the wrong result ($check prints which).
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  ;; path_open(dirfd, lookupflags, path, path_len, oflags, rights_base, rights_inheriting, fdflags, *fd)
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $fd_filestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $fd_filestat_set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get"
    (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_remove_directory" (func $path_remove_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $path_unlink_file (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_readlink" (func $path_readlink (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; Memory layout (one page):
  ;;   0x000  out parameters: 0x00 fd, 0x04 nwritten/nread/bufused, 0x08 iovec (ptr, len), 0x10 u64 offset
  ;;   0x040  filestat (64 bytes: filetype u8 at +16, size u64 at +32)
  ;;   0x080  number formatting (16 bytes), 0x0a0 prestat (tag u8, name_len u32 at +4)
  ;;   0x100  read buffer (256 bytes)
  ;;   0x200  preopen name buffer (256 bytes)
  ;;   0x400  NUL-terminated strings, one per 64-byte slot (0x400, 0x440, 0x480, ...)
  ;;   0x2000 fd_readdir buffer (8 KiB)
  (memory (export "memory") 1)
  (global $OUT_FD i32 (i32.const 0x00))
  (global $OUT_N i32 (i32.const 0x04))
  (global $IOV i32 (i32.const 0x08))
  (global $OUT_OFFSET i32 (i32.const 0x10))
  (global $STAT i32 (i32.const 0x40))
  (global $NUM i32 (i32.const 0x80))
  (global $PRESTAT i32 (i32.const 0xa0))
  (global $READ_BUF i32 (i32.const 0x100))
  (global $READ_CAP i32 (i32.const 256))
  (global $NAME_BUF i32 (i32.const 0x200))
  (global $DIR_BUF i32 (i32.const 0x2000))
  (global $DIR_CAP i32 (i32.const 0x2000))

  ;; WASI constants (wasi_snapshot_preview1 witx).
  (global $ENOENT i32 (i32.const 44))
  (global $EPERM i32 (i32.const 63))
  (global $FOLLOW i32 (i32.const 1))          ;; lookupflags.symlink_follow
  (global $O_CREAT i32 (i32.const 1))         ;; oflags
  (global $O_DIRECTORY i32 (i32.const 2))
  (global $O_TRUNC i32 (i32.const 8))
  (global $FDFLAG_APPEND i32 (i32.const 1))
  (global $FILETYPE_DIRECTORY i32 (i32.const 3))
  (global $FILETYPE_REGULAR i32 (i32.const 4))
  (global $WHENCE_SET i32 (i32.const 0))
  (global $WHENCE_END i32 (i32.const 2))
  ;; rights: fd_read 1<<1, fd_seek 1<<2, fd_tell 1<<5, fd_write 1<<6, fd_readdir 1<<14,
  ;; fd_filestat_get 1<<21, fd_filestat_set_size 1<<22
  (global $R_READ i64 (i64.const 0x200026))         ;; read, seek, tell, filestat_get
  (global $R_WRITE i64 (i64.const 0x400040))        ;; write, filestat_set_size
  (global $R_RDWR i64 (i64.const 0x600066))
  (global $R_READDIR i64 (i64.const 0x204000))      ;; readdir, filestat_get

  ;; Results of the run so far, and the preopens found by name (-1 when absent).
  (global $checks (mut i32) (i32.const 0))
  (global $passed (mut i32) (i32.const 0))
  (global $root (mut i32) (i32.const -1))
  (global $scratch (mut i32) (i32.const -1))
  (global $data (mut i32) (i32.const -1))
  (global $file (mut i32) (i32.const -1))           ;; data.bin, open across the seek/truncate checks

  ;; Strings. Paths and contents first, then the report's words, then check names.
  (global $s_root i32 (i32.const 0x400))            (data (i32.const 0x400) "/\00")
  (global $s_scratch_pre i32 (i32.const 0x440))     (data (i32.const 0x440) "/scratch\00")
  (global $s_data_pre i32 (i32.const 0x480))        (data (i32.const 0x480) "/data\00")
  (global $s_note i32 (i32.const 0x4c0))            (data (i32.const 0x4c0) "note.txt\00")
  (global $s_note_text i32 (i32.const 0x500))       (data (i32.const 0x500) "hello, file\n\00")
  (global $s_data_bin i32 (i32.const 0x540))        (data (i32.const 0x540) "data.bin\00")
  (global $s_digits i32 (i32.const 0x580))          (data (i32.const 0x580) "0123456789\00")
  (global $s_3456 i32 (i32.const 0x5c0))            (data (i32.const 0x5c0) "3456\00")
  (global $s_z i32 (i32.const 0x600))               (data (i32.const 0x600) "Z\00")
  (global $s_sub i32 (i32.const 0x640))             (data (i32.const 0x640) "sub\00")
  (global $s_sub_inner i32 (i32.const 0x680))       (data (i32.const 0x680) "sub/inner.txt\00")
  (global $s_inner i32 (i32.const 0x6c0))           (data (i32.const 0x6c0) "inner\00")
  (global $s_inner_txt i32 (i32.const 0x700))       (data (i32.const 0x700) "inner.txt\00")
  (global $s_moved i32 (i32.const 0x740))           (data (i32.const 0x740) "moved.txt\00")
  (global $s_scratch i32 (i32.const 0x780))         (data (i32.const 0x780) "scratch\00")
  (global $s_s_txt i32 (i32.const 0x7c0))           (data (i32.const 0x7c0) "s.txt\00")
  (global $s_s i32 (i32.const 0x800))               (data (i32.const 0x800) "s\00")
  (global $s_link i32 (i32.const 0x840))            (data (i32.const 0x840) "link\00")
  (global $s_tfile i32 (i32.const 0x880))           (data (i32.const 0x880) "conformance.txt\00")
  (global $s_tfile_text i32 (i32.const 0x8c0))      (data (i32.const 0x8c0) "read-only, shipped with the template\n\00")
  (global $s_new i32 (i32.const 0x900))             (data (i32.const 0x900) "new.txt\00")
  (global $s_escape i32 (i32.const 0x940))          (data (i32.const 0x940) "../escape.txt\00")
  (global $s_escape2 i32 (i32.const 0x980))         (data (i32.const 0x980) "../../escape.txt\00")
  (global $s_etc_passwd i32 (i32.const 0x9c0))      (data (i32.const 0x9c0) "etc/passwd\00")
  (global $s_abs_passwd i32 (i32.const 0xa00))      (data (i32.const 0xa00) "/etc/passwd\00")
  (global $s_out i32 (i32.const 0xa40))             (data (i32.const 0xa40) "out\00")
  (global $s_up i32 (i32.const 0xa80))              (data (i32.const 0xa80) "up\00")
  (global $s_up_target i32 (i32.const 0xac0))       (data (i32.const 0xac0) "../../../../etc/passwd\00")
  (global $s_stolen i32 (i32.const 0xb00))          (data (i32.const 0xb00) "../stolen.txt\00")

  (global $w_ok i32 (i32.const 0xc00))              (data (i32.const 0xc00) " ok\n\00")
  (global $w_ok_errno i32 (i32.const 0xc40))        (data (i32.const 0xc40) " ok (errno \00")
  (global $w_close i32 (i32.const 0xc80))           (data (i32.const 0xc80) ")\n\00")
  (global $w_fail_errno i32 (i32.const 0xcc0))      (data (i32.const 0xcc0) " FAIL errno \00")
  (global $w_fail_wrong i32 (i32.const 0xd00))      (data (i32.const 0xd00) " FAIL wrong result\n\00")
  (global $w_fail_allowed i32 (i32.const 0xd40))    (data (i32.const 0xd40) " FAIL the call succeeded\n\00")
  (global $w_want i32 (i32.const 0xd80))            (data (i32.const 0xd80) ", want \00")
  (global $w_nl i32 (i32.const 0xdc0))              (data (i32.const 0xdc0) "\n\00")
  (global $w_passed i32 (i32.const 0xe00))          (data (i32.const 0xe00) "passed \00")
  (global $w_slash i32 (i32.const 0xe40))           (data (i32.const 0xe40) "/\00")

  (global $c_preopens i32 (i32.const 0x1000))                 (data (i32.const 0x1000) "preopens\00")
  (global $c_empty_at_start i32 (i32.const 0x1040))           (data (i32.const 0x1040) "empty-at-start\00")
  (global $c_relative_create i32 (i32.const 0x1080))          (data (i32.const 0x1080) "relative-create\00")
  (global $c_read_back i32 (i32.const 0x10c0))                (data (i32.const 0x10c0) "read-back\00")
  (global $c_open_rdwr i32 (i32.const 0x1100))                (data (i32.const 0x1100) "open-rdwr\00")
  (global $c_write i32 (i32.const 0x1140))                    (data (i32.const 0x1140) "write\00")
  (global $c_seek_set i32 (i32.const 0x1180))                 (data (i32.const 0x1180) "seek-set\00")
  (global $c_read_after_seek i32 (i32.const 0x11c0))          (data (i32.const 0x11c0) "read-after-seek\00")
  (global $c_seek_end i32 (i32.const 0x1200))                 (data (i32.const 0x1200) "seek-end\00")
  (global $c_ftruncate i32 (i32.const 0x1240))                (data (i32.const 0x1240) "ftruncate\00")
  (global $c_pwrite_past_end i32 (i32.const 0x1280))          (data (i32.const 0x1280) "pwrite-past-end\00")
  (global $c_close i32 (i32.const 0x12c0))                    (data (i32.const 0x12c0) "close\00")
  (global $c_stat_regular i32 (i32.const 0x1300))             (data (i32.const 0x1300) "stat-regular\00")
  (global $c_mkdir i32 (i32.const 0x1340))                    (data (i32.const 0x1340) "mkdir\00")
  (global $c_stat_dir i32 (i32.const 0x1380))                 (data (i32.const 0x1380) "stat-dir\00")
  (global $c_nested_create i32 (i32.const 0x13c0))            (data (i32.const 0x13c0) "nested-create\00")
  (global $c_readdir_root i32 (i32.const 0x1400))             (data (i32.const 0x1400) "readdir-root\00")
  (global $c_readdir_sub i32 (i32.const 0x1440))              (data (i32.const 0x1440) "readdir-sub\00")
  (global $c_rename i32 (i32.const 0x1480))                   (data (i32.const 0x1480) "rename\00")
  (global $c_rmdir i32 (i32.const 0x14c0))                    (data (i32.const 0x14c0) "rmdir\00")
  (global $c_unlink i32 (i32.const 0x1500))                   (data (i32.const 0x1500) "unlink\00")
  (global $c_scratch_dir i32 (i32.const 0x1540))              (data (i32.const 0x1540) "scratch-dir\00")
  (global $c_symlink_inside i32 (i32.const 0x1580))           (data (i32.const 0x1580) "symlink-inside\00")
  (global $c_readlink i32 (i32.const 0x15c0))                 (data (i32.const 0x15c0) "readlink\00")
  (global $c_unlink_symlink i32 (i32.const 0x1600))           (data (i32.const 0x1600) "unlink-symlink\00")
  (global $c_tfile_read i32 (i32.const 0x1640))               (data (i32.const 0x1640) "template-file-read\00")
  (global $c_tfile_stat i32 (i32.const 0x1680))               (data (i32.const 0x1680) "template-file-stat\00")
  (global $c_tfile_readdir i32 (i32.const 0x16c0))            (data (i32.const 0x16c0) "template-file-readdir\00")
  (global $c_tfile_write i32 (i32.const 0x1700))              (data (i32.const 0x1700) "template-file-write-refused\00")
  (global $c_tfile_create i32 (i32.const 0x1740))             (data (i32.const 0x1740) "template-file-create-refused\00")
  (global $c_tfile_remove i32 (i32.const 0x1780))             (data (i32.const 0x1780) "template-file-remove-refused\00")
  (global $c_tfile_rename i32 (i32.const 0x17c0))             (data (i32.const 0x17c0) "template-file-rename-refused\00")
  (global $c_tfile_mkdir i32 (i32.const 0x1800))              (data (i32.const 0x1800) "template-file-mkdir-refused\00")
  (global $c_tfile_symlink i32 (i32.const 0x1840))            (data (i32.const 0x1840) "template-file-symlink-refused\00")
  (global $c_tfile_unchanged i32 (i32.const 0x1880))          (data (i32.const 0x1880) "template-file-unchanged\00")
  (global $c_dotdot i32 (i32.const 0x18c0))                   (data (i32.const 0x18c0) "dotdot-refused\00")
  (global $c_scratch_dotdot i32 (i32.const 0x1900))           (data (i32.const 0x1900) "scratch-dotdot-refused\00")
  (global $c_host_path i32 (i32.const 0x1940))                (data (i32.const 0x1940) "host-path-absent\00")
  (global $c_absolute_path i32 (i32.const 0x1980))            (data (i32.const 0x1980) "absolute-path-refused\00")
  (global $c_symlink_out i32 (i32.const 0x19c0))              (data (i32.const 0x19c0) "symlink-out-refused\00")
  (global $c_symlink_up i32 (i32.const 0x1a00))               (data (i32.const 0x1a00) "symlink-up-refused\00")
  (global $c_rename_out i32 (i32.const 0x1a40))               (data (i32.const 0x1a40) "rename-out-refused\00")

  ;; ---------------------------------------------------------------------------------------------
  ;; Strings and output

  (func $strlen (param $p i32) (result i32)
    (local $q i32)
    (local.set $q (local.get $p))
    (block $end
      (loop $next
        (br_if $end (i32.eqz (i32.load8_u (local.get $q))))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $next)))
    (i32.sub (local.get $q) (local.get $p)))

  ;; 1 when the n bytes at a and b are equal.
  (func $memeq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $differ
      (loop $next
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; 1 when the n bytes at p are the NUL-terminated string s (without its NUL).
  (func $is (param $p i32) (param $n i32) (param $s i32) (result i32)
    (if (result i32) (i32.ne (local.get $n) (call $strlen (local.get $s)))
      (then (i32.const 0))
      (else (call $memeq (local.get $p) (local.get $s) (local.get $n)))))

  ;; Writes all n bytes at p to fd, retrying short writes; the errno of a failed write, else 0.
  (func $write_all (param $fd i32) (param $p i32) (param $n i32) (result i32)
    (local $e i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (global.get $IOV) (local.get $p))
        (i32.store offset=4 (global.get $IOV) (local.get $n))
        (local.set $e (call $fd_write (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT_N)))
        (if (local.get $e) (then (return (local.get $e))))
        (local.set $p (i32.add (local.get $p) (i32.load (global.get $OUT_N))))
        (local.set $n (i32.sub (local.get $n) (i32.load (global.get $OUT_N))))
        (br $more)))
    (i32.const 0))

  (func $write_str (param $fd i32) (param $s i32) (result i32)
    (call $write_all (local.get $fd) (local.get $s) (call $strlen (local.get $s))))

  ;; Report output goes to stdout; a failing stdout leaves nothing to report to, so it is ignored.
  (func $print (param $s i32)
    (drop (call $write_str (i32.const 1) (local.get $s))))

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

  ;; ---------------------------------------------------------------------------------------------
  ;; The report

  ;; A check of the 0 / errno / -1 convention: "<name> ok" or "<name> FAIL errno N" / "wrong result".
  (func $check (param $name i32) (param $code i32)
    (global.set $checks (i32.add (global.get $checks) (i32.const 1)))
    (call $print (local.get $name))
    (if (i32.eqz (local.get $code))
      (then
        (global.set $passed (i32.add (global.get $passed) (i32.const 1)))
        (call $print (global.get $w_ok))
        (return)))
    (if (i32.lt_s (local.get $code) (i32.const 0))
      (then (call $print (global.get $w_fail_wrong)) (return)))
    (call $print (global.get $w_fail_errno))
    (call $print_u32 (local.get $code))
    (call $print (global.get $w_nl)))

  ;; A refusal: passes only when the call failed with the errno a program expects, `want`.
  (func $refused (param $name i32) (param $errno i32) (param $want i32)
    (global.set $checks (i32.add (global.get $checks) (i32.const 1)))
    (call $print (local.get $name))
    (if (i32.eqz (local.get $errno))
      (then (call $print (global.get $w_fail_allowed)) (return)))
    (if (i32.eq (local.get $errno) (local.get $want))
      (then
        (global.set $passed (i32.add (global.get $passed) (i32.const 1)))
        (call $print (global.get $w_ok_errno))
        (call $print_u32 (local.get $errno))
        (call $print (global.get $w_close))
        (return)))
    (call $print (global.get $w_fail_errno))
    (call $print_u32 (local.get $errno))
    (call $print (global.get $w_want))
    (call $print_u32 (local.get $want))
    (call $print (global.get $w_nl)))

  ;; ---------------------------------------------------------------------------------------------
  ;; File-system helpers: each returns a WASI errno (0 on success); paths are NUL-terminated strings
  ;; relative to a directory fd, as path_* calls take them.

  ;; path_open; the new fd is at $OUT_FD. Inheriting rights equal the base rights.
  (func $open (param $dir i32) (param $lookup i32) (param $path i32) (param $oflags i32) (param $rights i64)
              (param $fdflags i32) (result i32)
    (call $path_open (local.get $dir) (local.get $lookup) (local.get $path) (call $strlen (local.get $path))
      (local.get $oflags) (local.get $rights) (local.get $rights) (local.get $fdflags) (global.get $OUT_FD)))

  ;; Creates (or truncates) dir/path and writes the string s into it.
  (func $create_with (param $dir i32) (param $path i32) (param $s i32) (result i32)
    (local $e i32) (local $fd i32)
    (local.set $e (call $open (local.get $dir) (i32.const 0) (local.get $path)
      (i32.or (global.get $O_CREAT) (global.get $O_TRUNC)) (global.get $R_WRITE) (i32.const 0)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $fd (i32.load (global.get $OUT_FD)))
    (local.set $e (call $write_str (local.get $fd) (local.get $s)))
    (drop (call $fd_close (local.get $fd)))
    (local.get $e))

  ;; Reads up to n bytes from fd into $READ_BUF until EOF or n; the count is at $OUT_N.
  (func $read_up_to (param $fd i32) (param $n i32) (result i32)
    (local $e i32) (local $got i32)
    (block $done
      (loop $more
        (br_if $done (i32.ge_u (local.get $got) (local.get $n)))
        (i32.store (global.get $IOV) (i32.add (global.get $READ_BUF) (local.get $got)))
        (i32.store offset=4 (global.get $IOV) (i32.sub (local.get $n) (local.get $got)))
        (local.set $e (call $fd_read (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT_N)))
        (if (local.get $e) (then (return (local.get $e))))
        (br_if $done (i32.eqz (i32.load (global.get $OUT_N))))
        (local.set $got (i32.add (local.get $got) (i32.load (global.get $OUT_N))))
        (br $more)))
    (i32.store (global.get $OUT_N) (local.get $got))
    (i32.const 0))

  ;; 0 when dir/path (following symlinks) holds exactly the string s, else an errno or -1.
  (func $file_is (param $dir i32) (param $path i32) (param $s i32) (result i32)
    (local $e i32) (local $fd i32)
    (local.set $e (call $open (local.get $dir) (global.get $FOLLOW) (local.get $path) (i32.const 0)
      (global.get $R_READ) (i32.const 0)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $fd (i32.load (global.get $OUT_FD)))
    (local.set $e (call $read_up_to (local.get $fd) (global.get $READ_CAP)))
    (drop (call $fd_close (local.get $fd)))
    (if (local.get $e) (then (return (local.get $e))))
    (if (result i32) (call $is (global.get $READ_BUF) (i32.load (global.get $OUT_N)) (local.get $s))
      (then (i32.const 0)) (else (i32.const -1))))

  ;; path_filestat_get of dir/path (not following a final symlink) into $STAT.
  (func $stat (param $dir i32) (param $path i32) (result i32)
    (call $path_filestat_get (local.get $dir) (i32.const 0) (local.get $path) (call $strlen (local.get $path))
      (global.get $STAT)))

  (func $stat_type (result i32) (i32.load8_u offset=16 (global.get $STAT)))
  (func $stat_size (result i64) (i64.load offset=32 (global.get $STAT)))

  ;; 0 when dir/path is a regular file of `size` bytes.
  (func $is_file_of (param $dir i32) (param $path i32) (param $size i64) (result i32)
    (local $e i32)
    (local.set $e (call $stat (local.get $dir) (local.get $path)))
    (if (local.get $e) (then (return (local.get $e))))
    (if (result i32) (i32.and (i32.eq (call $stat_type) (global.get $FILETYPE_REGULAR))
                              (i64.eq (call $stat_size) (local.get $size)))
      (then (i32.const 0)) (else (i32.const -1))))

  ;; 0 when dir/path does not exist (ENOENT), else the errno or -1 when it exists.
  (func $absent (param $dir i32) (param $path i32) (result i32)
    (local $e i32)
    (local.set $e (call $stat (local.get $dir) (local.get $path)))
    (if (i32.eq (local.get $e) (global.get $ENOENT)) (then (return (i32.const 0))))
    (if (result i32) (local.get $e) (then (local.get $e)) (else (i32.const -1))))

  ;; Lists a directory (dir itself when path is 0, else dir/path opened with O_DIRECTORY) with one
  ;; fd_readdir into $DIR_BUF. Returns the number of entries other than "." and "..", or -1 - errno;
  ;; $found is set to 1 when one of them is named `name`.
  (global $found (mut i32) (i32.const 0))
  (func $list (param $dir i32) (param $path i32) (param $name i32) (result i32)
    (local $fd i32) (local $e i32) (local $at i32) (local $end i32) (local $len i32) (local $count i32)
    (global.set $found (i32.const 0))
    (local.set $fd (local.get $dir))
    (if (local.get $path)
      (then
        (local.set $e (call $open (local.get $dir) (i32.const 0) (local.get $path) (global.get $O_DIRECTORY)
          (global.get $R_READDIR) (i32.const 0)))
        (if (local.get $e) (then (return (i32.sub (i32.const -1) (local.get $e)))))
        (local.set $fd (i32.load (global.get $OUT_FD)))))
    (local.set $e (call $fd_readdir (local.get $fd) (global.get $DIR_BUF) (global.get $DIR_CAP) (i64.const 0)
      (global.get $OUT_N)))
    (if (local.get $path) (then (drop (call $fd_close (local.get $fd)))))
    (if (local.get $e) (then (return (i32.sub (i32.const -1) (local.get $e)))))
    ;; dirent: d_next u64, d_ino u64, d_namlen u32, d_type u8, padding: 24 bytes, then the name.
    (local.set $at (global.get $DIR_BUF))
    (local.set $end (i32.add (global.get $DIR_BUF) (i32.load (global.get $OUT_N))))
    (block $done
      (loop $entry
        (br_if $done (i32.gt_u (i32.add (local.get $at) (i32.const 24)) (local.get $end)))
        (local.set $len (i32.load offset=16 (local.get $at)))
        (local.set $at (i32.add (local.get $at) (i32.const 24)))
        (br_if $done (i32.gt_u (i32.add (local.get $at) (local.get $len)) (local.get $end)))
        (if (i32.eqz (i32.or
              (i32.and (i32.eq (local.get $len) (i32.const 1)) (i32.eq (i32.load8_u (local.get $at)) (i32.const 46)))
              (i32.and (i32.eq (local.get $len) (i32.const 2)) (i32.eq (i32.load16_u (local.get $at)) (i32.const 0x2e2e)))))
          (then
            (local.set $count (i32.add (local.get $count) (i32.const 1)))
            (if (call $is (local.get $at) (local.get $len) (local.get $name))
              (then (global.set $found (i32.const 1))))))
        (local.set $at (i32.add (local.get $at) (local.get $len)))
        (br $entry)))
    (local.get $count))

  ;; The fd of the preopen named `name` (fd_prestat_dir_name), or -1: preopens are fds 3, 4, ... up to
  ;; the first fd that is not one (EBADF).
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

  ;; Symlink `link` -> `target` in dir; when that works, the errno of opening through it (and the link
  ;; is removed again), so either step may be the refusal.
  (func $symlink_then_open (param $dir i32) (param $target i32) (param $link i32) (result i32)
    (local $e i32)
    (local.set $e (call $path_symlink (local.get $target) (call $strlen (local.get $target))
      (local.get $dir) (local.get $link) (call $strlen (local.get $link))))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $e (call $open (local.get $dir) (global.get $FOLLOW) (local.get $link) (i32.const 0)
      (global.get $R_READ) (i32.const 0)))
    (if (i32.eqz (local.get $e)) (then (drop (call $fd_close (i32.load (global.get $OUT_FD))))))
    (drop (call $path_unlink_file (local.get $dir) (local.get $link) (call $strlen (local.get $link))))
    (local.get $e))

  ;; ---------------------------------------------------------------------------------------------
  ;; The checks, in the order of the report

  ;; The three preopens exist, and `/` is fd 3 (Go takes the first preopen as its working directory).
  (func $preopens (result i32)
    (global.set $root (call $find_preopen (global.get $s_root)))
    (global.set $scratch (call $find_preopen (global.get $s_scratch_pre)))
    (global.set $data (call $find_preopen (global.get $s_data_pre)))
    (if (result i32) (i32.and (i32.eq (global.get $root) (i32.const 3))
                              (i32.and (i32.ge_s (global.get $scratch) (i32.const 0))
                                       (i32.ge_s (global.get $data) (i32.const 0))))
      (then (i32.const 0)) (else (i32.const -1))))

  ;; The run starts with an empty `/`: note.txt is not there yet.
  (func $empty_at_start (result i32) (call $absent (global.get $root) (global.get $s_note)))

  ;; Create a file relative to `/` and write it (what fopen("note.txt", "w") does under a libc).
  (func $relative_create (result i32)
    (call $create_with (global.get $root) (global.get $s_note) (global.get $s_note_text)))

  ;; Open it again read-only and read the same bytes back.
  (func $read_back (result i32) (call $file_is (global.get $root) (global.get $s_note) (global.get $s_note_text)))

  ;; One read-write handle for the seek, truncate and pwrite checks.
  (func $open_rdwr (result i32)
    (local $e i32)
    (local.set $e (call $open (global.get $root) (i32.const 0) (global.get $s_data_bin)
      (i32.or (global.get $O_CREAT) (global.get $O_TRUNC)) (global.get $R_RDWR) (i32.const 0)))
    (if (i32.eqz (local.get $e)) (then (global.set $file (i32.load (global.get $OUT_FD)))))
    (local.get $e))

  ;; fd_write of 10 bytes moves all 10 (a file is not stdio: no short writes expected).
  (func $write (result i32)
    (local $e i32)
    (i32.store (global.get $IOV) (global.get $s_digits))
    (i32.store offset=4 (global.get $IOV) (i32.const 10))
    (local.set $e (call $fd_write (global.get $file) (global.get $IOV) (i32.const 1) (global.get $OUT_N)))
    (if (local.get $e) (then (return (local.get $e))))
    (if (result i32) (i32.eq (i32.load (global.get $OUT_N)) (i32.const 10)) (then (i32.const 0)) (else (i32.const -1))))

  ;; fd_seek answers the new offset.
  (func $seek_to (param $offset i64) (param $whence i32) (param $want i64) (result i32)
    (local $e i32)
    (local.set $e (call $fd_seek (global.get $file) (local.get $offset) (local.get $whence) (global.get $OUT_OFFSET)))
    (if (local.get $e) (then (return (local.get $e))))
    (if (result i32) (i64.eq (i64.load (global.get $OUT_OFFSET)) (local.get $want)) (then (i32.const 0)) (else (i32.const -1))))

  (func $seek_set (result i32) (call $seek_to (i64.const 3) (global.get $WHENCE_SET) (i64.const 3)))

  ;; Reading at offset 3 gives "3456".
  (func $read_after_seek (result i32)
    (local $e i32)
    (local.set $e (call $read_up_to (global.get $file) (i32.const 4)))
    (if (local.get $e) (then (return (local.get $e))))
    (if (result i32) (call $is (global.get $READ_BUF) (i32.load (global.get $OUT_N)) (global.get $s_3456))
      (then (i32.const 0)) (else (i32.const -1))))

  (func $seek_end (result i32) (call $seek_to (i64.const 0) (global.get $WHENCE_END) (i64.const 10)))

  ;; fd_filestat_get of the handle, checked to be a regular file of `size` bytes.
  (func $handle_size_is (param $size i64) (result i32)
    (local $e i32)
    (local.set $e (call $fd_filestat_get (global.get $file) (global.get $STAT)))
    (if (local.get $e) (then (return (local.get $e))))
    (if (result i32) (i32.and (i32.eq (call $stat_type) (global.get $FILETYPE_REGULAR))
                              (i64.eq (call $stat_size) (local.get $size)))
      (then (i32.const 0)) (else (i32.const -1))))

  ;; fd_filestat_set_size shrinks the file to 4 bytes.
  (func $ftruncate (result i32)
    (local $e i32)
    (local.set $e (call $fd_filestat_set_size (global.get $file) (i64.const 4)))
    (if (local.get $e) (then (return (local.get $e))))
    (call $handle_size_is (i64.const 4)))

  ;; fd_pwrite of one byte at offset 8 (past the end) grows the file to 9 bytes.
  (func $pwrite_past_end (result i32)
    (local $e i32)
    (i32.store (global.get $IOV) (global.get $s_z))
    (i32.store offset=4 (global.get $IOV) (i32.const 1))
    (local.set $e (call $fd_pwrite (global.get $file) (global.get $IOV) (i32.const 1) (i64.const 8) (global.get $OUT_N)))
    (if (local.get $e) (then (return (local.get $e))))
    (if (i32.ne (i32.load (global.get $OUT_N)) (i32.const 1)) (then (return (i32.const -1))))
    (call $handle_size_is (i64.const 9)))

  (func $close (result i32) (call $fd_close (global.get $file)))

  ;; path_filestat_get sees the closed file: regular, 9 bytes.
  (func $stat_regular (result i32) (call $is_file_of (global.get $root) (global.get $s_data_bin) (i64.const 9)))

  (func $mkdir (result i32)
    (call $path_create_directory (global.get $root) (global.get $s_sub) (call $strlen (global.get $s_sub))))

  (func $stat_dir (result i32)
    (local $e i32)
    (local.set $e (call $stat (global.get $root) (global.get $s_sub)))
    (if (local.get $e) (then (return (local.get $e))))
    (if (result i32) (i32.eq (call $stat_type) (global.get $FILETYPE_DIRECTORY)) (then (i32.const 0)) (else (i32.const -1))))

  ;; A path with a directory component, created relative to `/`.
  (func $nested_create (result i32)
    (call $create_with (global.get $root) (global.get $s_sub_inner) (global.get $s_inner)))

  ;; fd_readdir of the `/` preopen itself lists note.txt, sub and scratch.
  (func $readdir_root (result i32)
    (local $n i32) (local $all i32)
    (local.set $all (i32.const 1))
    (local.set $n (call $list (global.get $root) (i32.const 0) (global.get $s_note)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.sub (i32.const -1) (local.get $n)))))
    (local.set $all (i32.and (local.get $all) (global.get $found)))
    (drop (call $list (global.get $root) (i32.const 0) (global.get $s_sub)))
    (local.set $all (i32.and (local.get $all) (global.get $found)))
    (drop (call $list (global.get $root) (i32.const 0) (global.get $s_scratch)))
    (local.set $all (i32.and (local.get $all) (global.get $found)))
    (if (result i32) (local.get $all) (then (i32.const 0)) (else (i32.const -1))))

  ;; A directory opened with O_DIRECTORY lists exactly inner.txt (besides "." and "..").
  (func $readdir_sub (result i32)
    (local $n i32)
    (local.set $n (call $list (global.get $root) (global.get $s_sub) (global.get $s_inner_txt)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.sub (i32.const -1) (local.get $n)))))
    (if (result i32) (i32.and (i32.eq (local.get $n) (i32.const 1)) (global.get $found))
      (then (i32.const 0)) (else (i32.const -1))))

  ;; path_rename moves sub/inner.txt to moved.txt: the old name is gone, the bytes moved.
  (func $rename (result i32)
    (local $e i32)
    (local.set $e (call $path_rename
      (global.get $root) (global.get $s_sub_inner) (call $strlen (global.get $s_sub_inner))
      (global.get $root) (global.get $s_moved) (call $strlen (global.get $s_moved))))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $e (call $absent (global.get $root) (global.get $s_sub_inner)))
    (if (local.get $e) (then (return (local.get $e))))
    (call $file_is (global.get $root) (global.get $s_moved) (global.get $s_inner)))

  ;; path_remove_directory of the now empty sub.
  (func $rmdir (result i32)
    (local $e i32)
    (local.set $e (call $path_remove_directory (global.get $root) (global.get $s_sub) (call $strlen (global.get $s_sub))))
    (if (local.get $e) (then (return (local.get $e))))
    (call $absent (global.get $root) (global.get $s_sub)))

  (func $unlink (result i32)
    (local $e i32)
    (local.set $e (call $path_unlink_file (global.get $root) (global.get $s_moved) (call $strlen (global.get $s_moved))))
    (if (local.get $e) (then (return (local.get $e))))
    (call $absent (global.get $root) (global.get $s_moved)))

  ;; A file created through the /scratch preopen is the file `scratch/s.txt` under `/`.
  (func $scratch_dir (result i32)
    (local $e i32) (local $n i32)
    (local.set $e (call $create_with (global.get $scratch) (global.get $s_s_txt) (global.get $s_s)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $n (call $list (global.get $root) (global.get $s_scratch) (global.get $s_s_txt)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.sub (i32.const -1) (local.get $n)))))
    (if (result i32) (global.get $found) (then (i32.const 0)) (else (i32.const -1))))

  ;; path_symlink link -> note.txt, then open through it (lookupflags symlink_follow).
  (func $symlink_inside (result i32)
    (local $e i32)
    (local.set $e (call $path_symlink (global.get $s_note) (call $strlen (global.get $s_note))
      (global.get $root) (global.get $s_link) (call $strlen (global.get $s_link))))
    (if (local.get $e) (then (return (local.get $e))))
    (call $file_is (global.get $root) (global.get $s_link) (global.get $s_note_text)))

  ;; path_readlink answers the target as written.
  (func $readlink (result i32)
    (local $e i32)
    (local.set $e (call $path_readlink (global.get $root) (global.get $s_link) (call $strlen (global.get $s_link))
      (global.get $READ_BUF) (global.get $READ_CAP) (global.get $OUT_N)))
    (if (local.get $e) (then (return (local.get $e))))
    (if (result i32) (call $is (global.get $READ_BUF) (i32.load (global.get $OUT_N)) (global.get $s_note))
      (then (i32.const 0)) (else (i32.const -1))))

  ;; path_unlink_file removes the link, not its target.
  (func $unlink_symlink (result i32)
    (local $e i32)
    (local.set $e (call $path_unlink_file (global.get $root) (global.get $s_link) (call $strlen (global.get $s_link))))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $e (call $absent (global.get $root) (global.get $s_link)))
    (if (local.get $e) (then (return (local.get $e))))
    (call $is_file_of (global.get $root) (global.get $s_note) (i64.const 12)))

  ;; The template's file reads back as shipped.
  (func $tfile_read (result i32) (call $file_is (global.get $data) (global.get $s_tfile) (global.get $s_tfile_text)))

  (func $tfile_stat (result i32)
    (call $is_file_of (global.get $data) (global.get $s_tfile) (i64.extend_i32_u (call $strlen (global.get $s_tfile_text)))))

  ;; The /data preopen lists exactly the template's file.
  (func $tfile_readdir (result i32)
    (local $n i32)
    (local.set $n (call $list (global.get $data) (i32.const 0) (global.get $s_tfile)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.sub (i32.const -1) (local.get $n)))))
    (if (result i32) (i32.and (i32.eq (local.get $n) (i32.const 1)) (global.get $found))
      (then (i32.const 0)) (else (i32.const -1))))

  ;; Opening the template's file with the fd_write right and O_APPEND: the errno of the refusal.
  (func $tfile_write (result i32)
    (local $e i32)
    (local.set $e (call $open (global.get $data) (i32.const 0) (global.get $s_tfile) (i32.const 0)
      (global.get $R_WRITE) (global.get $FDFLAG_APPEND)))
    (if (i32.eqz (local.get $e)) (then (drop (call $fd_close (i32.load (global.get $OUT_FD))))))
    (local.get $e))

  (func $tfile_create (result i32)
    (local $e i32)
    (local.set $e (call $open (global.get $data) (i32.const 0) (global.get $s_new) (global.get $O_CREAT)
      (global.get $R_WRITE) (i32.const 0)))
    (if (i32.eqz (local.get $e)) (then (drop (call $fd_close (i32.load (global.get $OUT_FD))))))
    (local.get $e))

  (func $tfile_remove (result i32)
    (call $path_unlink_file (global.get $data) (global.get $s_tfile) (call $strlen (global.get $s_tfile))))

  (func $tfile_rename (result i32)
    (call $path_rename
      (global.get $data) (global.get $s_tfile) (call $strlen (global.get $s_tfile))
      (global.get $data) (global.get $s_moved) (call $strlen (global.get $s_moved))))

  (func $tfile_mkdir (result i32)
    (call $path_create_directory (global.get $data) (global.get $s_sub) (call $strlen (global.get $s_sub))))

  (func $tfile_symlink (result i32)
    (call $path_symlink (global.get $s_tfile) (call $strlen (global.get $s_tfile))
      (global.get $data) (global.get $s_link) (call $strlen (global.get $s_link))))

  ;; After every attempt the file and its directory are as shipped.
  (func $tfile_unchanged (result i32)
    (local $e i32)
    (local.set $e (call $tfile_read))
    (if (local.get $e) (then (return (local.get $e))))
    (call $tfile_readdir))

  ;; Opening (creating) dir/path for writing: the errno of the refusal (0 if it was created, then removed).
  (func $create_errno (param $dir i32) (param $path i32) (result i32)
    (local $e i32)
    (local.set $e (call $open (local.get $dir) (i32.const 0) (local.get $path) (global.get $O_CREAT)
      (global.get $R_WRITE) (i32.const 0)))
    (if (i32.eqz (local.get $e))
      (then
        (drop (call $fd_close (i32.load (global.get $OUT_FD))))
        (drop (call $path_unlink_file (local.get $dir) (local.get $path) (call $strlen (local.get $path))))))
    (local.get $e))

  ;; Renaming a file of `/` to a name above it.
  (func $rename_out (result i32)
    (call $path_rename
      (global.get $root) (global.get $s_note) (call $strlen (global.get $s_note))
      (global.get $root) (global.get $s_stolen) (call $strlen (global.get $s_stolen))))

  ;; ---------------------------------------------------------------------------------------------

  (func (export "_start")
    (call $check (global.get $c_preopens) (call $preopens))
    (if (i32.or (i32.lt_s (global.get $root) (i32.const 0))
                (i32.or (i32.lt_s (global.get $scratch) (i32.const 0)) (i32.lt_s (global.get $data) (i32.const 0))))
      (then  ;; nothing else can be named: report what was found and stop
        (call $print (global.get $w_passed)) (call $print_u32 (global.get $passed))
        (call $print (global.get $w_slash)) (call $print_u32 (global.get $checks)) (call $print (global.get $w_nl))
        (call $proc_exit (i32.const 1))))
    (call $check (global.get $c_empty_at_start) (call $empty_at_start))
    (call $check (global.get $c_relative_create) (call $relative_create))
    (call $check (global.get $c_read_back) (call $read_back))

    (call $check (global.get $c_open_rdwr) (call $open_rdwr))
    (call $check (global.get $c_write) (call $write))
    (call $check (global.get $c_seek_set) (call $seek_set))
    (call $check (global.get $c_read_after_seek) (call $read_after_seek))
    (call $check (global.get $c_seek_end) (call $seek_end))
    (call $check (global.get $c_ftruncate) (call $ftruncate))
    (call $check (global.get $c_pwrite_past_end) (call $pwrite_past_end))
    (call $check (global.get $c_close) (call $close))
    (call $check (global.get $c_stat_regular) (call $stat_regular))

    (call $check (global.get $c_mkdir) (call $mkdir))
    (call $check (global.get $c_stat_dir) (call $stat_dir))
    (call $check (global.get $c_nested_create) (call $nested_create))
    (call $check (global.get $c_readdir_root) (call $readdir_root))
    (call $check (global.get $c_readdir_sub) (call $readdir_sub))
    (call $check (global.get $c_rename) (call $rename))
    (call $check (global.get $c_rmdir) (call $rmdir))
    (call $check (global.get $c_unlink) (call $unlink))
    (call $check (global.get $c_scratch_dir) (call $scratch_dir))

    (call $check (global.get $c_symlink_inside) (call $symlink_inside))
    (call $check (global.get $c_readlink) (call $readlink))
    (call $check (global.get $c_unlink_symlink) (call $unlink_symlink))

    ;; The template's read-only file: readable; every change refused with EPERM, as wasmtime's WASI
    ;; refuses it for a preopen made with fs_mutable=False.
    (call $check (global.get $c_tfile_read) (call $tfile_read))
    (call $check (global.get $c_tfile_stat) (call $tfile_stat))
    (call $check (global.get $c_tfile_readdir) (call $tfile_readdir))
    (call $refused (global.get $c_tfile_write) (call $tfile_write) (global.get $EPERM))
    (call $refused (global.get $c_tfile_create) (call $tfile_create) (global.get $EPERM))
    (call $refused (global.get $c_tfile_remove) (call $tfile_remove) (global.get $EPERM))
    (call $refused (global.get $c_tfile_rename) (call $tfile_rename) (global.get $EPERM))
    (call $refused (global.get $c_tfile_mkdir) (call $tfile_mkdir) (global.get $EPERM))
    (call $refused (global.get $c_tfile_symlink) (call $tfile_symlink) (global.get $EPERM))
    (call $check (global.get $c_tfile_unchanged) (call $tfile_unchanged))

    ;; Escapes: nothing outside the run's own directories can be named. `..` past a preopen, an
    ;; absolute path and a symlink leading out are EPERM; a host path named inside `/` (what a libc
    ;; makes of "/etc/passwd") simply does not exist there.
    (call $refused (global.get $c_dotdot) (call $create_errno (global.get $root) (global.get $s_escape)) (global.get $EPERM))
    (call $refused (global.get $c_scratch_dotdot) (call $create_errno (global.get $scratch) (global.get $s_escape2))
      (global.get $EPERM))
    (call $refused (global.get $c_host_path)
      (call $open (global.get $root) (global.get $FOLLOW) (global.get $s_etc_passwd) (i32.const 0) (global.get $R_READ) (i32.const 0))
      (global.get $ENOENT))
    (call $refused (global.get $c_absolute_path)
      (call $open (global.get $root) (global.get $FOLLOW) (global.get $s_abs_passwd) (i32.const 0) (global.get $R_READ) (i32.const 0))
      (global.get $EPERM))
    (call $refused (global.get $c_symlink_out)
      (call $symlink_then_open (global.get $root) (global.get $s_abs_passwd) (global.get $s_out)) (global.get $EPERM))
    (call $refused (global.get $c_symlink_up)
      (call $symlink_then_open (global.get $root) (global.get $s_up_target) (global.get $s_up)) (global.get $EPERM))
    (call $refused (global.get $c_rename_out) (call $rename_out) (global.get $EPERM))

    (call $print (global.get $w_passed))
    (call $print_u32 (global.get $passed))
    (call $print (global.get $w_slash))
    (call $print_u32 (global.get $checks))
    (call $print (global.get $w_nl))
    (if (i32.ne (global.get $passed) (global.get $checks)) (then (call $proc_exit (i32.const 1)))))
)
