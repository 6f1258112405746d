package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// stopWithParent makes a server started by `go run` stop when the go command stops. `go run`
// builds the binary into a go-build temporary folder and runs it as a child; killing the go
// command by its PID (as a script that started it would) used to leave this child serving on
// its ports. Only that case is handled: a binary started any other way keeps running when its
// parent exits, as a server started with nohup or from a shell that closes must.
func stopWithParent(log *slog.Logger) {
	exe, err := os.Executable()
	if err != nil || !strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return
	}
	ppid := os.Getppid()
	parent, err := os.Readlink("/proc/" + strconv.Itoa(ppid) + "/exe")
	if err != nil || filepath.Base(parent) != "go" {
		return
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGTERM), 0, 0, 0); err != nil {
		log.Warn("cannot ask to stop with go run", "err", err)
		return
	}
	if os.Getppid() != ppid { // the go command ended before the request took effect
		unix.Kill(os.Getpid(), unix.SIGTERM)
	}
	log.Debug("started by go run: stops when the go command stops")
}
