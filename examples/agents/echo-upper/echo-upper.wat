;; echo-upper: copy stdin to stdout with ASCII letters upper-cased.
;;
;; The load-test agent: no tools, one page of memory, a handful of WASI calls per run.
;; Bytes >= 0x80 pass through untouched, so UTF-8 input stays valid UTF-8.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; Layout: 0 read iovec, 8 write iovec, 16 nread, 20 nwritten, 64 message, 1024.. buffer.
  (memory (export "memory") 1)
  (global $buf i32 (i32.const 1024))
  (global $cap i32 (i32.const 64512))
  (data (i32.const 64) "echo-upper: I/O error\n")

  (func $die
    (i32.store (i32.const 8) (i32.const 64))
    (i32.store (i32.const 12) (i32.const 22))
    (drop (call $fd_write (i32.const 2) (i32.const 8) (i32.const 1) (i32.const 20)))
    (call $proc_exit (i32.const 1)))

  (func $upper (param $p i32) (param $end i32)
    (local $b i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $b (i32.load8_u (local.get $p)))
        ;; 'a' <= b <= 'z'  <=>  (b - 'a') <u 26
        (if (i32.lt_u (i32.sub (local.get $b) (i32.const 97)) (i32.const 26))
          (then (i32.store8 (local.get $p) (i32.sub (local.get $b) (i32.const 32)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next))))

  (func $write_all (param $p i32) (param $n i32)
    (local $w i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (i32.const 8) (local.get $p))
        (i32.store (i32.const 12) (local.get $n))
        (if (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 20))
          (then (call $die)))
        (local.set $w (i32.load (i32.const 20)))
        (local.set $p (i32.add (local.get $p) (local.get $w)))
        (local.set $n (i32.sub (local.get $n) (local.get $w)))
        (br $more))))

  (func (export "_start")
    (local $n i32)
    (i32.store (i32.const 0) (global.get $buf))
    (i32.store (i32.const 4) (global.get $cap))
    (block $eof
      (loop $chunk
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16))
          (then (call $die)))
        (local.set $n (i32.load (i32.const 16)))
        (br_if $eof (i32.eqz (local.get $n)))
        (call $upper (global.get $buf) (i32.add (global.get $buf) (local.get $n)))
        (call $write_all (global.get $buf) (local.get $n))
        (br $chunk)))))
