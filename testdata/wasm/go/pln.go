package main

import (
	"errors"

	"github.com/extism/go-pdk"
)

// The pln host functions (namespace extism:host/user). Every argument and
// result is an offset of an Extism memory block.

//go:wasmimport extism:host/user pln_call
func plnCall(uri, input uint64) uint64

//go:wasmimport extism:host/user pln_caller
func plnCaller() uint64

//go:wasmimport extism:host/user pln_log
func plnLog(level, msg uint64)

// Log levels for pln_log.
const (
	LevelDebug = 0
	LevelInfo  = 1
	LevelWarn  = 2
	LevelError = 3
)

// Call calls uri (pln://seed/<name>/<fn>) with input. The host answers with
// a block whose first byte is 0 (the rest is the output) or 1 (the rest is
// the error message).
func Call(uri string, input []byte) ([]byte, error) {
	u := pdk.AllocateString(uri)
	defer u.Free()
	in := pdk.AllocateBytes(input)
	defer in.Free()
	res := pdk.FindMemory(plnCall(u.Offset(), in.Offset()))
	defer res.Free()
	b := res.ReadBytes()
	if len(b) == 0 {
		return nil, errors.New("pln_call gave an empty answer")
	}
	if b[0] != 0 {
		return nil, errors.New(string(b[1:]))
	}
	return b[1:], nil
}

// Caller is what pln_caller describes.
type Caller struct {
	Key        string            `json:"key"`
	Props      map[string]string `json:"props"`
	Chain      []string          `json:"chain"`
	DeadlineMS int64             `json:"deadline_ms"`
}

// CallerJSON returns the caller's description as the host wrote it.
func CallerJSON() []byte {
	m := pdk.FindMemory(plnCaller())
	defer m.Free()
	return m.ReadBytes()
}

// Log writes msg to the host's log at level.
func Log(level int, msg string) {
	m := pdk.AllocateString(msg)
	defer m.Free()
	plnLog(uint64(level), m.Offset())
}
