;; hostile: scratch-big-file -- one file written in 64 KiB blocks until a write fails. The run's file
;; system holds at most its cap (16 MiB by default): the write that would pass it gets ENOSPC (51). Prints
;; the bytes written, then exits with the errno of the failed write.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
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
  (memory (export "memory") 2)
  (data (i32.const 100) "big")
  (func (export "_start")
    (local $fd i32) (local $err i32) (local $total i32)
    ;; fd 3 is the run's /; oflags 1 = O_CREAT
    (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 3) (i32.const 1)
      (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 16)))
    (if (local.get $err) (then (call $exit (local.get $err))))
    (local.set $fd (i32.load (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 65536)) (i32.store (i32.const 4) (i32.const 65536))
    (loop $again
      (local.set $err (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 24)))
      (if (i32.eqz (local.get $err))
        (then (local.set $total (i32.add (local.get $total) (i32.load (i32.const 24)))) (br $again))))
    (call $print (local.get $total))
    (call $exit (local.get $err))))
