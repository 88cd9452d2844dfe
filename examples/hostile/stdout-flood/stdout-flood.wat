;; hostile: stdout-flood -- writes a 4 KiB block of 'A's (each 64th byte a newline) to
;; stdout forever, ignoring fd_write errors. Only the output cap (max_output_bytes), fuel
;; or the deadline stop it; the output cap should trip first.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32)
    ;; fill 1024..5119 with text lines
    (loop $fill
      (i32.store8 (i32.add (i32.const 1024) (local.get $i))
        (select (i32.const 10) (i32.const 65)
          (i32.eq (i32.and (local.get $i) (i32.const 63)) (i32.const 63))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 4096))))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4096))
    (loop $flood
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $flood))))
