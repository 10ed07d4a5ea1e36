package meshbench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// clockTick is Linux's USER_HZ, the unit of /proc/<pid>/stat's times.
const clockTick = 10 * time.Millisecond

// cpuTime is the CPU time, user and system, that the processes pids have
// used, their threads that ended included.
func cpuTime(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		fields, err := statFields(pid)
		if err != nil {
			return 0, err
		}
		// utime and stime are fields 14 and 15 of stat(5); fields
		// starts at field 3.
		for _, f := range fields[11:13] {
			ticks, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
			}
			total += time.Duration(ticks) * clockTick
		}
	}
	return total, nil
}

// statFields are /proc/<pid>/stat's fields from the third (the state)
// on: those after the command's name, which may hold spaces.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	return fields, nil
}

// pss is the proportional set size of the processes pids, in bytes: the
// memory they hold resident, each page shared by n processes counted 1/n
// (nginx's master and worker share most of theirs).
func pss(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err != nil {
					_ = f.Close()
					return 0, fmt.Errorf("/proc/%d/smaps_rollup: %w", pid, err)
				}
				total += kb << 10
				break
			}
		}
		_ = f.Close()
	}
	return total, nil
}

// machineTimes are the machine's idle time (idle and iowait) and its
// whole time, all CPUs', from /proc/stat, in ticks.
func machineTimes() (idle, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: %q", line)
	}
	for i, f := range fields[1:] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i < 8 { // guest times are counted in user's already
			total += n
		}
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, total, nil
}

// children are the processes whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fields, err := statFields(child); err == nil && fields[1] == strconv.Itoa(pid) {
			kids = append(kids, child)
		}
	}
	return kids
}

func TestProcReadsThisProcess(t *testing.T) {
	self := []int{os.Getpid()}
	if _, err := cpuTime(self); err != nil {
		t.Error(err)
	}
	if p, err := pss(self); err != nil || p < 1<<20 {
		t.Errorf("pss of this process: %d, %v; want a megabyte or more", p, err)
	}
	if idle, total, err := machineTimes(); err != nil || idle <= 0 || total <= idle {
		t.Errorf("the machine's times: idle %d of %d, %v", idle, total, err)
	}
	if fields, err := statFields(os.Getpid()); err != nil || fields[1] != strconv.Itoa(os.Getppid()) {
		t.Errorf("this process's parent from stat: %v, %v; want %d", fields, err, os.Getppid())
	}
}

// perfStat counts the system calls of some processes, all their threads,
// with perf stat on the raw_syscalls:sys_enter tracepoint (Debian's
// linux-perf; it needs tracefs, which root has).
type perfStat struct {
	cmd *exec.Cmd
	out string
}

func startPerf(pids []int) (*perfStat, error) {
	dir, err := os.MkdirTemp("", "meshbench-perf")
	if err != nil {
		return nil, err
	}
	list := make([]string, len(pids))
	for i, pid := range pids {
		list[i] = strconv.Itoa(pid)
	}
	p := &perfStat{out: filepath.Join(dir, "stat.csv")}
	p.cmd = exec.Command("perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-o", p.out, "-p", strings.Join(list, ","))
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	// perf attaches within a few milliseconds; its output file is
	// written only at the end.
	time.Sleep(100 * time.Millisecond)
	return p, nil
}

// stop ends perf (SIGINT, as ^C) and returns its count.
func (p *perfStat) stop() (int64, error) {
	defer os.RemoveAll(filepath.Dir(p.out))
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	_ = p.cmd.Wait()
	b, err := os.ReadFile(p.out)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		fields := strings.Split(line, ",")
		if len(fields) > 2 && fields[2] == "raw_syscalls:sys_enter" {
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, errors.New("no count in its output: " + string(b))
}
