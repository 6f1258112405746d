package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcStats are a process's resource figures from /proc.
type ProcStats struct {
	CPU     time.Duration // user + system time
	RSS     int64         // resident set size now, bytes
	PeakRSS int64         // the kernel's high-water mark since the process started, bytes
}

// Sub returns the CPU used between two readings, with the later memory figures.
func (p *ProcStats) Sub(before *ProcStats) ProcStats {
	return ProcStats{CPU: p.CPU - before.CPU, RSS: p.RSS, PeakRSS: p.PeakRSS}
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc's tick counts on every architecture
// Go supports.
const clockTicks = 100

// ReadProc reads a process's CPU and memory from /proc (Linux only).
func ReadProc(pid int) (*ProcStats, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("loadgen: read server stats: %w", err)
	}
	// The command name may hold spaces; fields start after its closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, fmt.Errorf("loadgen: unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("loadgen: short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of the whole line
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	ps := &ProcStats{CPU: time.Duration(utime+stime) * time.Second / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, fmt.Errorf("loadgen: read server memory: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			ps.RSS = kb << 10
		case "VmHWM":
			ps.PeakRSS = kb << 10
		}
	}
	return ps, nil
}
