package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/lambdatest"
	"github.com/cebulk/cebulk/internal/ledger"
)

// childOf returns the pid of the (first) child process of pid.
func childOf(tb testing.TB, pid int) int {
	tb.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(strings.Fields(string(b))[0])
			return child
		}
	}
	tb.Fatalf("no child of process %d", pid)
	return 0
}

// vmHWM reads a process's peak resident set (VmHWM) in bytes.
func vmHWM(tb testing.TB, pid int) int64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no VmHWM for process %d", pid)
	return 0
}

// BenchmarkCollectRSS collects one day of activities of each size with the
// real ExportFunction bootstrap under the runtime emulator (CE emulator,
// moto), one fresh process per size, and reports the bootstrap process's
// peak resident set (VmHWM from /proc) after the collect: what Lambda
// bills as "Max Memory Used". The 4 GiB day runs with CEBULK_BENCH_HUGE=1.
func BenchmarkCollectRSS(b *testing.B) {
	sizes := []struct {
		name string
		size int64
	}{{"10MiB", 10 << 20}, {"100MiB", 100 << 20}, {"1GiB", 1 << 30}}
	if os.Getenv("CEBULK_BENCH_HUGE") != "" {
		sizes = append(sizes, struct {
			name string
			size int64
		}{"4GiB", 4 << 30})
	}
	for _, s := range sizes {
		b.Run(s.name, func(b *testing.B) {
			x := startE2EFull(b, benchEnv(), lambdatest.StackOptions{}, cetest.Options{DownloadFormat: "jsonl"}, 900*time.Second)
			dayT := x.today.AddDate(0, 0, -2)
			day := dayT.Format(time.DateOnly)
			x.fake.SeedGenerated("activities", cetest.SampleActivitiesBytes(1, s.size, dayT, dayT.AddDate(0, 0, 1)))
			var peak int64
			var took time.Duration
			for range b.N {
				run := x.invoke(b, map[string]any{"action": "run", "objects": []string{"activities"}, "from": day, "to": x.today.AddDate(0, 0, -1).Format(time.DateOnly)})
				if run.Run == nil || len(run.Run.Started) != 1 {
					b.Fatalf("run = %+v", run.Run)
				}
				t0 := time.Now()
				res := x.invoke(b, map[string]string{"action": "collect", "jobId": "export-activities-" + day})
				took = time.Since(t0)
				if res.Collect == nil || res.Collect.Status != ledger.StatusDone {
					b.Fatalf("collect = %+v", res.Collect)
				}
				peak = max(peak, vmHWM(b, childOf(b, x.fn.PID())))
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
			b.ReportMetric(float64(s.size)/1e6/took.Seconds(), "MB/s")
			b.Logf("%s: bootstrap peak RSS %.1f MiB, collect %.1f MB/s (moto-bound)", s.name, float64(peak)/(1<<20), float64(s.size)/1e6/took.Seconds())
		})
	}
}

// benchEnv passes CEBULK_BENCH_GODEBUG / CEBULK_BENCH_GOGC to the bootstrap
// as GODEBUG / GOGC, to compare the runtime's settings in one place.
func benchEnv() map[string]string {
	env := map[string]string{}
	for _, k := range []string{"GODEBUG", "GOGC", "GOMEMLIMIT"} {
		if v := os.Getenv("CEBULK_BENCH_" + k); v != "" {
			env[k] = v
		}
	}
	return env
}
