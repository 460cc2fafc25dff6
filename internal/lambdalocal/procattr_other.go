//go:build !linux

package lambdalocal

import "os/exec"

// dieWithParent is a no-op where the kernel offers no parent-death signal;
// Function.Close still stops the emulator on a normal exit.
func dieWithParent(cmd *exec.Cmd) {}
