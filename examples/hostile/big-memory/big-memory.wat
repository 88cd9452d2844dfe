;; hostile: big-memory -- declares an initial linear memory of 4096 pages (256 MiB), over
;; any memory limit the policy allows (at most 64 MiB). Instantiation must fail (or the
;; executor refuses it from the module's declared memory) without reserving 256 MiB.
(module
  (memory (export "memory") 4096)
  (func (export "_start")))
