package daemon

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func TestGCPercentGivesTheLiveHeapItsHeadroom(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, gcMaxPercent},
		{8 << 20, gcMaxPercent}, // a small heap: capped
		{32 << 20, 200},         // 64 MiB of room is 200%
		{gcHeadroom * 100 / 150, 150},
		{64 << 20, 100}, // Go's default
		{1 << 30, 100},  // never below it
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

func TestPaceGCRestoresTheSettingWhenTheLastNodeStops(t *testing.T) {
	t.Setenv("GOGC", "") // restored when the test ends
	os.Unsetenv("GOGC")
	defer debug.SetGCPercent(debug.SetGCPercent(123))
	a, b := paceGC(), paceGC()
	if p := gogc(); p < 100 || p > gcMaxPercent || p == 123 {
		t.Errorf("while nodes run GOGC is %d, want it set within [100, %d]", p, gcMaxPercent)
	}
	a()
	a() // a second release is harmless
	if p := gogc(); p == 123 {
		t.Errorf("with one node still running GOGC went back to %d", p)
	}
	b()
	if p := gogc(); p != 123 {
		t.Errorf("after the last node stopped GOGC is %d, want the 123 from before", p)
	}
}

func TestPaceGCLeavesAUsersGOGCAlone(t *testing.T) {
	t.Setenv("GOGC", "150")
	defer debug.SetGCPercent(debug.SetGCPercent(123))
	release := paceGC()
	if p := gogc(); p != 123 {
		t.Errorf("with GOGC set by the user the node changed it to %d", p)
	}
	release()
}
