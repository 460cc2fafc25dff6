// Command cebulk is the operator CLI of cebulk: the local demo (the whole
// flow on one machine), the CE emulator for local work, and one-off export
// runs, backfills and imports with the same pipeline code as the functions.
//
// Usage:
//
//	cebulk <command> [flags]
//
// Run "cebulk help" for the list of commands and "cebulk <command> -h" for
// the flags of one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// A subcommand runs with the process's context (cancelled on SIGINT or
// SIGTERM), its arguments after the command name, and the standard outputs.
// It returns flag.ErrHelp after printing its usage for -h, and a
// *usageError for bad arguments.
type subcommand struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// subcommands lists every command. A new command lives in its own file and
// adds one line here.
var subcommands = map[string]subcommand{
	"emulator": {"serve the in-memory CE bulk API emulator on 127.0.0.1", runEmulator},
	"demo":     {"run export, webhook callback and import end to end on this machine", runDemo},
	"export":   {"run an export or a backfill with the pipeline code and wait for its jobs", runExport},
	"import":   {"import an object already in S3 with the pipeline code and wait for its report", runImport},
	"runs":     {"list the backfill runs, or show one's progress and ETA", runRuns},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// run dispatches args[0] to its subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return &usageError{errors.New("no command given")}
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "-help" || name == "--help" {
		usage(stdout)
		return nil
	}
	cmd, ok := subcommands[name]
	if !ok {
		usage(stderr)
		return &usageError{fmt.Errorf("unknown command %q", name)}
	}
	return cmd.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: cebulk <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(subcommands))
	for name := range subcommands {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-10s %s\n", name, subcommands[name].summary)
	}
	fmt.Fprintln(w, "\nRun \"cebulk <command> -h\" for the flags of a command.")
}

// usageError reports bad command-line arguments (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// exitCode reports err on stderr and maps it to the process exit status:
// 0 for success or -h, 2 for usage errors, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "cebulk:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "cebulk:", err)
		return 1
	}
}

// parseFlags parses args with fs, mapping errors to flag.ErrHelp or a
// *usageError. fs must use flag.ContinueOnError.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		if fs.NArg() > 0 {
			return &usageError{fmt.Errorf("%s: unexpected arguments %q", fs.Name(), fs.Args())}
		}
		return nil
	case errors.Is(err, flag.ErrHelp):
		return err
	default:
		return &usageError{fmt.Errorf("%s: %v", fs.Name(), err)}
	}
}
