;; hostile: start-memory-bomb -- memory-bomb in the module's *start function*: grows linear memory a
;; page at a time until memory.grow fails (the store's limit), then stores through the failed result
;; and traps, all during instantiation. wasmtime runs the start function inside instantiation, so an
;; executor that lets it do so never gets an instance to measure and reports a plain FAILED trap.
(module
  (memory (export "memory") 1)
  (func $bomb
    (local $old i32)
    (block $denied
      (loop $grow
        (local.set $old (memory.grow (i32.const 1)))
        (br_if $denied (i32.eq (local.get $old) (i32.const -1)))
        (i32.store8 (i32.shl (local.get $old) (i32.const 16)) (i32.const 0xAA))
        (br $grow)))
    (i32.store (i32.shl (local.get $old) (i32.const 16)) (i32.const 0xDEAD)))
  (start $bomb)
  (func (export "_start")))
