package lambdalocal

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill the emulator when this process dies,
// however it dies (a demo killed by SIGPIPE or SIGKILL runs no cleanup), so
// no emulator is left holding its ports.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
