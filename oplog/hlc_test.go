package oplog

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a physical clock the test moves by hand, forwards or back.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 21, 13, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const testMaxOffset = 5 * time.Second

func TestHLCPacking(t *testing.T) {
	cases := []struct {
		wall    int64
		logical uint16
	}{
		{0, 0}, {0, MaxLogical}, {1, 0}, {1_763_730_000_000, 42}, {1<<48 - 1, MaxLogical},
	}
	for _, c := range cases {
		h := NewHLC(c.wall, c.logical)
		if h.Wall() != c.wall || h.Logical() != c.logical {
			t.Errorf("NewHLC(%d, %d) unpacks to (%d, %d)", c.wall, c.logical, h.Wall(), h.Logical())
		}
	}
	// Integer order is time order: any later millisecond beats any counter.
	if !(NewHLC(10, MaxLogical) < NewHLC(11, 0)) || !(NewHLC(10, 1) < NewHLC(10, 2)) {
		t.Error("HLC integer order is not (wall, logical) order")
	}
	at := time.Date(2026, 11, 21, 13, 0, 0, 123_456_789, time.UTC)
	if h := HLCAt(at); h.Logical() != 0 || !h.Time().Equal(at.Truncate(time.Millisecond)) {
		t.Errorf("HLCAt(%v) = %v", at, h)
	}
}

func TestNowIsStrictlyIncreasing(t *testing.T) {
	fc := newFakeClock()
	c := NewClock(fc.now, testMaxOffset)
	last := c.Now()
	if last != HLCAt(fc.now()) {
		t.Fatalf("first Now = %v, want the physical time %v", last, HLCAt(fc.now()))
	}
	step := func(what string) {
		t.Helper()
		h := c.Now()
		if h <= last {
			t.Fatalf("%s: Now went from %v to %v", what, last, h)
		}
		last = h
	}
	for range 100 {
		step("clock standing still")
	}
	fc.add(-time.Hour)
	for range 100 {
		step("clock an hour behind")
	}
	if last.Wall() != HLCAt(newFakeClock().now()).Wall() {
		t.Errorf("a clock going backwards moved the wall part: %v", last)
	}
	fc.add(time.Hour + time.Millisecond)
	step("clock moving on")
	if last != HLCAt(fc.now()) {
		t.Errorf("once physical time passes the last HLC, Now = %v, want physical %v", last, HLCAt(fc.now()))
	}
}

// Past 65535 events in one millisecond the counter cannot grow; the clock
// borrows the next millisecond rather than wrap back to an earlier HLC.
func TestNowBorrowsTheNextMillisecond(t *testing.T) {
	fc := newFakeClock()
	c := NewClock(fc.now, testMaxOffset)
	start := c.Now()
	var h HLC
	for range MaxLogical {
		h = c.Now()
	}
	if h.Wall() != start.Wall() || h.Logical() != MaxLogical {
		t.Fatalf("after %d events: %v, want the same ms with counter %d", MaxLogical, h, MaxLogical)
	}
	if h2 := c.Now(); h2 != NewHLC(start.Wall()+1, 0) {
		t.Fatalf("on overflow: %v, want the next ms with counter 0", h2)
	}
	// When the physical clock reaches the borrowed ms, time still advances.
	fc.add(time.Millisecond)
	if h3 := c.Now(); h3 != NewHLC(start.Wall()+1, 1) {
		t.Errorf("physical time catching up: %v, want next ms +1", h3)
	}
}

func TestUpdateWithinMaxOffset(t *testing.T) {
	fc := newFakeClock()
	c := NewClock(fc.now, testMaxOffset)
	for _, ahead := range []time.Duration{time.Second, testMaxOffset} {
		remote := NewHLC(fc.now().Add(ahead).UnixMilli(), 9)
		if err := c.Update(remote); err != nil {
			t.Fatalf("remote %v ahead: Update = %v", ahead, err)
		}
		if h := c.Now(); h <= remote {
			t.Errorf("remote %v ahead: Now = %v, not after remote %v", ahead, h, remote)
		}
	}
	// A remote behind us is observed but changes nothing.
	before := c.Now()
	if err := c.Update(NewHLC(fc.now().Add(-time.Minute).UnixMilli(), 0)); err != nil {
		t.Fatal(err)
	}
	if h := c.Now(); h != before+1 {
		t.Errorf("an old remote moved the clock: %v after %v", h, before)
	}
}

