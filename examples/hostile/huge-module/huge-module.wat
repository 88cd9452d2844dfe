;; hostile: huge-module -- the code of the module is this trivial command (it exits 0);
;; gen_huge_module.py compiles it and appends one passive data segment of 9 MiB of
;; incompressible bytes, making a valid module over the 8 MiB module-size cap.
;; No $names here: the generator expects no custom "name" section after the code.
(module
  (memory (export "memory") 1)
  (func (export "_start")))
