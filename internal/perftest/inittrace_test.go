package perftest

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// maxInitAllocs bounds the allocations of any cebulk package's
// initialisation. Counts are deterministic where times are not: a regular
// expression with a bounded repetition compiled in a package variable (an
// object or run id pattern) cost 700–1700 allocations and 1–2.5 ms of every
// cold start, and lambdaenv's secret ARN pattern 184 (all plain checks now;
// the largest left is internal/mixpanel's, 4).
const maxInitAllocs = 50

var initLine = regexp.MustCompile(`^init (github\.com/cebulk/cebulk/\S+) @\S+ ms, \S+ ms clock, \d+ bytes, (\d+) allocs$`)

// TestInitAllocs runs each function's production binary with
// GODEBUG=inittrace=1 and checks what cebulk's own packages allocate
// before main.
func TestInitAllocs(t *testing.T) {
	dir := t.TempDir()
	for _, f := range functions {
		if !strings.HasPrefix(f.pkg, "./functions/") {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			bin := buildProduction(t, f.pkg, runtimeArch(), dir)
			cmd := exec.Command(bin)
			// Nothing answers on port 1: main fails at once, after every init.
			cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1", "AWS_LAMBDA_RUNTIME_API=127.0.0.1:1",
				"AWS_REGION=us-east-1", "CE_SECRET_ID=cebulk", "DATA_BUCKET=cebulk-test",
				"EXPORT_FUNCTION_NAME=export", "IMPORT_FUNCTION_NAME=import")
			cmd.WaitDelay = 10 * time.Second
			out, _ := cmd.CombinedOutput()
			seen := 0
			for line := range strings.SplitSeq(string(out), "\n") {
				m := initLine.FindStringSubmatch(line)
				if m == nil {
					continue
				}
				seen++
				if n, _ := strconv.Atoi(m[2]); n > maxInitAllocs {
					t.Errorf("%s allocates %d times at initialisation, more than %d: %s", m[1], n, maxInitAllocs, line)
				}
			}
			if seen == 0 {
				t.Fatalf("no inittrace line of a cebulk package:\n%s", out)
			}
		})
	}
}
