package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/cebulk/cebulk/internal/awsenv/defaultchain"
	"github.com/cebulk/cebulk/internal/lambdaenv"
	"github.com/cebulk/cebulk/internal/logging"
)

// This file holds what the operator commands (export, import) share: the
// functions' environment, the clients built from it, and flags that default
// to an environment variable.

// flagOrEnv returns the value of the string flag name when it was given on
// the command line, else the environment variable env when it is set, else
// def. source names where the value came from, for error messages.
func flagOrEnv(fs *flag.FlagSet, name, env, def string) (value, source string) {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	switch {
	case given:
		return fs.Lookup(name).Value.String(), "-" + name
	case os.Getenv(env) != "":
		return os.Getenv(env), env
	}
	return def, "the default"
}

// parseWithPositional parses args with fs and returns the one positional
// argument allowed (or ""), so that flags may come before or after it.
func parseWithPositional(fs *flag.FlagSet, args []string) (string, error) {
	if err := parseFlagsAllowingArgs(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", nil
	}
	pos := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return "", err
	}
	return pos, nil
}

// parseFlagsAllowingArgs is parseFlags without the check for arguments
// left over.
func parseFlagsAllowingArgs(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return &usageError{fmt.Errorf("%s: %v", fs.Name(), err)}
	}
	return err
}

// opsEnv reads the environment every function reads (CE_BASE_URL,
// CE_SECRET_ID, DATA_BUCKET, LOG_LEVEL), with the command's -log-level
// overriding LOG_LEVEL. Unlike the functions, the commands log at warn
// unless told otherwise: their own output says what happened.
func opsEnv(fs *flag.FlagSet) (lambdaenv.Common, error) {
	var problems lambdaenv.Problems
	// LOG_LEVEL is read below, where -log-level may override it.
	common := lambdaenv.ReadCommon(func(k string) string {
		if k == "LOG_LEVEL" {
			return ""
		}
		return os.Getenv(k)
	}, &problems)
	if err := problems.Err(); err != nil {
		return common, fmt.Errorf("%v (the commands read the functions' environment; see README, Configuration)", err)
	}
	level, source := flagOrEnv(fs, "log-level", "LOG_LEVEL", "warn")
	l, err := logging.ParseLevel(level)
	if err != nil {
		return common, &usageError{fmt.Errorf("%s=%q: want debug, info, warn or error", source, level)}
	}
	common.LogLevel = l
	return common, nil
}

// newOpsClients builds the same clients as lambdaenv.NewClients, except that
// the pipeline's logs go to stderr as text (the functions log JSON to
// stdout, which is the commands' own output) and slog's default is left
// alone.
func newOpsClients(ctx context.Context, c lambdaenv.Common, stderr io.Writer) (*lambdaenv.Clients, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	cfg, err := defaultchain.Load(ctx)
	if err != nil {
		return nil, err
	}
	return lambdaenv.Build(c, cfg, log), nil
}

// sleep waits d or until ctx ends, reporting whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// checkWaitPoll checks the -wait and -poll flags of a command.
func checkWaitPoll(cmd string, wait, poll time.Duration) error {
	switch {
	case wait < 0:
		return &usageError{fmt.Errorf("%s: -wait must not be negative (0: do not wait)", cmd)}
	case poll <= 0:
		return &usageError{fmt.Errorf("%s: -poll must be positive", cmd)}
	}
	return nil
}

// plural returns "1 job", "2 jobs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
