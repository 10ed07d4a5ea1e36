package podattest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// DefaultProcRoot is where procfs is mounted.
const DefaultProcRoot = "/proc"

// maxProcFile bounds what is read of a file under /proc: a cgroup file
// has one line per hierarchy, a stat line a few hundred bytes.
const maxProcFile = 64 << 10

// procFS reads processes from a procfs mounted at root.
type procFS struct {
	root string
}

// process is what was read of a process: its start time, which tells it
// apart from a later process given the same PID, and its cgroup file.
type process struct {
	startTime uint64
	cgroup    []byte
}

// read reads the cgroup file of pid, between two reads of its start time
// that must agree. It returns an error wrapping ErrNoProcess if the
// process is gone, a zombie, or was replaced by another of the same PID
// while it was read.
func (p procFS) read(pid int32) (process, error) {
	start, err := p.startTime(pid)
	if err != nil {
		return process{}, err
	}
	cgroup, err := p.file(pid, "cgroup")
	if err != nil {
		return process{}, err
	}
	if err := p.same(pid, start); err != nil {
		return process{}, err
	}
	return process{startTime: start, cgroup: cgroup}, nil
}

// same checks that pid is still the process that started at start.
func (p procFS) same(pid int32, start uint64) error {
	now, err := p.startTime(pid)
	if err != nil {
		return err
	}
	if now != start {
		return fmt.Errorf("%w: PID %d was reused: the process that started at tick %d exited and another started at tick %d", ErrNoProcess, pid, start, now)
	}
	return nil
}

// startTime returns field 22 of /proc/<pid>/stat, the process's start
// time in clock ticks after boot.
func (p procFS) startTime(pid int32) (uint64, error) {
	b, err := p.file(pid, "stat")
	if err != nil {
		return 0, err
	}
	state, start, err := parseStat(string(b))
	if err != nil {
		return 0, fmt.Errorf("podattest: %s/%d/stat: %w", p.root, pid, err)
	}
	if state == "Z" || state == "X" {
		return 0, fmt.Errorf("%w: PID %d has exited (state %s)", ErrNoProcess, pid, state)
	}
	return start, nil
}

// parseStat returns the state (field 3) and the start time (field 22) of a
// /proc/<pid>/stat line. Field 2 is the command in parentheses, which may
// itself hold spaces and parentheses: the fields after it begin after the
// last ')'.
func parseStat(line string) (state string, start uint64, err error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return "", 0, errors.New("no command in parentheses")
	}
	fields := strings.Fields(line[i+1:])
	const stateField, startField = 3, 22 // numbered from 1, as in proc(5)
	if len(fields) < startField-2 {
		return "", 0, fmt.Errorf("%d fields, want at least %d", len(fields)+2, startField)
	}
	start, err = strconv.ParseUint(fields[startField-3], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("start time: %w", err)
	}
	return fields[stateField-3], start, nil
}

// file reads <root>/<pid>/<name>. A process that is gone is ErrNoProcess.
func (p procFS) file(pid int32, name string) ([]byte, error) {
	path := strconv.Itoa(int(pid)) + "/" + name
	f, err := os.OpenInRoot(p.root, path)
	if err != nil {
		return nil, p.readError(pid, path, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxProcFile+1))
	_ = f.Close() // read only: a close reports nothing the read did not
	if err != nil {
		return nil, p.readError(pid, path, err)
	}
	if len(b) > maxProcFile {
		return nil, fmt.Errorf("podattest: %s/%s is over %d bytes", p.root, path, maxProcFile)
	}
	return b, nil
}

// readError tells a process that is gone (procfs answers ENOENT, or ESRCH
// once the process has exited under an open file) from a failure to read.
func (p procFS) readError(pid int32, path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%w: PID %d has exited", ErrNoProcess, pid)
	}
	return fmt.Errorf("podattest: read %s/%s: %w", p.root, path, err)
}
