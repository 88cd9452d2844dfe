;; hostile: scratch-many-files -- empty files f0, f1, ... created until a create fails. Each costs the
;; host an inode and a directory entry but no data: the run's file system holds at most its entry cap
;; (1024 files, directories and symlinks by default), then creating gets ENOSPC (51). Prints how many it
;; created, then exits with the errno.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  ;; print(n): n in decimal and a newline on stdout (scratch at 200..231, iovec at 240)
  (func $print (param $n i32)
    (local $at i32)
    (local.set $at (i32.const 231))
    (i32.store8 (local.get $at) (i32.const 10))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (i32.store (i32.const 240) (local.get $at))
    (i32.store (i32.const 244) (i32.sub (i32.const 232) (local.get $at)))
    (drop (call $fd_write (i32.const 1) (i32.const 240) (i32.const 1) (i32.const 248))))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $err i32) (local $count i32) (local $n i32) (local $len i32)
    (loop $again
      ;; the name "f<count>" at 100
      (i32.store8 (i32.const 100) (i32.const 102))
      (local.set $len (i32.const 1)) (local.set $n (local.get $count))
      (loop $digits  ;; reversed digits are as unique as the forward ones
        (i32.store8 (i32.add (i32.const 100) (local.get $len)) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))
        (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
        (br_if $digits (local.get $n)))
      ;; oflags 5 = O_CREAT | O_EXCL
      (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (local.get $len) (i32.const 5)
        (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 16)))
      (if (i32.eqz (local.get $err))
        (then
          (drop (call $fd_close (i32.load (i32.const 16))))
          (local.set $count (i32.add (local.get $count) (i32.const 1)))
          (br $again))))
    (call $print (local.get $count))
    (call $exit (local.get $err))))
