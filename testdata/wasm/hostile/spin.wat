;; spin: a guest that never returns. The host must stop it at the call's
;; deadline, throw the instance away and keep serving.
;;
;;   run  loops forever
;;   ok   returns at once: the module still serves after run was stopped
(module
  (func (export "run") (result i32)
    (loop $forever
      (br $forever))
    (i32.const 0))

  (func (export "ok") (result i32)
    (i32.const 0)))
