;; hostile: scratch-deep-dirs -- d, d/d, d/d/d, ... created until mkdir fails: a tree as deep as the
;; entry cap allows (1024 by default), then ENOSPC (51). The host must still measure and remove it:
;; Python's shutil.rmtree recurses once per level and raises RecursionError near a thousand. Prints the
;; depth reached, then exits with the errno.
(module
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  ;; print(n): n in decimal and a newline on stdout (scratch at 200..231, iovec at 240)
  (func $print (param $n i32)
    (local $at i32)
    (local.set $at (i32.const 231))
    (i32.store8 (local.get $at) (i32.const 10))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (i32.store (i32.const 240) (local.get $at))
    (i32.store (i32.const 244) (i32.sub (i32.const 232) (local.get $at)))
    (drop (call $fd_write (i32.const 1) (i32.const 240) (i32.const 1) (i32.const 248))))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $err i32) (local $depth i32) (local $len i32)
    ;; the path at 1024: "d", then "/d" appended per level
    (i32.store8 (i32.const 1024) (i32.const 100))
    (local.set $len (i32.const 1))
    (loop $again
      (local.set $err (call $mkdir (i32.const 3) (i32.const 1024) (local.get $len)))
      (if (i32.eqz (local.get $err))
        (then
          (local.set $depth (i32.add (local.get $depth) (i32.const 1)))
          (i32.store16 (i32.add (i32.const 1024) (local.get $len)) (i32.const 0x642f))  ;; "/d"
          (local.set $len (i32.add (local.get $len) (i32.const 2)))
          (br $again))))
    (call $print (local.get $depth))
    (call $exit (local.get $err))))
