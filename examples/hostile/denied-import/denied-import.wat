;; hostile: denied-import -- imports agentfactory.http_get although its manifest grants no
;; tools, and would fetch a URL with it. The executor must refuse it before
;; instantiation (FAILED_PRECONDITION) because the import is not granted.
(module
  (import "agentfactory" "http_get" (func $http_get (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "http://127.0.0.1:18080/secret")
  (func (export "_start")
    (drop (call $http_get (i32.const 16) (i32.const 29) (i32.const 1024) (i32.const 4096)))))
