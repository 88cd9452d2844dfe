;; hostile: sleep-poll -- one WASI poll_oneoff with a single relative clock subscription of 4 s.
;; wasmtime's own poll_oneoff sleeps the whole 4 s and epoch interruption cannot reach it (it only checks
;; wasm code), so an executor that relies on epochs alone ends this run SUCCEEDED after 4 s.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; subscription at 0: userdata 7, tag 0 (clock), clock id 1 (monotonic), timeout 4e9 ns, relative
    (i64.store (i32.const 0) (i64.const 7))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 4000000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    ;; events at 64, count at 128
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
