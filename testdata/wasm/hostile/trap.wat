;; trap: a guest that crashes at once. The host must report a trap and throw
;; the instance away.
;;
;;   run  traps (unreachable)
;;   ok   returns at once: the module still serves after run crashed
(module
  (func (export "run") (result i32)
    unreachable)

  (func (export "ok") (result i32)
    (i32.const 0)))
