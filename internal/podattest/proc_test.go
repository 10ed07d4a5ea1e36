package podattest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// fakeProc is a procfs tree in a temporary directory: a process is a
// directory with a stat and a cgroup file.
type fakeProc struct{ root string }

func newFakeProc(t testing.TB) fakeProc { return fakeProc{root: t.TempDir()} }

// add writes process pid, started at tick start, in state (R, S, Z...),
// with that cgroup file.
func (p fakeProc) add(t testing.TB, pid int32, start uint64, state, cgroup string) {
	t.Helper()
	dir := filepath.Join(p.root, strconv.Itoa(int(pid)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.setStat(t, pid, start, state)
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644); err != nil {
		t.Fatal(err)
	}
}

// setStat rewrites the stat file of pid: a process that is given the PID
// of one that exited has another start time.
func (p fakeProc) setStat(t testing.TB, pid int32, start uint64, state string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(p.root, strconv.Itoa(int(pid)), "stat"), []byte(statLine(pid, "app (v2) x", state, start)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// remove makes pid exit.
func (p fakeProc) remove(t testing.TB, pid int32) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(p.root, strconv.Itoa(int(pid)))); err != nil {
		t.Fatal(err)
	}
}

// statLine is a /proc/<pid>/stat line, with start time in field 22.
func statLine(pid int32, comm, state string, start uint64) string {
	return fmt.Sprintf("%d (%s) %s 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 1048576 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n", pid, comm, state, start)
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name      string
		line      string
		wantState string
		wantStart uint64
		wantErr   string
	}{
		{name: "a process", line: statLine(42, "sleep", "S", 1234567), wantState: "S", wantStart: 1234567},
		{name: "a command with spaces and parentheses", line: statLine(42, ") R 1 (x", "R", 99), wantState: "R", wantStart: 99},
		{name: "a zombie", line: statLine(42, "app", "Z", 7), wantState: "Z", wantStart: 7},
		{name: "no command", line: "42 S 1 1", wantErr: "no command in parentheses"},
		{name: "too few fields", line: "42 (app) S 1 1 1", wantErr: "6 fields, want at least 22"},
		{name: "start time not a number", line: strings.Replace(statLine(42, "app", "S", 5), " 5 ", " x ", 1), wantErr: `start time: strconv.ParseUint: parsing "x": invalid syntax`},
		{name: "empty", line: "", wantErr: "no command in parentheses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, start, err := parseStat(tt.line)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("parseStat error = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if state != tt.wantState || start != tt.wantStart {
				t.Errorf("parseStat = %q, %d; want %q, %d", state, start, tt.wantState, tt.wantStart)
			}
		})
	}
}

