;; hostile: loop-start -- the module's *start function* spins forever, so the loop runs
;; during instantiation, before `_start` can be called. An executor that arms fuel and the
;; epoch deadline only after instantiating hangs here.
(module
  (memory (export "memory") 1)
  ;; The cheapest possible loop (one unit of fuel per iteration), so that the wall-clock
  ;; deadline, not fuel, is what stops it under its manifest.
  (func $spin
    (loop $again
      (br $again)))
  (start $spin)
  (func (export "_start")))
