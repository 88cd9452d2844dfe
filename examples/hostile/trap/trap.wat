;; hostile: trap -- executes `unreachable` right away: the run fails with a trap
;; ("wasm `unreachable` instruction executed"), no exit code, no output.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    unreachable))
