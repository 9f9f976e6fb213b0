package oplog

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HLC is a hybrid logical clock timestamp: the high 48 bits are Unix
// milliseconds, the low 16 bits a logical counter that orders events within
// one millisecond. Comparing two HLCs as integers compares them as times.
type HLC uint64

const logicalBits = 16

// MaxLogical is the largest logical counter; past it the clock borrows the
// next millisecond rather than wrap.
const MaxLogical = 1<<logicalBits - 1

// NewHLC packs a wall time in Unix milliseconds and a logical counter.
func NewHLC(wallMillis int64, logical uint16) HLC {
	return HLC(uint64(wallMillis)<<logicalBits | uint64(logical))
}

// HLCAt is the smallest HLC at wall time t.
func HLCAt(t time.Time) HLC { return NewHLC(t.UnixMilli(), 0) }

// Wall returns the physical part in Unix milliseconds.
func (h HLC) Wall() int64 { return int64(h >> logicalBits) }

// Logical returns the logical counter.
func (h HLC) Logical() uint16 { return uint16(h & MaxLogical) }

// Time returns the physical part as a time.
func (h HLC) Time() time.Time { return time.UnixMilli(h.Wall()).UTC() }

// String renders the HLC as RFC 3339 time with milliseconds plus the counter.
func (h HLC) String() string {
	return fmt.Sprintf("%s+%d", h.Time().Format("2006-01-02T15:04:05.000Z"), h.Logical())
}

// ParseHLC reads an HLC as printed by String, as RFC 3339 time, or as the raw
// integer.
func ParseHLC(s string) (HLC, error) {
	if raw, err := strconv.ParseUint(s, 10, 64); err == nil {
		return HLC(raw), nil
	}
	// The counter follows the last '+', but so does a positive zone offset
	// ("+01:00"): only an all-digit suffix is a counter.
	base, logical := s, uint64(0)
	if i := strings.LastIndexByte(s, '+'); i > 0 {
		if n, err := strconv.ParseUint(s[i+1:], 10, 16); err == nil {
			base, logical = s[:i], n
		}
	}
	t, err := time.Parse(time.RFC3339Nano, base)
	if err != nil || t.UnixMilli() < 0 {
		return 0, fmt.Errorf("time %q is neither an HLC nor RFC 3339 after 1970 (e.g. 2026-11-21T13:00:00Z)", s)
	}
	return NewHLC(t.UnixMilli(), uint16(logical)), nil
}

// ErrClockAhead is returned by Clock.Update when a remote timestamp is further
// ahead of the local physical clock than the clock's maximum offset.
var ErrClockAhead = errors.New("remote clock is ahead of ours by more than the maximum offset")

// Clock issues HLC timestamps. It is safe for concurrent use. Its physical time
// source is injected so that tests and replays control it.
type Clock struct {
	now       func() time.Time
	maxOffset time.Duration

	mu   sync.Mutex
	last HLC
}

// NewClock returns a clock reading physical time from now. Remote timestamps
// more than maxOffset ahead of now are refused by Update.
func NewClock(now func() time.Time, maxOffset time.Duration) *Clock {
	return &Clock{now: now, maxOffset: maxOffset}
}

// Physical returns the clock's physical reading as an HLC with a zero counter.
func (c *Clock) Physical() HLC { return HLCAt(c.now()) }

// Now returns a timestamp greater than every one this clock has issued or
// observed.
func (c *Clock) Now() HLC {
	pt := c.Physical()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = next(c.last, pt)
	return c.last
}

// Update observes a remote timestamp so that later local ones order after it.
// A timestamp more than the maximum offset ahead of the physical clock is not
// observed — one bad clock must not drag every node into the future — and
// ErrClockAhead is returned; the caller still stores the op that carried it.
func (c *Clock) Update(remote HLC) error {
	pt := c.Physical()
	if remote.Wall()-pt.Wall() > c.maxOffset.Milliseconds() {
		return fmt.Errorf("%w: remote %s, local %s", ErrClockAhead, remote, pt)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote > c.last {
		c.last = remote
	}
	return nil
}

// next returns the smallest HLC after last that is not behind physical time.
func next(last, physical HLC) HLC {
	if physical > last {
		return physical
	}
	if last.Logical() == MaxLogical {
		return NewHLC(last.Wall()+1, 0)
	}
	return last + 1
}
