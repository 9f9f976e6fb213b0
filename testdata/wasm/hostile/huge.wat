;; huge: a guest that answers with as much as it can: it asks the Extism
;; kernel for a 64 MiB output block and halves the size until alloc
;; succeeds. The host must refuse the answer as too large rather than pass
;; it on or cut it short.
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))

  (func (export "run") (result i32)
    (local $size i64)
    (local $off i64)
    (local.set $size (i64.const 67108864))
    (block $done
      (loop $try
        (local.set $off (call $alloc (local.get $size)))
        (br_if $done (i64.ne (local.get $off) (i64.const 0)))
        (local.set $size (i64.shr_u (local.get $size) (i64.const 1)))
        (br_if $try (i64.ne (local.get $size) (i64.const 0)))
        (return (i32.const 1))))
    (call $output_set (local.get $off) (local.get $size))
    (i32.const 0)))
