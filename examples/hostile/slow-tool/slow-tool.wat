;; hostile: slow-tool -- finds the first "http://..." URL in its input (raw text or JSON
;; such as {"url": "http://127.0.0.1:18080/slow"}) and calls http_get on it once, then
;; prints {"http_get":<code>} and exits 0 when the call succeeded, 1 when it failed.
;; Pointed at a server that answers only after the run's deadline, the host call must be
;; cut off at the deadline: the run ends TIMED_OUT (LIMIT_DEADLINE) close to timeout_ms,
;; not when the server finally answers.
(module
  (import "agentfactory" "http_get" (func $http_get (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)

  ;; 0 iovec, 8 nread/nwritten, 64.. strings, 1024..3072 input, 4096..8192 response buffer,
  ;; 8192.. output line.
  (data (i32.const 64) "http://")                                      ;; 7
  (data (i32.const 80) "slow-tool: no http:// URL in the input\n")     ;; 39
  (data (i32.const 128) "{\"http_get\":")                              ;; 12
  (data (i32.const 144) "}\n")                                          ;; 2

  (func $write (param $fd i32) (param $p i32) (param $n i32)
    (i32.store (i32.const 0) (local.get $p))
    (i32.store (i32.const 4) (local.get $n))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))

  ;; Reads stdin into 1024.. (at most 2048 bytes); returns the length.
  (func $read_input (result i32)
    (local $len i32) (local $n i32)
    (block $eof
      (loop $more
        (br_if $eof (i32.ge_u (local.get $len) (i32.const 2048)))
        (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $len)))
        (i32.store (i32.const 4) (i32.sub (i32.const 2048) (local.get $len)))
        (br_if $eof (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $len (i32.add (local.get $len) (local.get $n)))
        (br $more)))
    (local.get $len))

  ;; Is the byte at $p the start of "http://"?
  (func $at_http (param $p i32) (result i32)
    (i32.and
      (i64.eq (i64.and (i64.load (local.get $p)) (i64.const 0x00FFFFFFFFFFFFFF))
              (i64.and (i64.load (i32.const 64)) (i64.const 0x00FFFFFFFFFFFFFF)))
      (i32.const 1)))

  (func (export "_start")
    (local $len i32) (local $p i32) (local $end i32) (local $q i32) (local $c i32)
    (local $code i32) (local $tmp i32) (local $u i32) (local $o i32)
    (local.set $len (call $read_input))
    (local.set $end (i32.add (i32.const 1024) (local.get $len)))
    ;; find "http://"
    (local.set $p (i32.const 1024))
    (block $found
      (loop $scan
        (if (i32.gt_u (i32.add (local.get $p) (i32.const 7)) (local.get $end))
          (then
            (call $write (i32.const 2) (i32.const 80) (i32.const 39))
            (call $proc_exit (i32.const 2))))
        (br_if $found (call $at_http (local.get $p)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $scan)))
    ;; the URL ends at a quote, whitespace or the end of the input
    (local.set $q (local.get $p))
    (block $stop
      (loop $url
        (br_if $stop (i32.ge_u (local.get $q) (local.get $end)))
        (local.set $c (i32.load8_u (local.get $q)))
        (br_if $stop (i32.le_u (local.get $c) (i32.const 32)))
        (br_if $stop (i32.eq (local.get $c) (i32.const 34)))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $url)))

    (local.set $code
      (call $http_get (local.get $p) (i32.sub (local.get $q) (local.get $p)) (i32.const 4096) (i32.const 4096)))

    ;; {"http_get":<code>}
    (memory.copy (i32.const 8192) (i32.const 128) (i32.const 12))
    (local.set $o (i32.const 8204))
    (if (i32.lt_s (local.get $code) (i32.const 0))
      (then
        (i32.store8 (local.get $o) (i32.const 45))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (local.set $u (i32.sub (i32.const 0) (local.get $code))))
      (else (local.set $u (local.get $code))))
    (local.set $tmp (i32.const 8300))
    (loop $digit
      (local.set $tmp (i32.sub (local.get $tmp) (i32.const 1)))
      (i32.store8 (local.get $tmp) (i32.add (i32.const 48) (i32.rem_u (local.get $u) (i32.const 10))))
      (local.set $u (i32.div_u (local.get $u) (i32.const 10)))
      (br_if $digit (local.get $u)))
    (memory.copy (local.get $o) (local.get $tmp) (i32.sub (i32.const 8300) (local.get $tmp)))
    (local.set $o (i32.add (local.get $o) (i32.sub (i32.const 8300) (local.get $tmp))))
    (memory.copy (local.get $o) (i32.const 144) (i32.const 2))
    (local.set $o (i32.add (local.get $o) (i32.const 2)))
    (call $write (i32.const 1) (i32.const 8192) (i32.sub (local.get $o) (i32.const 8192)))
    (if (i32.lt_s (local.get $code) (i32.const 0))
      (then (call $proc_exit (i32.const 1))))))