func TestProcRead(t *testing.T) {
	pod := lines("0::/kubepods/besteffort/pod" + podUID + "/" + containerID)
	tests := []struct {
		name    string
		setup   func(t *testing.T, p fakeProc)
		wantErr string // "$ROOT" stands for the tree's root
		noProc  bool
	}{
		{name: "a process", setup: func(t *testing.T, p fakeProc) { p.add(t, 7, 100, "S", pod) }},
		{name: "no such process", setup: func(*testing.T, fakeProc) {},
			wantErr: "podattest: no such process: PID 7 has exited", noProc: true},
		{name: "a zombie", setup: func(t *testing.T, p fakeProc) { p.add(t, 7, 100, "Z", pod) },
			wantErr: "podattest: no such process: PID 7 has exited (state Z)", noProc: true},
		{name: "gone before its cgroup was read", setup: func(t *testing.T, p fakeProc) {
			p.add(t, 7, 100, "S", pod)
			if err := os.Remove(filepath.Join(p.root, "7", "cgroup")); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "podattest: no such process: PID 7 has exited", noProc: true},
		{name: "a stat file that does not parse", setup: func(t *testing.T, p fakeProc) {
			p.add(t, 7, 100, "S", pod)
			if err := os.WriteFile(filepath.Join(p.root, "7", "stat"), []byte("7 (app"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "podattest: $ROOT/7/stat: no command in parentheses"},
		{name: "a cgroup file too large", setup: func(t *testing.T, p fakeProc) {
			p.add(t, 7, 100, "S", strings.Repeat("0::/\n", maxProcFile/5+1))
		}, wantErr: "podattest: $ROOT/7/cgroup is over 65536 bytes"},
		{name: "a path out of the root", setup: func(t *testing.T, p fakeProc) {
			if err := os.Symlink("/", filepath.Join(p.root, "7")); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "podattest: read $ROOT/7/stat: openat 7/stat: path escapes from parent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp := newFakeProc(t)
			tt.setup(t, fp)
			got, err := procFS(fp).read(7)
			if tt.wantErr != "" {
				want := strings.ReplaceAll(tt.wantErr, "$ROOT", fp.root)
				if err == nil || err.Error() != want {
					t.Fatalf("read error\n got %v\nwant %s", err, want)
				}
				if errors.Is(err, ErrNoProcess) != tt.noProc {
					t.Errorf("errors.Is(%v, ErrNoProcess) = %v, want %v", err, !tt.noProc, tt.noProc)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.startTime != 100 || string(got.cgroup) != pod {
				t.Errorf("read = %d, %q", got.startTime, got.cgroup)
			}
		})
	}
}

// A PID the kernel gave to another process is told apart by its start
// time.
func TestProcSameRefusesAReusedPID(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(t, 7, 100, "S", "0::/\n")
	proc := procFS(fp)
	if err := proc.same(7, 100); err != nil {
		t.Fatalf("same process: %v", err)
	}
	fp.setStat(t, 7, 250, "S")
	err := proc.same(7, 100)
	want := "podattest: no such process: PID 7 was reused: the process that started at tick 100 exited and another started at tick 250"
	if err == nil || err.Error() != want || !errors.Is(err, ErrNoProcess) {
		t.Fatalf("same after reuse = %v, want %s", err, want)
	}
}

// A process that exits while its cgroup is read, and whose PID another
// process gets, is refused: its cgroup file is a FIFO here, so that the
// PID changes hands between the two reads of the start time.
func TestProcReadRefusesAPIDReusedWhileRead(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(t, 7, 100, "S", "")
	fifo := filepath.Join(fp.root, "7", "cgroup")
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFO: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // returns once read has opened it
		if err != nil {
			done <- err
			return
		}
		if err := os.WriteFile(filepath.Join(fp.root, "7", "stat"), []byte(statLine(7, "other", "S", 250)), 0o644); err != nil {
			done <- err
			return
		}
		_, err = w.WriteString(lines("0::/kubepods/besteffort/pod" + podUID + "/" + containerID))
		done <- errors.Join(err, w.Close())
	}()
	_, err := procFS(fp).read(7)
	if werr := <-done; werr != nil {
		t.Fatal(werr)
	}
	want := "podattest: no such process: PID 7 was reused: the process that started at tick 100 exited and another started at tick 250"
	if err == nil || err.Error() != want || !errors.Is(err, ErrNoProcess) {
		t.Fatalf("read error\n got %v\nwant %s", err, want)
	}
}

// The real /proc: this test's own process is in no pod (or, run in a pod,
// in one), and a process that has exited is gone.
func TestRealProc(t *testing.T) {
	proc := procFS{root: DefaultProcRoot}
	self, err := proc.read(int32(os.Getpid()))
	if err != nil {
		t.Fatalf("read own process: %v", err)
	}
	if self.startTime == 0 {
		t.Error("own start time is 0")
	}
	ref, err := ParseCgroup(self.cgroup)
	switch {
	case errors.Is(err, ErrNotInPod):
		t.Logf("not in a pod: %v", err)
	case err != nil:
		t.Fatalf("own cgroup file %q: %v", self.cgroup, err)
	default:
		t.Logf("in pod %s, container %s", ref.PodUID, ref.ContainerID)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := int32(cmd.Process.Pid)
	if _, err := proc.read(pid); !errors.Is(err, ErrNoProcess) {
		t.Errorf("read of exited PID %d = %v, want ErrNoProcess", pid, err)
	}
}
