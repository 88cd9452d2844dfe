;; hostile: oob-pointer -- hands the log and kv tools pointers and lengths that lie (partly)
;; outside its 64 KiB linear memory, including one whose end wraps around 2^32, then
;; prints every return code as JSON on stdout and exits 0. The host must answer -3
;; (AF_ERR_BOUNDS) for each bad region, never read or write outside memory, and let the
;; run go on. Expected stdout (one line):
;;   {"log_ok":0,"log_straddle":-3,"log_wrap":-3,"log_far":-3,"kv_put_key_oob":-3,
;;    "kv_put_val_oob":-3,"kv_put_ok":0,"kv_get_buf_oob":-3}
(module
  (import "agentfactory" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "agentfactory" "kv_put" (func $kv_put (param i32 i32 i32 i32) (result i32)))
  (import "agentfactory" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)

  (data (i32.const 256) "oob-pointer: probing tool bounds checks")  ;; 39 bytes
  (data (i32.const 320) "oob")
  (data (i32.const 324) "v")
  (data (i32.const 400) "{\"log_ok\":")                ;; 10
  (data (i32.const 420) ",\"log_straddle\":")          ;; 16
  (data (i32.const 440) ",\"log_wrap\":")              ;; 12
  (data (i32.const 460) ",\"log_far\":")               ;; 11
  (data (i32.const 480) ",\"kv_put_key_oob\":")        ;; 18
  (data (i32.const 500) ",\"kv_put_val_oob\":")        ;; 18
  (data (i32.const 520) ",\"kv_put_ok\":")             ;; 13
  (data (i32.const 540) ",\"kv_get_buf_oob\":")        ;; 18
  (data (i32.const 560) "}\n")                          ;; 2

  ;; Output is built at 1024.. ; $out is the write position.
  (global $out (mut i32) (i32.const 1024))

  (func $emit (param $p i32) (param $n i32)
    (memory.copy (global.get $out) (local.get $p) (local.get $n))
    (global.set $out (i32.add (global.get $out) (local.get $n))))

  ;; Appends a signed decimal integer.
  (func $emit_int (param $v i32)
    (local $tmp i32) (local $len i32) (local $u i32)
    (if (i32.lt_s (local.get $v) (i32.const 0))
      (then
        (i32.store8 (global.get $out) (i32.const 45))  ;; '-'
        (global.set $out (i32.add (global.get $out) (i32.const 1)))
        (local.set $u (i32.sub (i32.const 0) (local.get $v))))
      (else (local.set $u (local.get $v))))
    ;; digits backwards into 900..910, then copy forwards
    (local.set $tmp (i32.const 911))
    (loop $digit
      (local.set $tmp (i32.sub (local.get $tmp) (i32.const 1)))
      (i32.store8 (local.get $tmp) (i32.add (i32.const 48) (i32.rem_u (local.get $u) (i32.const 10))))
      (local.set $u (i32.div_u (local.get $u) (i32.const 10)))
      (br_if $digit (local.get $u)))
    (call $emit (local.get $tmp) (i32.sub (i32.const 911) (local.get $tmp))))

  (func (export "_start")
    (local $end i32)
    (local.set $end (i32.shl (memory.size) (i32.const 16)))

    ;; control: a valid log call
    (call $emit (i32.const 400) (i32.const 10))
    (call $emit_int (call $log (i32.const 0) (i32.const 256) (i32.const 39)))
    ;; message starts inside memory and runs 90 bytes past its end
    (call $emit (i32.const 420) (i32.const 16))
    (call $emit_int (call $log (i32.const 0) (i32.sub (local.get $end) (i32.const 10)) (i32.const 100)))
    ;; ptr 0xFFFFFFF0, len 32: ptr + len wraps to 16 in 32-bit arithmetic
    ;; (and arrives as a negative int in hosts that read i32 as signed)
    (call $emit (i32.const 440) (i32.const 12))
    (call $emit_int (call $log (i32.const 0) (i32.const 0xFFFFFFF0) (i32.const 32)))
    ;; far past the end
    (call $emit (i32.const 460) (i32.const 11))
    (call $emit_int (call $log (i32.const 0) (i32.const 0x7FFFFFF0) (i32.const 16)))
    ;; kv_put: key straddles the end
    (call $emit (i32.const 480) (i32.const 18))
    (call $emit_int (call $kv_put (i32.sub (local.get $end) (i32.const 2)) (i32.const 8) (i32.const 324) (i32.const 1)))
    ;; kv_put: value straddles the end
    (call $emit (i32.const 500) (i32.const 18))
    (call $emit_int (call $kv_put (i32.const 320) (i32.const 3) (i32.sub (local.get $end) (i32.const 4)) (i32.const 64)))
    ;; control: a valid kv_put ("oob" = "v")
    (call $emit (i32.const 520) (i32.const 13))
    (call $emit_int (call $kv_put (i32.const 320) (i32.const 3) (i32.const 324) (i32.const 1)))
    ;; kv_get of that key into a buffer that straddles the end
    (call $emit (i32.const 540) (i32.const 18))
    (call $emit_int (call $kv_get (i32.const 320) (i32.const 3) (i32.sub (local.get $end) (i32.const 1)) (i32.const 16)))
    (call $emit (i32.const 560) (i32.const 2))

    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.sub (global.get $out) (i32.const 1024)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
