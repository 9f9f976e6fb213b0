package daemon

import (
	"errors"
	"fmt"
)

// Errors callers test with errors.Is. Their own text never reaches a user:
// each is wrapped by a message that says what happened and what to do.
var (
	ErrNoCluster  = errors.New("no cluster")
	ErrHasCluster = errors.New("cluster exists")
	ErrRefused    = errors.New("refused")
	ErrToken      = errors.New("bad invite token")
)

// userError is a message for a person that is also one of the sentinels.
type userError struct {
	kind error
	msg  string
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.kind }

// failf returns an error that reads as the formatted message and matches
// kind with errors.Is.
func failf(kind error, format string, args ...any) error {
	return &userError{kind: kind, msg: fmt.Sprintf(format, args...)}
}
