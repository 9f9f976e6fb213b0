;; grow: a guest that wants all the memory it can get. It declares the
;; largest memory wasm32 allows (4 GiB, 65536 pages); the host's cap must
;; hold anyway.
;;
;;   run    grows one page at a time until memory.grow refuses, then aborts
;;          (unreachable), as an allocator that runs out does.
;;   reach  grows the same way, then answers with the number of pages it
;;          ended with, as 8 little-endian bytes: the cap, seen from inside.
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory 1 65536)

  (func $grow_all
    (block $refused
      (loop $more
        (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $more))))

  (func (export "run") (result i32)
    (call $grow_all)
    unreachable)

  (func (export "reach") (result i32)
    (local $out i64)
    (call $grow_all)
    (local.set $out (call $alloc (i64.const 8)))
    (call $store_u64 (local.get $out) (i64.extend_i32_u (memory.size)))
    (call $output_set (local.get $out) (i64.const 8))
    (i32.const 0)))
