package perftest

import "runtime"

func runtimeArch() string { return runtime.GOARCH }