func TestUpdateRefusesAClockFarAhead(t *testing.T) {
	fc := newFakeClock()
	c := NewClock(fc.now, testMaxOffset)
	for _, ahead := range []time.Duration{testMaxOffset + time.Millisecond, time.Hour} {
		remote := NewHLC(fc.now().Add(ahead).UnixMilli(), 0)
		err := c.Update(remote)
		if !errors.Is(err, ErrClockAhead) {
			t.Fatalf("remote %v ahead: Update = %v, want ErrClockAhead", ahead, err)
		}
		if !strings.Contains(err.Error(), remote.String()) {
			t.Errorf("error does not name the remote time: %v", err)
		}
		if h := c.Now(); h >= remote || h.Wall() != fc.now().UnixMilli() {
			t.Errorf("remote %v ahead: the refused timestamp moved the clock to %v", ahead, h)
		}
	}
}

// Many goroutines share one clock while physical time moves under them:
// every HLC handed out is unique and each goroutine sees its own increase.
func TestClockConcurrentUse(t *testing.T) {
	fc := newFakeClock()
	c := NewClock(fc.now, testMaxOffset)
	const workers, each = 8, 2000
	got := make([][]HLC, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				switch i % 100 {
				case 0:
					fc.add(time.Millisecond)
				case 50:
					fc.add(-2 * time.Millisecond)
				case 75:
					_ = c.Update(c.Physical() + 3)
				}
				got[w] = append(got[w], c.Now())
			}
		})
	}
	wg.Wait()
	seen := make(map[HLC]bool, workers*each)
	for w, hs := range got {
		for i, h := range hs {
			if i > 0 && h <= hs[i-1] {
				t.Fatalf("worker %d: Now went from %v to %v", w, hs[i-1], h)
			}
			if seen[h] {
				t.Fatalf("HLC %v issued twice", h)
			}
			seen[h] = true
		}
	}
}

func TestParseHLC(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	maxWall := time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli()
	for range 1000 {
		h := NewHLC(r.Int64N(maxWall+1), uint16(r.UintN(MaxLogical+1)))
		for _, s := range []string{h.String(), strconv.FormatUint(uint64(h), 10)} {
			if got, err := ParseHLC(s); err != nil || got != h {
				t.Fatalf("ParseHLC(%q) = %v, %v; want %v", s, got, err, h)
			}
		}
	}
	at := time.Date(2026, 11, 21, 13, 0, 0, 0, time.UTC)
	for s, want := range map[string]HLC{
		"2026-11-21T13:00:00Z":       HLCAt(at),
		"2026-11-21T08:00:00-05:00":  HLCAt(at),
		"2026-11-21T13:00:00.25Z":    HLCAt(at.Add(250 * time.Millisecond)),
		"2026-11-21T13:00:00.000Z+7": HLCAt(at) + 7,
		"2026-11-21T13:00:00Z+65535": HLCAt(at) + MaxLogical,
		"0":                          0,
		"18446744073709551615":       HLC(1<<64 - 1),
		"1970-01-01T00:00:00.001Z+0": NewHLC(1, 0),
		"116065740000000000":         116065740000000000,
		"2026-11-21T13:00:00.0009Z":  HLCAt(at), // sub-millisecond is dropped
	} {
		if got, err := ParseHLC(s); err != nil || got != want {
			t.Errorf("ParseHLC(%q) = %v (%d), %v; want %v", s, got, uint64(got), err, want)
		}
	}
	for _, s := range []string{
		"", " ", "now", "yesterday", "12abc", "-5", "0x10", "1e9", "18446744073709551616",
		"2026-11-21", "2026-13-01T00:00:00Z", "2026-11-21 13:00:00", "2026-11-21T13:00:00Z+",
		"2026-11-21T13:00:00Z+65536", "2026-11-21T13:00:00Z+-1", "+5",
	} {
		h, err := ParseHLC(s)
		if err == nil {
			t.Errorf("ParseHLC(%q) = %v, want an error", s, h)
			continue
		}
		if !strings.Contains(err.Error(), "RFC 3339") || !strings.Contains(err.Error(), strconv.Quote(s)) {
			t.Errorf("ParseHLC(%q) error does not quote the input and say what is expected: %v", s, err)
		}
	}
}

// Cases an earlier ParseHLC got wrong: positive zone offsets, times before
// 1970, and junk after the counter.
func TestParseHLCOffsetsAndJunk(t *testing.T) {
	at := HLCAt(time.Date(2026, 11, 21, 13, 0, 0, 0, time.UTC))
	for s, want := range map[string]HLC{
		"2026-11-21T14:00:00+01:00":     at,
		"2026-11-21T13:00:00.000+00:00": at,
		"2026-11-21T14:00:00+01:00+3":   at + 3,
	} {
		if got, err := ParseHLC(s); err != nil || got != want {
			t.Errorf("ParseHLC(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"1969-12-31T23:59:59Z", "2026-11-21T13:00:00Z+5abc", "2026-11-21T13:00:00Z+ 5"} {
		if h, err := ParseHLC(s); err == nil {
			t.Errorf("ParseHLC(%q) = %v (%d), want an error", s, h, uint64(h))
		}
	}
}
