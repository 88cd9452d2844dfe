;; hostile: fs-fd-flood -- opens "." of its `/` preopen again and again, keeping every descriptor: each one
;; is a descriptor of the executor's process, which all runs and the server share. Granted `scratch`.
;; stdin picks how far it goes:
;;   empty  at most 64 opens (a harmless run for the catalogue's tests): "opened 64, last errno 0"
;;   "F"    until an open is refused: "opened N, last errno E"
;;   "H"    as "F", then makes the directory `/flooded` and waits (poll_oneoff, 2 ms at a time, until the
;;          run's deadline) for `/go` to exist before it reports: the test looks at the host meanwhile.
;; The executor refuses the open past its per-run bound with EMFILE (256 descriptors, stdio and the preopens
;; included: "opened 251, last errno 33" with `/` and `/scratch`); without the bound this flood took every
;; descriptor of the executor's process and was told EIO.
;; Exits 0 (its descriptors are closed only when the run's store is dropped).
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get"
    (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))

  ;; 0x00 out fd, 0x04 count, 0x08 iovec, 0x10 stdin (16), 0x40 number formatting, 0x80 filestat (64),
  ;; 0x100 poll_oneoff subscription (48), event (32) at 0x140, nevents at 0x180; strings from 0x200.
  (memory (export "memory") 1)
  (data (i32.const 0x200) ".")
  (data (i32.const 0x210) "flooded")
  (data (i32.const 0x220) "go")
  (data (i32.const 0x230) "opened ")
  (data (i32.const 0x240) ", last errno ")

  (func $write (param $p i32) (param $n i32)
    (i32.store (i32.const 0x08) (local.get $p))
    (i32.store (i32.const 0x0c) (local.get $n))
    (drop (call $fd_write (i32.const 1) (i32.const 0x08) (i32.const 1) (i32.const 0x04))))

  (func $print_u32 (param $v i32)
    (local $p i32)
    (local.set $p (i32.const 0x50))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $digit (local.get $v)))
    (call $write (local.get $p) (i32.sub (i32.const 0x50) (local.get $p))))

  ;; Sleeps 2 ms (a relative monotonic-clock subscription; needs no `clock` grant).
  (func $nap
    (i64.store (i32.const 0x100) (i64.const 0))
    (i32.store8 (i32.const 0x108) (i32.const 0))
    (i32.store (i32.const 0x110) (i32.const 1))
    (i64.store (i32.const 0x118) (i64.const 2000000))
    (i64.store (i32.const 0x120) (i64.const 0))
    (i32.store16 (i32.const 0x128) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 0x100) (i32.const 0x140) (i32.const 1) (i32.const 0x180))))

  (func (export "_start")
    (local $mode i32) (local $max i32) (local $n i32) (local $e i32)
    (i32.store (i32.const 0x08) (i32.const 0x10))
    (i32.store (i32.const 0x0c) (i32.const 16))
    (if (i32.eqz (call $fd_read (i32.const 0) (i32.const 0x08) (i32.const 1) (i32.const 0x04)))
      (then (if (i32.load (i32.const 0x04)) (then (local.set $mode (i32.load8_u (i32.const 0x10)))))))
    (local.set $max (select (i32.const 64) (i32.const -1) (i32.eqz (local.get $mode))))
    ;; fd 3 is `/` (the first preopen). A directory's "." with readdir rights: nothing is created.
    (block $done
      (loop $more
        (br_if $done (i32.ge_u (local.get $n) (local.get $max)))
        (local.set $e (call $path_open (i32.const 3) (i32.const 0) (i32.const 0x200) (i32.const 1) (i32.const 2)
          (i64.const 0x204000) (i64.const 0) (i32.const 0) (i32.const 0x00)))
        (br_if $done (local.get $e))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $more)))
    (if (i32.eq (local.get $mode) (i32.const 72))  ;; "H": hold them until the host says go
      (then
        (drop (call $mkdir (i32.const 3) (i32.const 0x210) (i32.const 7)))
        (loop $wait
          (if (call $path_filestat_get (i32.const 3) (i32.const 0) (i32.const 0x220) (i32.const 2) (i32.const 0x80))
            (then (call $nap) (br $wait))))))
    (call $write (i32.const 0x230) (i32.const 7))
    (call $print_u32 (local.get $n))
    (call $write (i32.const 0x240) (i32.const 13))
    (call $print_u32 (local.get $e))
    (call $write (i32.const 0x2f0) (i32.const 1)))
  (data (i32.const 0x2f0) "\n")
)
