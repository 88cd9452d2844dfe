;; hostile: write-flood -- fd_write to stderr with 1024 iovecs of almost 16 MiB each (16 GiB per call),
;; in a loop. A host that copies every iovec before returning spends tens of seconds inside one call,
;; out of reach of epoch interruption.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 250)
  (func (export "_start")
    (local $i i32)
    ;; iovecs at 0: (ptr 0, len 250*64 KiB - 16 KiB) x 1024
    (loop $fill
      (i32.store (i32.mul (local.get $i) (i32.const 8)) (i32.const 0))
      (i32.store (i32.add (i32.mul (local.get $i) (i32.const 8)) (i32.const 4)) (i32.const 16367616))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 1024))))
    (loop $again
      (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1024) (i32.const 16380000)))
      (br $again))))
