// Command gobaseline measures Go's own runtime netpoll on the scenarios
// netpolld is compared with: the pipe wake, deadline precision, the timer
// storm and the memory a registered descriptor costs.  It writes the same
// facts format as the C bench programs (lines "go<TAB>scenario<TAB>metric
// <TAB>value"), so bench-report puts each figure in the Go column of the
// netpolld row with the same scenario and metric, and dumps raw samples
// for the plots.
//
// It uses the standard library only: os.Pipe and os.NewFile on a
// non-blocking eventfd both register with the runtime poller, and
// SetReadDeadline on them is runtime.pollSetDeadline.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

var (
	outDir = flag.String("o", ".", "directory for the facts file and .dat dumps")
	quick  = flag.Bool("q", false, "smaller counts (CI)")
	facts  *bufio.Writer
)

// count picks the full or the quick figure, as bench_count does in C.
func count(full, small int) int {
	if *quick {
		return small
	}
	return full
}

// fact records one Go figure for bench-report.
func fact(scenario, metric string, value float64) {
	fmt.Fprintf(facts, "go\t%s\t%s\t%.9g\n", scenario, metric, value)
}

// note records a line printed under the table.
func note(format string, a ...interface{}) {
	fmt.Fprintf(facts, "note\t"+format+"\n", a...)
}

// samples holds nanosecond samples; pct sorts them once.
type samples []int64

func (s samples) sorted() samples {
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

// pct is the nearest-rank percentile of sorted samples, as samples_pct.
func (s samples) pct(p float64) int64 {
	if len(s) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(s)) + 0.999999999)
	if rank < 1 {
		rank = 1
	}
	if rank > len(s) {
		rank = len(s)
	}
	return s[rank-1]
}

// dumpCDF writes sorted samples in microseconds with their cumulative
// fraction, the format of samples_dump_cdf.
func dumpCDF(s samples, name string) error {
	f, err := os.Create(filepath.Join(*outDir, name))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "# value cumulative_fraction (%d samples)\n", len(s))
	for i, v := range s {
		fmt.Fprintf(w, "%.3f %.6f\n", float64(v)/1e3, float64(i+1)/float64(len(s)))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// report writes p50, p99 and max of s, in microseconds, for scenario.
func report(scenario string, s samples) {
	fact(scenario, "p50", float64(s.pct(50))/1e3)
	fact(scenario, "p99", float64(s.pct(99))/1e3)
	fact(scenario, "max", float64(s.pct(100))/1e3)
}

// nofile is the soft fd limit, which Go 1.19 raises to the hard one.
func nofile() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 1024
	}
	return int(rl.Cur)
}

func main() {
	flag.Parse()
	f, err := os.Create(filepath.Join(*outDir, "bench-go.facts"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-go:", err)
		os.Exit(2)
	}
	facts = bufio.NewWriter(f)
	steps := []struct {
		name string
		run  func() error
	}{
		{"wake", wake},
		{"precision", precision},
		{"storm", storm},
		{"memory", memory},
	}
	status := 0
	for _, s := range steps {
		if err := s.run(); err != nil {
			fmt.Fprintf(os.Stderr, "bench-go: %s: %v\n", s.name, err)
			status = 1
		}
	}
	if err := facts.Flush(); err != nil || f.Close() != nil {
		fmt.Fprintln(os.Stderr, "bench-go: cannot write the facts file")
		status = 1
	}
	os.Exit(status)
}
