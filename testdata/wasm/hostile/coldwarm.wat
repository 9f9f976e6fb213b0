;; coldwarm: a guest whose pln_warm traps. The host must refuse to load it,
;; saying so, rather than hand out instances that were never warmed.
;;
;;   pln_warm  traps (unreachable)
;;   ok        would return at once
(module
  (func (export "pln_warm") (result i32)
    unreachable)

  (func (export "ok") (result i32)
    (i32.const 0)))
