;; hostile: scratch-sparse-seek -- one byte written every 64 KiB of one file (pwrite at growing offsets,
;; as seek + write would), until a write fails. Each byte costs the host a whole block, so counting the
;; bytes written would let it allocate 4096 times more than the cap; the run's file system counts
;; blocks, so the writes stop near cap / 4 KiB with ENOSPC (51). Prints how many bytes it wrote, then
;; exits with the errno.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
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
  (data (i32.const 100) "sparse")
  (func (export "_start")
    (local $fd i32) (local $err i32) (local $count i32)
    (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 1)
      (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 16)))
    (if (local.get $err) (then (call $exit (local.get $err))))
    (local.set $fd (i32.load (i32.const 16)))
    (i32.store8 (i32.const 32) (i32.const 120))
    (i32.store (i32.const 0) (i32.const 32)) (i32.store (i32.const 4) (i32.const 1))
    (loop $again
      (local.set $err (call $fd_pwrite (local.get $fd) (i32.const 0) (i32.const 1)
        (i64.mul (i64.extend_i32_u (local.get $count)) (i64.const 65536)) (i32.const 24)))
      (if (i32.eqz (local.get $err))
        (then (local.set $count (i32.add (local.get $count) (i32.const 1))) (br $again))))
    (call $print (local.get $count))
    (call $exit (local.get $err))))
