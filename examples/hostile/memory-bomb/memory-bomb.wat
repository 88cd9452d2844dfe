;; hostile: memory-bomb -- grows linear memory one 64 KiB page at a time, touching every
;; new page, until memory.grow reports failure (-1: the store's memory limit). It then
;; reports the size it reached on stderr and, like a program that ignores a failed
;; allocation, stores through the "pointer" it got back (-1 pages = 0xFFFF0000), which
;; traps with an out-of-bounds memory access.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "memory-bomb: memory.grow failed at 0x00000000 pages\n")

  ;; Writes $v as 8 hex digits at $at.
  (func $hex (param $at i32) (param $v i32)
    (local $i i32) (local $d i32)
    (loop $digit
      (local.set $d (i32.and (i32.shr_u (local.get $v) (i32.sub (i32.const 28) (i32.shl (local.get $i) (i32.const 2)))) (i32.const 15)))
      (i32.store8 (i32.add (local.get $at) (local.get $i))
        (i32.add (local.get $d) (select (i32.const 48) (i32.const 87) (i32.lt_u (local.get $d) (i32.const 10)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $digit (i32.lt_u (local.get $i) (i32.const 8)))))

  (func (export "_start")
    (local $old i32) (local $p i32)
    (block $denied
      (loop $grow
        (local.set $old (memory.grow (i32.const 1)))
        (br_if $denied (i32.eq (local.get $old) (i32.const -1)))
        ;; touch one byte in each new page so the memory is really committed
        (local.set $p (i32.shl (local.get $old) (i32.const 16)))
        (loop $touch
          (i32.store8 (local.get $p) (i32.const 0xAA))
          (local.set $p (i32.add (local.get $p) (i32.const 65536)))
          (br_if $touch (i32.lt_u (local.get $p) (i32.shl (memory.size) (i32.const 16)))))
        (br $grow)))
    (call $hex (i32.const 101) (memory.size))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 52))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    ;; use the failed result as if it were memory: out-of-bounds store -> trap
    (i32.store (i32.shl (local.get $old) (i32.const 16)) (i32.const 0xDEAD))))
