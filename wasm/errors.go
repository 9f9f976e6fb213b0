package wasm

import (
	"errors"
	"fmt"
	"strings"
)

// Errors a call can fail with. Each is wrapped with what happened (the seed,
// the function, the limit), so test them with errors.Is.
var (
	// ErrOverloaded: every instance the seed's concurrency allows is busy.
	// The call did not start; the caller should try another replica.
	ErrOverloaded = errors.New("seed is at its concurrency limit")
	// ErrTimeout: the call ran past its timeout or its caller's deadline
	// and was stopped.
	ErrTimeout = errors.New("call timed out")
	// ErrOutputTooLarge: the guest answered with more than MaxOutputBytes.
	ErrOutputTooLarge = errors.New("output too large")
	// ErrInputTooLarge: the input is over MaxInputBytes; the call did not
	// start.
	ErrInputTooLarge = errors.New("input too large")
	// ErrNoFunction: the seed exports no callable function by that name.
	ErrNoFunction = errors.New("no such function")
	// ErrCycle: the call chain reached MaxDepth, usually because seeds call
	// each other in a loop.
	ErrCycle = errors.New("call chain too deep")
	// ErrTrap: the guest crashed (a wasm trap, a panic, an exit, memory
	// exhausted at its cap).
	ErrTrap = errors.New("guest crashed")
	// ErrDigest: the code handed to Load does not hash to the seed's digest.
	ErrDigest = errors.New("code does not match its digest")
	// ErrClosed: the module or host is closed.
	ErrClosed = errors.New("closed")
)

// chainText renders a call chain for an error message.
func chainText(chain []string) string {
	if len(chain) == 0 {
		return "no chain"
	}
	return strings.Join(chain, " → ")
}

// firstLine keeps the first line of a wazero error; the rest is its stack.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// sizeText renders a byte count the way the CLI takes it (64MiB).
func sizeText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
