;; hostile: random-flood -- WASI random_get over almost all of its 16 MiB memory, in a loop. Each call is
;; one long host call; a host that fills the buffer in one go is out of reach of epoch interruption.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 250)
  (func (export "_start")
    (loop $again
      (drop (call $random_get (i32.const 0) (i32.const 16384000)))
      (br $again))))
