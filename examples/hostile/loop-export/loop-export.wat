;; hostile: loop-export -- `_start` spins forever in a tight loop that never calls out.
;; Only preemption stops it: fuel exhaustion or the epoch (wall-clock) deadline,
;; whichever the manifest makes come first.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $spin))))
