;; hostile: fs-isolation -- looks for other runs' files. Granted `scratch`; what it does is chosen by its
;; input (stdin), so one template plays every part:
;;   "P"    plant: leaves a file in `/` and in `/scratch`, a directory with a file in it and a symlink,
;;          for a later run of the same template to find.
;;   "E"    expect empty: none of what "P" planted is there; `/` lists only `scratch`, `/scratch` nothing.
;;   "WXY"  (X, Y: letters) wait: writes its marker `/mine-X` (content "X"), then waits (poll_oneoff, 2 ms
;;          at a time, until the run's deadline) for a file `/go` that the test's host side puts into this
;;          run's directory holding the absolute host path of the other, concurrent run's `/` (whose
;;          marker is `mine-Y`): an attacker who guessed the neighbour's directory. Then it must not see
;;          the neighbour's marker, nor reach it by that host path: absolute (EPERM), as a symlink target
;;          (EPERM when made), `..`-relative as a path or a symlink left in place (EPERM when followed).
;; Prints one line per check ("<check> ok", "<check> ok (errno N)" or "<check> FAIL ...") and "passed N/M";
;; exits 0 only when all held, 2 for an input it does not know.
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get"
    (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; Memory (1 page): 0x000 out parameters (0x00 fd, 0x04 count, 0x08 iovec, 0x20 number formatting,
  ;; 0x40 prestat), 0x100 read buffer (256), 0x200 preopen name, 0x300 stdin (16), 0x400 strings
  ;; (64-byte slots), 0x2000 fd_readdir buffer (4 KiB), 0x3000 poll_oneoff subscription and event,
  ;; 0x4000 the peer's host path (read from /go, 1 KiB), 0x5000 paths built at run time (2 KiB).
  (memory (export "memory") 1)
  (global $OUT_FD i32 (i32.const 0x00))
  (global $OUT_N i32 (i32.const 0x04))
  (global $IOV i32 (i32.const 0x08))
  (global $NUM i32 (i32.const 0x20))
  (global $PRESTAT i32 (i32.const 0x40))
  (global $READ_BUF i32 (i32.const 0x100))
  (global $NAME_BUF i32 (i32.const 0x200))
  (global $INPUT i32 (i32.const 0x300))
  (global $DIR_BUF i32 (i32.const 0x2000))
  (global $POLL i32 (i32.const 0x3000))
  (global $PEER i32 (i32.const 0x4000))
  (global $PATH i32 (i32.const 0x5000))

  (global $ENOENT i32 (i32.const 44))
  (global $EPERM i32 (i32.const 63))
  (global $FOLLOW i32 (i32.const 1))
  (global $O_CREAT i32 (i32.const 1))
  (global $O_TRUNC i32 (i32.const 8))
  (global $R_READ i64 (i64.const 0x200026))
  (global $R_WRITE i64 (i64.const 0xc00040))

  (global $checks (mut i32) (i32.const 0))
  (global $passed (mut i32) (i32.const 0))
  (global $root (mut i32) (i32.const -1))
  (global $scratch (mut i32) (i32.const -1))

  (data (i32.const 0x400) "/\00")
  (data (i32.const 0x440) "/scratch\00")
  (data (i32.const 0x480) "planted.txt\00")
  (data (i32.const 0x4c0) "left by an earlier run\n\00")
  (data (i32.const 0x500) "planted-dir\00")
  (data (i32.const 0x540) "planted-dir/inner.txt\00")
  (data (i32.const 0x580) "planted-link\00")
  (data (i32.const 0x5c0) "scratch\00")
  (data (i32.const 0x600) ".\00")
  (data (i32.const 0x640) "..\00")
  (data (i32.const 0x680) "mine-?\00")  ;; own marker, ? = X
  (data (i32.const 0x6c0) "mine-?\00")  ;; the neighbour's, ? = Y
  (data (i32.const 0x700) "?\00")       ;; own marker's content
  (data (i32.const 0x740) "go\00")
  (data (i32.const 0x780) "peer\00")
  (data (i32.const 0x7c0) "peer-rel\00")
  (data (i32.const 0x800) "../../../../../../../../../../../../../../..\00")  ;; 15 levels: / from any run directory
  (data (i32.const 0x840) "/\00")
  (data (i32.const 0x880) "\00")       ;; the empty string

  (data (i32.const 0xc00) " ok\n\00")
  (data (i32.const 0xc40) " ok (errno \00")
  (data (i32.const 0xc80) ")\n\00")
  (data (i32.const 0xcc0) " FAIL errno \00")
  (data (i32.const 0xd00) " FAIL wrong result\n\00")
  (data (i32.const 0xd40) " FAIL it succeeded, want errno \00")
  (data (i32.const 0xd80) ", want \00")
  (data (i32.const 0xdc0) "\n\00")
  (data (i32.const 0xe00) "passed \00")
  (data (i32.const 0xe40) "/\00")
  (data (i32.const 0xe80) "unknown input\n\00")

  (data (i32.const 0x1000) "preopens\00")
  (data (i32.const 0x1040) "plant-file\00")
  (data (i32.const 0x1080) "plant-scratch-file\00")
  (data (i32.const 0x10c0) "plant-dir\00")
  (data (i32.const 0x1100) "plant-file-in-dir\00")
  (data (i32.const 0x1140) "plant-symlink\00")
  (data (i32.const 0x1180) "planted-file-absent\00")
  (data (i32.const 0x11c0) "planted-scratch-file-absent\00")
  (data (i32.const 0x1200) "planted-dir-absent\00")
  (data (i32.const 0x1240) "planted-symlink-absent\00")
  (data (i32.const 0x1280) "readdir-root-only-scratch\00")
  (data (i32.const 0x12c0) "readdir-scratch-empty\00")
  (data (i32.const 0x1300) "own-marker-written\00")
  (data (i32.const 0x1340) "go-arrived\00")
  (data (i32.const 0x1380) "peer-marker-absent\00")
  (data (i32.const 0x13c0) "peer-marker-absent-in-scratch\00")
  (data (i32.const 0x1400) "readdir-root-own-entries-only\00")
  (data (i32.const 0x1440) "peer-absolute-open\00")
  (data (i32.const 0x1480) "peer-absolute-symlink\00")
  (data (i32.const 0x14c0) "peer-dotdot-symlink-made\00")
  (data (i32.const 0x1500) "peer-dotdot-symlink-open\00")
  (data (i32.const 0x1540) "peer-dotdot-truncate\00")
  (data (i32.const 0x1580) "own-marker-intact\00")

  ;; ---------------------------------------------------------------------------------------------
  ;; Strings and the report (as in fs-escape)

  (func $strlen (param $p i32) (result i32)
    (local $q i32)
    (local.set $q (local.get $p))
    (block $end
      (loop $next
        (br_if $end (i32.eqz (i32.load8_u (local.get $q))))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $next)))
    (i32.sub (local.get $q) (local.get $p)))

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
        (call $print (i32.const 0xd40))
        (call $print_u32 (local.get $want))
        (call $print (i32.const 0xdc0))
        (return)))
    (call $print (i32.const 0xcc0))
    (call $print_u32 (local.get $errno))
    (call $print (i32.const 0xd80))
    (call $print_u32 (local.get $want))
    (call $print (i32.const 0xdc0)))

  (func $report
    (call $print (i32.const 0xe00))
    (call $print_u32 (global.get $passed))
    (call $print (i32.const 0xe40))
    (call $print_u32 (global.get $checks))
    (call $print (i32.const 0xdc0))
    (if (i32.ne (global.get $passed) (global.get $checks)) (then (call $proc_exit (i32.const 1)))))

  ;; ---------------------------------------------------------------------------------------------
  ;; File-system helpers (each returns a WASI errno, 0 on success; paths NUL-terminated)

  (func $open (param $dir i32) (param $lookup i32) (param $path i32) (param $oflags i32) (param $rights i64)
              (result i32)
    (call $path_open (local.get $dir) (local.get $lookup) (local.get $path) (call $strlen (local.get $path))
      (local.get $oflags) (local.get $rights) (local.get $rights) (i32.const 0) (global.get $OUT_FD)))

  (func $open_errno (param $dir i32) (param $lookup i32) (param $path i32) (param $oflags i32) (param $rights i64)
                    (result i32)
    (local $e i32)
    (local.set $e (call $open (local.get $dir) (local.get $lookup) (local.get $path) (local.get $oflags)
      (local.get $rights)))
    (if (i32.eqz (local.get $e)) (then (drop (call $fd_close (i32.load (global.get $OUT_FD))))))
    (local.get $e))

  ;; Creates dir/path holding the string s.
  (func $create_with (param $dir i32) (param $path i32) (param $s i32) (result i32)
    (local $e i32) (local $fd i32)
    (local.set $e (call $open (local.get $dir) (i32.const 0) (local.get $path)
      (i32.or (global.get $O_CREAT) (global.get $O_TRUNC)) (global.get $R_WRITE)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $fd (i32.load (global.get $OUT_FD)))
    (i32.store (global.get $IOV) (local.get $s))
    (i32.store offset=4 (global.get $IOV) (call $strlen (local.get $s)))
    (local.set $e (call $fd_write (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT_N)))
    (drop (call $fd_close (local.get $fd)))
    (local.get $e))

  ;; Reads dir/path (at most 1023 bytes) into `buf` as a NUL-terminated string, a trailing newline dropped.
  (func $read_into (param $dir i32) (param $path i32) (param $buf i32) (result i32)
    (local $e i32) (local $fd i32) (local $n i32)
    (local.set $e (call $open (local.get $dir) (global.get $FOLLOW) (local.get $path) (i32.const 0) (global.get $R_READ)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $fd (i32.load (global.get $OUT_FD)))
    (i32.store (global.get $IOV) (local.get $buf))
    (i32.store offset=4 (global.get $IOV) (i32.const 1023))
    (local.set $e (call $fd_read (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT_N)))
    (drop (call $fd_close (local.get $fd)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $n (i32.load (global.get $OUT_N)))
    (if (i32.and (i32.gt_u (local.get $n) (i32.const 0))
                 (i32.eq (i32.load8_u (i32.sub (i32.add (local.get $buf) (local.get $n)) (i32.const 1))) (i32.const 10)))
      (then (local.set $n (i32.sub (local.get $n) (i32.const 1)))))
    (i32.store8 (i32.add (local.get $buf) (local.get $n)) (i32.const 0))
    (i32.const 0))

  ;; 0 when dir/path does not exist (ENOENT, not following a final symlink), else the errno or -1.
  (func $absent (param $dir i32) (param $path i32) (result i32)
    (local $e i32)
    (local.set $e (call $path_filestat_get (local.get $dir) (i32.const 0) (local.get $path)
      (call $strlen (local.get $path)) (global.get $DIR_BUF)))
    (if (i32.eq (local.get $e) (global.get $ENOENT)) (then (return (i32.const 0))))
    (if (result i32) (local.get $e) (then (local.get $e)) (else (i32.const -1))))

  (func $symlink (param $target i32) (param $dir i32) (param $link i32) (result i32)
    (call $path_symlink (local.get $target) (call $strlen (local.get $target))
      (local.get $dir) (local.get $link) (call $strlen (local.get $link))))

  ;; The entries of directory fd other than "." and "..": 0 when they are exactly `count` names and
  ;; `name` (when not 0) is one of them; -1 when not; an errno when fd_readdir failed.
  (func $lists (param $fd i32) (param $count i32) (param $name i32) (result i32)
    (local $e i32) (local $at i32) (local $end i32) (local $len i32) (local $seen i32) (local $hit i32)
    (local.set $e (call $fd_readdir (local.get $fd) (global.get $DIR_BUF) (i32.const 0x1000) (i64.const 0)
      (global.get $OUT_N)))
    (if (local.get $e) (then (return (local.get $e))))
    (local.set $at (global.get $DIR_BUF))
    (local.set $end (i32.add (global.get $DIR_BUF) (i32.load (global.get $OUT_N))))
    (block $done
      (loop $entry
        (br_if $done (i32.gt_u (i32.add (local.get $at) (i32.const 24)) (local.get $end)))
        (local.set $len (i32.load offset=16 (local.get $at)))
        (local.set $at (i32.add (local.get $at) (i32.const 24)))
        (br_if $done (i32.gt_u (i32.add (local.get $at) (local.get $len)) (local.get $end)))
        (if (i32.eqz (i32.or (call $is (local.get $at) (local.get $len) (i32.const 0x600))
                             (call $is (local.get $at) (local.get $len) (i32.const 0x640))))
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

  ;; Sleeps 2 ms (one relative monotonic-clock subscription; needs no `clock` grant).
  (func $nap
    (i64.store (global.get $POLL) (i64.const 0))                           ;; userdata
    (i32.store8 offset=8 (global.get $POLL) (i32.const 0))                 ;; tag: clock
    (i32.store offset=16 (global.get $POLL) (i32.const 1))                 ;; monotonic
    (i64.store offset=24 (global.get $POLL) (i64.const 2000000))           ;; 2 ms
    (i64.store offset=32 (global.get $POLL) (i64.const 0))
    (i32.store16 offset=40 (global.get $POLL) (i32.const 0))               ;; relative
    (drop (call $poll_oneoff (global.get $POLL) (i32.add (global.get $POLL) (i32.const 0x40)) (i32.const 1)
      (i32.add (global.get $POLL) (i32.const 0x80)))))

  ;; ---------------------------------------------------------------------------------------------
  ;; The three parts

  (func $plant
    (call $check (i32.const 0x1040) (call $create_with (global.get $root) (i32.const 0x480) (i32.const 0x4c0)))
    (call $check (i32.const 0x1080) (call $create_with (global.get $scratch) (i32.const 0x480) (i32.const 0x4c0)))
    (call $check (i32.const 0x10c0)
      (call $path_create_directory (global.get $root) (i32.const 0x500) (call $strlen (i32.const 0x500))))
    (call $check (i32.const 0x1100) (call $create_with (global.get $root) (i32.const 0x540) (i32.const 0x4c0)))
    (call $check (i32.const 0x1140) (call $symlink (i32.const 0x480) (global.get $root) (i32.const 0x580))))

  (func $expect_empty
    (call $check (i32.const 0x1180) (call $absent (global.get $root) (i32.const 0x480)))
    (call $check (i32.const 0x11c0) (call $absent (global.get $scratch) (i32.const 0x480)))
    (call $check (i32.const 0x1200) (call $absent (global.get $root) (i32.const 0x500)))
    (call $check (i32.const 0x1240) (call $absent (global.get $root) (i32.const 0x580)))
    (call $check (i32.const 0x1280) (call $lists (global.get $root) (i32.const 1) (i32.const 0x5c0)))
    (call $check (i32.const 0x12c0) (call $lists (global.get $scratch) (i32.const 0) (i32.const 0))))

  ;; $PEER + "/" + the neighbour's marker, at $PATH (after `prefix`).
  (func $peer_marker (param $prefix i32) (result i32)
    (local $at i32)
    (local.set $at (call $append (global.get $PATH) (local.get $prefix)))
    (local.set $at (call $append (local.get $at) (global.get $PEER)))
    (drop (call $append (call $append (local.get $at) (i32.const 0x840)) (i32.const 0x6c0)))
    (global.get $PATH))

  (func $wait (param $mine i32) (param $theirs i32)
    (local $e i32)
    (i32.store8 offset=5 (i32.const 0x680) (local.get $mine))
    (i32.store8 offset=5 (i32.const 0x6c0) (local.get $theirs))
    (i32.store8 (i32.const 0x700) (local.get $mine))
    (call $check (i32.const 0x1300) (call $create_with (global.get $root) (i32.const 0x680) (i32.const 0x700)))
    (loop $until_go
      (if (i32.eqz (call $absent (global.get $root) (i32.const 0x740)))
        (then (call $nap) (br $until_go))))
    (call $check (i32.const 0x1340) (call $read_into (global.get $root) (i32.const 0x740) (global.get $PEER)))

    (call $check (i32.const 0x1380) (call $absent (global.get $root) (i32.const 0x6c0)))
    (call $check (i32.const 0x13c0) (call $absent (global.get $scratch) (i32.const 0x6c0)))
    (call $check (i32.const 0x1400) (call $lists (global.get $root) (i32.const 3) (i32.const 0x680)))
    (call $refused (i32.const 0x1440) (call $open_errno (global.get $root) (global.get $FOLLOW)
      (call $peer_marker (i32.const 0x880)) (i32.const 0) (global.get $R_READ)) (global.get $EPERM))
    (call $refused (i32.const 0x1480) (call $symlink (global.get $PEER) (global.get $root) (i32.const 0x780))
      (global.get $EPERM))
    ;; "peer-rel" -> 15 levels of ".." then the neighbour's directory: left in place when the run ends.
    (drop (call $append (call $append (global.get $PATH) (i32.const 0x800)) (global.get $PEER)))
    (call $check (i32.const 0x14c0) (call $symlink (global.get $PATH) (global.get $root) (i32.const 0x7c0)))
    (drop (call $append (call $append (call $append (global.get $PATH) (i32.const 0x7c0)) (i32.const 0x840))
      (i32.const 0x6c0)))
    (call $refused (i32.const 0x1500) (call $open_errno (global.get $root) (global.get $FOLLOW) (global.get $PATH)
      (i32.const 0) (global.get $R_READ)) (global.get $EPERM))
    (call $refused (i32.const 0x1540) (call $open_errno (global.get $root) (global.get $FOLLOW)
      (call $peer_marker (i32.const 0x800)) (global.get $O_TRUNC) (global.get $R_WRITE)) (global.get $EPERM))
    (local.set $e (call $read_into (global.get $root) (i32.const 0x680) (global.get $READ_BUF)))
    (if (i32.eqz (local.get $e))
      (then (if (i32.eqz (call $is (global.get $READ_BUF) (call $strlen (global.get $READ_BUF)) (i32.const 0x700)))
        (then (local.set $e (i32.const -1))))))
    (call $check (i32.const 0x1580) (local.get $e)))

  (func (export "_start")
    (local $mode i32)
    (global.set $root (call $find_preopen (i32.const 0x400)))
    (global.set $scratch (call $find_preopen (i32.const 0x440)))
    (call $check (i32.const 0x1000)
      (if (result i32) (i32.or (i32.lt_s (global.get $root) (i32.const 0)) (i32.lt_s (global.get $scratch) (i32.const 0)))
        (then (i32.const -1)) (else (i32.const 0))))
    (if (i32.lt_s (global.get $passed) (i32.const 1)) (then (call $report)))
    (i32.store (global.get $IOV) (global.get $INPUT))
    (i32.store offset=4 (global.get $IOV) (i32.const 16))
    (drop (call $fd_read (i32.const 0) (global.get $IOV) (i32.const 1) (global.get $OUT_N)))
    (local.set $mode (i32.load8_u (global.get $INPUT)))
    (block $known
      (if (i32.eq (local.get $mode) (i32.const 80)) (then (call $plant) (br $known)))        ;; P
      (if (i32.eq (local.get $mode) (i32.const 69)) (then (call $expect_empty) (br $known))) ;; E
      (if (i32.and (i32.eq (local.get $mode) (i32.const 87)) (i32.ge_u (i32.load (global.get $OUT_N)) (i32.const 3)))
        (then                                                                                ;; W
          (call $wait (i32.load8_u offset=1 (global.get $INPUT)) (i32.load8_u offset=2 (global.get $INPUT)))
          (br $known)))
      (call $print (i32.const 0xe80))
      (call $proc_exit (i32.const 2)))
    (call $report))
)
