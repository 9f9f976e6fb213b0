// Command plnguest is the Go test guest for the pln WASM host (package wasm).
// It is built as a WASI reactor with the standard Go toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o ../hello.wasm .
//
// Each export is an Extism function: it reads its input with pdk.Input,
// writes its output with pdk.Output and returns 0, or sets an error with
// pdk.SetError and returns 1. The pln host functions it imports are
// declared in pln.go.
package main

import (
	"encoding/json"
	"errors"

	"github.com/extism/go-pdk"
)

func main() {}

// greet answers {"name":"x"} with {"greeting":"hello, x"}.
//
//go:wasmexport greet
func greet() int32 {
	var in struct {
		Name string `json:"name"`
	}
	if err := pdk.InputJSON(&in); err != nil {
		pdk.SetError(errors.New(`greet wants JSON {"name":"..."}: ` + err.Error()))
		return 1
	}
	if in.Name == "" {
		pdk.SetErrorString(`greet wants a name: {"name":"..."}`)
		return 1
	}
	if err := pdk.OutputJSON(map[string]string{"greeting": "hello, " + in.Name}); err != nil {
		pdk.SetError(err)
		return 1
	}
	return 0
}

// echo answers with its input.
//
//go:wasmexport echo
func echo() int32 {
	pdk.Output(pdk.Input())
	return 0
}

// call takes {"uri":"pln://seed/<name>/<fn>","input":"..."}, calls the URI
// through the host and answers with what it returned.
//
//go:wasmexport call
func call() int32 {
	var in struct {
		URI   string `json:"uri"`
		Input string `json:"input"`
	}
	if err := pdk.InputJSON(&in); err != nil {
		pdk.SetError(errors.New(`call wants JSON {"uri":"...","input":"..."}: ` + err.Error()))
		return 1
	}
	out, err := Call(in.URI, []byte(in.Input))
	if err != nil {
		pdk.SetError(err)
		return 1
	}
	pdk.Output(out)
	return 0
}

// whoami answers with the caller as the host describes it.
//
//go:wasmexport whoami
func whoami() int32 {
	var c Caller
	raw := CallerJSON()
	if err := json.Unmarshal(raw, &c); err != nil {
		pdk.SetError(errors.New("pln_caller gave bad JSON: " + err.Error()))
		return 1
	}
	pdk.Output(raw)
	return 0
}

// log writes its input to the host's log at info level, and echoes it.
//
//go:wasmexport log
func logFn() int32 {
	in := pdk.Input()
	Log(LevelInfo, string(in))
	pdk.Output(in)
	return 0
}

// crash panics, as a buggy guest does: the host must report the panic and
// throw the instance away.
//
//go:wasmexport crash
func crash() int32 {
	panic("crash requested: " + pdk.InputString())
}

// warmTables stands for what a guest computes once per instance; pln_warm
// fills it before the instance takes its first call.
var warmTables map[string]string

// warm is pln_warm: the host calls it once on each new instance, before
// any call, so that the Go runtime's start-up and the guest's own set-up
// are not paid by a caller. It may log, but not call other seeds.
//
//go:wasmexport pln_warm
func warm() int32 {
	warmTables = map[string]string{"greeting": "hello, "}
	if _, err := Call("pln://seed/other/fn", nil); err == nil {
		Log(LevelError, "pln_call worked while warming")
		return 1
	}
	Log(LevelDebug, "warm")
	return 0
}
