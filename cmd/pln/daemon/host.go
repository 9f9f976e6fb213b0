package daemon

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// hostFigures is what this machine has and uses, as load reports carry it.
type hostFigures struct {
	cpuMilli, cpuUsedMilli int64
	memBytes, memUsedBytes int64
}

// sampleHost reads the machine's capacity and use. Where /proc is missing
// (not Linux) it reports CPUs only; placement then treats memory as unknown.
func sampleHost() hostFigures {
	h := hostFigures{cpuMilli: int64(runtime.NumCPU()) * 1000}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if l, err := strconv.ParseFloat(f[0], 64); err == nil {
				h.cpuUsedMilli = min(int64(l*1000), h.cpuMilli)
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var total, avail int64
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "MemTotal:":
				total = kb << 10
			case "MemAvailable:":
				avail = kb << 10
			}
		}
		h.memBytes, h.memUsedBytes = total, max(total-avail, 0)
	}
	return h
}
